"""The quantized variants of the trained LM: their records and how each is measured (the
``quant_variant`` step that runs them is :mod:`whylab.quant.variant_jobs`).

A variant's name says what it is: ``<runtime>-<format>[-<algorithm>-b<block>]``, e.g.
``ort-fp32``, ``torch-bf16``, ``ort-int8-static``, ``torchao-int8-dynamic``,
``ort-int4-gptq-b32``. :func:`variant_names` lists the ones the config asks for (GPU-only ones
included: on a CPU run they write a ``skipped`` line instead of numbers, so the report shows
them). One Snakemake job per family builds its variants and writes each one's
``results/lm/variants/<name>/measures.json`` (format in ``docs``/lm_api: size, perplexity and
its change vs FP32, latency p50/p90, throughput, the quantized op count, ``skipped``).

Every non-reference variant is measured against its FP32 reference of the same runtime
(ort-fp32 or torch-fp32): perplexity on the same blocks (from the reference's measures.json),
and latency/throughput timed interleaved with the reference in the same process. A calibrated
INT4 variant (GPTQ, AWQ) is also quantized on further seeded calibration draws and scored on the
same blocks (``calibration_draws``), so C13's interval carries the calibration's variance.
"""

from __future__ import annotations

import math
import shutil
import statistics
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from whylab.errors import InputError
from whylab.messages import Msg
from whylab.quant import measure as ms

# the names live in a torch-free module (the DAG reads them); re-exported here for callers
from whylab.quant.names import (  # noqa: F401 -- re-exported for callers of this module
    INT4_ALGORITHMS,
    REFERENCES,
    Variant,
    parse,
    variant_names,
)
from whylab.quant.variant_build import MATMULNBITS_BLOCKS as MATMULNBITS_BLOCKS
from whylab.quant.variant_build import Built as Built
from whylab.quant.variant_build import Inputs as Inputs
from whylab.quant.variant_build import build as build
from whylab.quant.variant_build import float_linears as float_linears
from whylab.quant.variant_build import replaced_tensor_bytes as replaced_tensor_bytes


# ----------------------------------------------------------------------------- measuring
def _timing_inputs(blocks: torch.Tensor, prompt: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    prompt = min(prompt, blocks.shape[1])
    one = blocks[:1, :prompt].clone()
    reps = math.ceil(batch / blocks.shape[0])
    many = blocks.repeat(reps, 1)[:batch].clone()
    return one, many


def measure(
    variant: Variant, built: Built, reference: Built | None, ref_record: Mapping[str, Any] | None, inp: Inputs
) -> dict[str, Any]:
    """Every number of one measures.json row (see the module docstring for how)."""
    m = inp.settings["measure"]
    start = time.perf_counter()
    if built.block_scores is not None:
        scores = built.block_scores(inp.eval_blocks)
        nll, top1 = scores["nll"], scores["top1"]
    else:
        nll, top1 = built.block_nll(inp.eval_blocks), []
    ppl = ms.perplexity_from_blocks(nll)
    one, many = _timing_inputs(
        inp.eval_blocks, int(m["latency_prompt_tokens"]), int(m["throughput_batch_size"])
    )
    runners = {"variant": lambda: built.forward(one)}
    batched = {"variant": lambda: built.forward(many)}
    if reference is not None:
        runners = {"reference": lambda: reference.forward(one), **runners}
        batched = {"reference": lambda: reference.forward(many), **batched}
    lat = ms.interleaved_times(runners, int(m["latency_warmup"]), int(m["latency_runs"]), inp.device)
    thr = ms.interleaved_times(batched, 1, int(m["throughput_runs"]), inp.device)
    clock = ms.speedup_clock(inp.device, inp.threads)
    tokens = many.numel()
    var = lat["variant"]
    row: dict[str, Any] = {
        "valid_ppl": ppl,
        "valid_nll": statistics.fmean(nll),
        "block_nll": nll,
        "block_top1": top1,
        "valid_top1": statistics.fmean(top1) if top1 else None,
        "latency_ms_p50": ms.percentile(var["wall"], 50),
        "latency_ms_p90": ms.percentile(var["wall"], 90),
        "latency_ms": var["wall"],
        "latency_cpu_ms_p50": ms.percentile(var["cpu"], 50),
        "latency_cpu_ms_p90": ms.percentile(var["cpu"], 90),
        "latency_cpu_ms": var["cpu"],
        "throughput_tokens_per_s": tokens / (statistics.median(thr["variant"]["wall"]) / 1000.0),
        "throughput_cpu_tokens_per_s": tokens / (statistics.median(thr["variant"]["cpu"]) / 1000.0),
        "speedup_clock": clock,
        "latency_prompt_tokens": int(one.shape[1]),
        "throughput_batch": [int(many.shape[0]), int(many.shape[1])],
    }
    if reference is not None and ref_record is not None:
        ref = lat["reference"]
        ref_nll = ref_record["block_nll"]
        if len(ref_nll) != len(nll):
            raise InputError(
                f"{variant.name}: {len(nll)} eval blocks but the reference has {len(ref_nll)}; "
                "rerun the reference"
            )
        change = ms.ppl_change_interval(nll, ref_nll)
        ref_thr = {c: tokens / (statistics.median(thr["reference"][c]) / 1000.0) for c in ("wall", "cpu")}
        var_thr = {c: tokens / (statistics.median(thr["variant"][c]) / 1000.0) for c in ("wall", "cpu")}
        row.update(
            {
                "ppl_change_pct_vs_fp32": 100.0 * (ppl / float(ref_record["valid_ppl"]) - 1.0),
                "ppl_change_interval": change,
                "size_ratio_vs_fp32": built.size_bytes / float(ref_record["size_bytes"]),
                "memory_ratio_vs_fp32": built.memory_bytes / float(ref_record["memory_bytes"]),
                "reference_timing": {
                    "variant": variant.reference,
                    "latency_ms_p50": ms.percentile(ref["wall"], 50),
                    "latency_ms_p90": ms.percentile(ref["wall"], 90),
                    "latency_ms": ref["wall"],
                    "latency_cpu_ms_p50": ms.percentile(ref["cpu"], 50),
                    "latency_cpu_ms": ref["cpu"],
                    "throughput_tokens_per_s": ref_thr["wall"],
                    "throughput_cpu_tokens_per_s": ref_thr["cpu"],
                },
                "speedup_latency_p50": ms.percentile(ref[clock], 50) / ms.percentile(var[clock], 50),
                "speedup_latency_rounds": [r / v for r, v in zip(ref[clock], var[clock], strict=True)],
                "speedup_latency_wall_p50": ms.percentile(ref["wall"], 50) / row["latency_ms_p50"],
                "speedup_throughput": var_thr[clock] / ref_thr[clock],
            }
        )
    else:
        row.update(
            {
                "ppl_change_pct_vs_fp32": 0.0,
                "size_ratio_vs_fp32": 1.0,
                "memory_ratio_vs_fp32": 1.0,
                "speedup_latency_p50": 1.0,
                "speedup_throughput": 1.0,
            }
        )
    row["measure_s"] = time.perf_counter() - start
    return row


def base_record(variant: Variant, settings: Mapping[str, Any], device: str, threads: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "algorithm": variant.algorithm,
        "reference": variant.reference,
        "measure": settings["measure"],
    }
    if variant.family == "int8":
        params["int8"] = settings["int8"]
    if variant.family == "int4":
        params.update(block_size=variant.block_size, symmetric=settings["int4"]["symmetric"])
    if variant.algorithm in ("static", "gptq", "awq"):
        params["calibration_blocks"] = settings["calibration"]["blocks"]
    if variant.family == "int4" and variant.algorithm in CALIBRATED_INT4:
        params["calibration_draws"] = int(settings["calibration"].get("draws", 1))
    return {
        "variant": variant.name,
        "family": variant.family,
        "bits": variant.bits,
        "runtime": variant.runtime,
        "algorithm": variant.algorithm,
        "block_size": variant.block_size,
        "device": device,
        "threads": threads,
        "provider": None,
        "providers": None,
        "provider_note": "",
        "size_bytes": None,
        "size_ratio_vs_fp32": None,
        "memory_bytes": None,
        "memory_ratio_vs_fp32": None,
        "valid_ppl": None,
        "ppl_change_pct_vs_fp32": None,
        "latency_ms_p50": None,
        "latency_ms_p90": None,
        "throughput_tokens_per_s": None,
        "speedup_latency_p50": None,
        "speedup_throughput": None,
        "params": params,
        "quantized_op_count": None,
        "expected_quantized_ops": None,
        "diagnostics": {},
        "skipped": None,
    }


def skip_reason(variant: Variant, device: str) -> Msg | None:
    """Why this variant cannot run on ``device`` (a catalogue message), or None."""
    from whylab.quant.torch_quant import half_supported

    if variant.needs_cuda and not device.startswith("cuda"):
        return Msg("quant.skipped.needs_cuda", variant=variant.name, device=device)
    if variant.family == "half" and variant.runtime == "torch":
        ok, why = half_supported(variant.algorithm, device)
        if not ok:
            return Msg("quant.skipped.variant", variant=variant.name, why=why)
    if variant.name == "ort-fp16":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return Msg("quant.skipped.ort_fp16", variant=variant.name)
    return None


def validate_measures(record: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``record`` follows schemas/measures.schema.json (the lm_api format)."""
    import json
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("whylab").joinpath("schemas/measures.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator(schema).validate(record)


CALIBRATED_INT4 = ("gptq", "awq")


def draw_indices(pool_size: int, blocks: int, draw: int, seed: int) -> list[int]:
    """Which pool blocks calibration draw ``draw`` uses: draw 0 the first ``blocks``; a further
    draw ``blocks`` of them without replacement, seeded by (run seed, draw), in pool order."""
    if draw == 0:
        return list(range(min(blocks, pool_size)))
    generator = torch.Generator().manual_seed(1_000_003 * seed + draw)
    return sorted(torch.randperm(pool_size, generator=generator)[:blocks].tolist())


def calibration_draws(
    variant: Variant, inp: Inputs, pool: torch.Tensor, draws: int, seed: int, first_nll: list[float]
) -> list[dict[str, Any]]:
    """The variant quantized again on each further calibration draw and scored on the same
    evaluation blocks (no timing: size and speed do not depend on the draw); draw 0 is the
    measured variant itself. The variance a calibrated quantizer adds, beside the blocks'."""
    out: list[dict[str, Any]] = [
        {
            "draw": 0,
            "blocks": draw_indices(pool.shape[0], inp.calibration.shape[0], 0, seed),
            "block_nll": list(first_nll),
        }
    ]
    for draw in range(1, draws):
        index = draw_indices(pool.shape[0], inp.calibration.shape[0], draw, seed)
        outdir = inp.outdir / f"_draw{draw}"
        outdir.mkdir(parents=True, exist_ok=True)
        sub = replace(inp, calibration=pool[index], outdir=outdir)
        built = build(variant, sub)
        scores = built.block_scores(inp.eval_blocks) if built.block_scores else None
        nll = scores["nll"] if scores else built.block_nll(inp.eval_blocks)
        out.append({"draw": draw, "blocks": index, "block_nll": nll})
        del built
        shutil.rmtree(outdir, ignore_errors=True)
    return out


def finite(value: Any) -> Any:
    """JSON has no NaN/inf: turn them into None."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
