"""The quantized variants of the trained LM, and the step that builds and measures one: ``quant_variant``.

A variant's name says what it is: ``<runtime>-<format>[-<algorithm>-b<block>]``, e.g.
``ort-fp32``, ``torch-bf16``, ``ort-int8-static``, ``torchao-int8-dynamic``,
``ort-int4-gptq-b32``. :func:`variant_names` lists the ones the config asks for (GPU-only ones
included: on a CPU run they write a ``skipped`` line instead of numbers, so the report shows
them). Each runs as its own Snakemake job and writes
``results/lm/variants/<name>/measures.json`` (format in ``docs``/lm_api: size, perplexity and
its change vs FP32, latency p50/p90, throughput, the quantized op count, ``skipped``).

Every non-reference variant is measured against its FP32 reference of the same runtime
(ort-fp32 or torch-fp32): perplexity on the same blocks (from the reference's measures.json),
and latency/throughput timed interleaved with the reference in the same process.
"""

from __future__ import annotations

import math
import shutil
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from whylab.errors import InputError
from whylab.files import read_json, write_json
from whylab.messages import Msg, kept_beside
from whylab.quant import measure as ms

# the names live in a torch-free module (the DAG reads them); re-exported here for callers
from whylab.quant.names import (  # noqa: F401 -- re-exported for callers of this module
    INT4_ALGORITHMS,
    REFERENCES,
    Variant,
    parse,
    variant_names,
)

MATMULNBITS_BLOCKS = (16, 32, 64, 128, 256)


# ----------------------------------------------------------------------------- building
@dataclass
class Built:
    """A runnable variant: how to score and time it, what it weighs, what was quantized."""

    block_nll: Callable[[torch.Tensor], list[float]]
    forward: Callable[[torch.Tensor], Any]
    size_bytes: int
    memory_bytes: int
    providers: list[str]
    provider_note: str = ""
    op_count: dict[str, int] = field(default_factory=dict)
    expected_ops: int | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    # per-block NLL and next-token top-1 accuracy in one pass (C12/C13 report both)
    block_scores: Callable[[torch.Tensor], dict[str, list[float]]] | None = None


@dataclass
class Inputs:
    model_dir: Path
    onnx_file: Path
    eval_blocks: torch.Tensor
    calibration: torch.Tensor
    settings: dict[str, Any]
    device: str
    threads: int
    outdir: Path


def replaced_tensor_bytes(fp32_file: Path, variant_file: Path) -> dict[str, int]:
    """Bytes of the FP32 initializers a quantizer replaced, and of what replaced them.

    Their ratio is the size cut on the quantized tensors alone (scales and zero points
    included), apart from what stayed float (norms, an unquantized embedding) and the graph.
    """
    from onnx import numpy_helper

    from whylab.quant import onnx_graph

    before = {i.name: numpy_helper.to_array(i).nbytes for i in onnx_graph.load(fp32_file).graph.initializer}
    after = {i.name: numpy_helper.to_array(i).nbytes for i in onnx_graph.load(variant_file).graph.initializer}
    removed = sum(b for name, b in before.items() if name not in after)
    added = sum(b for name, b in after.items() if name not in before)
    return {"fp32_bytes": removed, "quantized_bytes": added}


def _ort_built(path: Path, inp: Inputs, **extra: Any) -> Built:
    from whylab.quant import onnx_graph

    if path != inp.onnx_file:
        extra.setdefault("diagnostics", {})["quantized_tensors"] = replaced_tensor_bytes(inp.onnx_file, path)
    sess = ms.ort_session(path, inp.device, inp.threads)
    batch = int(inp.settings["measure"]["eval_batch_size"])
    size = ms.disk_bytes(path) + (
        ms.disk_bytes(Path(str(path) + ".data")) if Path(str(path) + ".data").exists() else 0
    )
    return Built(
        block_nll=lambda blocks: ms.ort_block_nll(sess, blocks, batch),
        block_scores=lambda blocks: ms.ort_block_scores(sess, blocks, batch),
        forward=lambda ids: sess.logits(ids.numpy()),
        size_bytes=size,
        memory_bytes=onnx_graph.weight_bytes(onnx_graph.load(path)),
        providers=sess.providers,
        provider_note=sess.note,
        **extra,
    )


def _torch_built(model: Any, inp: Inputs, state_file: Path | None, **extra: Any) -> Built:
    from whylab.quant.torch_quant import save_state

    batch = int(inp.settings["measure"]["eval_batch_size"])
    device = inp.device
    if state_file is not None:
        save_state(model, state_file)

    @torch.no_grad()
    def forward(ids: torch.Tensor) -> Any:
        ids = ids.to(device)
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits

    provider = f"torch:{device}"
    return Built(
        block_nll=lambda blocks: ms.torch_block_nll(model, blocks, batch, device),
        block_scores=lambda blocks: ms.torch_block_scores(model, blocks, batch, device),
        forward=forward,
        size_bytes=ms.disk_bytes(state_file) if state_file else 0,
        memory_bytes=ms.torch_weight_bytes(model),
        providers=[provider],
        **extra,
    )


def _min_input_width(onnx_file: Path) -> int:
    from whylab.quant import onnx_graph

    return min(wm.k for wm in onnx_graph.weight_matmuls(onnx_graph.load(onnx_file)))


def build(variant: Variant, inp: Inputs) -> Built:
    """Quantize (into ``inp.outdir``) and open ``variant`` for measuring."""
    from whylab.quant import onnx_quant, torch_quant

    q = inp.settings
    out_onnx = inp.outdir / "model.onnx"
    if variant.name == "ort-fp32":
        return _ort_built(inp.onnx_file, inp)
    if variant.name == "torch-fp32":
        model = torch_quant.load_model(inp.model_dir, torch.float32, inp.device)
        return _torch_built(model, inp, inp.outdir / "model.pt")
    if variant.family == "half" and variant.runtime == "torch":
        model = torch_quant.load_model(inp.model_dir, torch_quant.HALF_DTYPES[variant.algorithm], inp.device)
        return _torch_built(model, inp, inp.outdir / "model.pt")
    if variant.name == "ort-fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        from whylab.quant import onnx_graph

        half = convert_float_to_float16(onnx_graph.load(inp.onnx_file), keep_io_types=True)
        onnx_graph.save(half, out_onnx)
        return _ort_built(out_onnx, inp)
    notes: list[str] = []  # quant_pre_process: what ran (INT8 only)
    if variant.name == "ort-int8-dynamic":
        counts = onnx_quant.int8_dynamic(
            inp.onnx_file, out_onnx, per_channel=q["int8"]["per_channel"], notes=notes
        )
        return _ort_built(
            out_onnx,
            inp,
            op_count=_quant_ops(counts),
            expected_ops=onnx_quant.expected_weight_matmuls(inp.onnx_file),
            diagnostics={"int8_setup": onnx_quant.int8_setup(), "preprocess": notes},
        )
    if variant.name == "ort-int8-static":
        counts = onnx_quant.int8_static(
            inp.onnx_file,
            out_onnx,
            inp.calibration,
            quant_format=q["int8"]["ort_static_format"],
            method=q["int8"]["ort_static_method"],
            per_channel=q["int8"]["per_channel"],
            notes=notes,
        )
        return _ort_built(
            out_onnx,
            inp,
            op_count=_quant_ops(counts),
            expected_ops=onnx_quant.expected_weight_matmuls(inp.onnx_file),
            diagnostics={"int8_setup": onnx_quant.int8_setup(), "preprocess": notes},
        )
    if variant.runtime == "torch" and variant.family == "int8":
        model = torch_quant.load_model(inp.model_dir, torch.float32, inp.device)
        expected = torch_quant.linear_count(model)
        fp32_bytes = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear))
        torch_quant.torchao_int8(model, variant.algorithm)
        got = torch_quant.quantized_linear_count(model)
        if got != expected:
            raise RuntimeError(f"{variant.name}: {got} of {expected} linear layers quantized")
        quantized_bytes = sum(
            ms.tensor_bytes(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)
        )
        return _torch_built(
            model,
            inp,
            inp.outdir / "model.pt",
            op_count={"torchao_quantized_linear": got},
            expected_ops=expected,
            diagnostics={"quantized_tensors": {"fp32_bytes": fp32_bytes, "quantized_bytes": quantized_bytes}},
        )
    if variant.family == "int4":
        return _build_int4(variant, inp, out_onnx)
    raise InputError(f"no builder for variant {variant.name!r}")


def float_linears(model: Any) -> list[str]:
    """Linears outside the decoder layers (the LM head): the INT4 variants keep them in float."""
    return [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." not in f".{n}."
    ]


def _node_names(onnx_file: Path, model: Any, names: list[str]) -> list[str]:
    from whylab.quant import onnx_graph

    if not names:
        return []
    matches = onnx_graph.match_linears(onnx_graph.load(onnx_file), model)
    return [matches[n].node_name for n in names]


def _quant_ops(counts: Mapping[str, int]) -> dict[str, int]:
    keep = (
        "MatMulInteger",
        "QLinearMatMul",
        "DynamicQuantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
        "MatMulNBits",
        "GatherBlockQuantized",
        "MatMul",
    )
    return {k: int(v) for k, v in counts.items() if k in keep}


def _build_int4(variant: Variant, inp: Inputs, out_onnx: Path) -> Built:
    from whylab.quant import onnx_quant, torch_quant
    from whylab.quant.int4 import rtn_quantize

    q4 = inp.settings["int4"]
    bs = int(variant.block_size or 0)
    if bs not in MATMULNBITS_BLOCKS:
        raise InputError(
            f"quantization.int4.block_sizes: {bs} is not one of {MATMULNBITS_BLOCKS} "
            "(MatMulNBits needs a power of two from 16)"
        )
    width = _min_input_width(inp.onnx_file)
    if bs > width:
        raise InputError(
            f"quantization.int4.block_sizes: {bs} is wider than the narrowest layer input ({width})"
        )
    sym = bool(q4["symmetric"])
    model = torch_quant.load_model(inp.model_dir, torch.float32, "cpu")
    # the embedding and the LM head stay float, as in the GPTQ and AWQ papers (every algorithm)
    head = float_linears(model)
    head_nodes = _node_names(inp.onnx_file, model, head)
    expected = onnx_quant.expected_weight_matmuls(inp.onnx_file) - len(head_nodes)
    diagnostics: dict[str, Any] = {"float_linears": head}
    if variant.algorithm in ("rtn", "hqq"):
        counts = onnx_quant.int4_ort(
            inp.onnx_file, out_onnx, variant.algorithm, bs, symmetric=sym, exclude=head_nodes
        )
    elif variant.algorithm == "gptq":
        from whylab.quant.gptq import gptq_model, layer_error

        errors = {"gptq": 0.0, "rtn": 0.0}
        changed = [0, 0]

        def record(_name: str, weight: torch.Tensor, qw: Any, h: torch.Tensor) -> None:
            rtn = rtn_quantize(weight, bs, sym)
            errors["gptq"] += layer_error(weight, qw, h)
            errors["rtn"] += layer_error(weight, rtn, h)
            changed[0] += int((qw.real_codes != rtn.real_codes).sum())
            changed[1] += int(rtn.real_codes.size)

        quantized = gptq_model(
            model,
            inp.calibration,
            bs,
            symmetric=sym,
            percdamp=float(q4["gptq_percdamp"]),
            act_order=bool(q4.get("gptq_act_order", True)),
            true_sequential=bool(q4.get("gptq_true_sequential", True)),
            on_layer=record,
        )
        counts = onnx_quant.int4_from_torch(inp.onnx_file, out_onnx, model, quantized, keep_float=head)
        diagnostics.update(
            codes_differ_from_rtn_frac=changed[0] / max(1, changed[1]),
            calibration_output_error=errors,
            act_order=bool(q4.get("gptq_act_order", True)),
            true_sequential=bool(q4.get("gptq_true_sequential", True)),
            note="own GPTQ (the paper's algorithm 1 with the reference code's act-order and true-sequential), "
            "layer after layer, written as MatMulNBits; LM head in float",
        )
    elif variant.algorithm == "awq":
        from whylab.quant.awq import awq

        result = awq(
            model,
            inp.calibration,
            bs,
            alpha_grid=int(q4["awq_alpha_grid"]),
            symmetric=sym,
            clip_grid=int(q4.get("awq_clip_grid", 20)),
            clip_max_shrink=float(q4.get("awq_clip_max_shrink", 0.5)),
        )
        scaled = onnx_quant.write_torch_weights(inp.onnx_file, model, result.model)
        counts = onnx_quant.int4_ort(scaled, out_onnx, "rtn", bs, symmetric=sym, exclude=head_nodes)
        diagnostics.update(
            alphas=result.alphas,
            clipped_range_share=result.clipped,
            calibration_output_error=result.errors,
            note="own AWQ scale search and weight clipping folded into the FP32 graph, then ONNX "
            "Runtime's RTN; LM head in float",
        )
    else:
        raise InputError(f"unknown 4-bit algorithm {variant.algorithm!r}")
    return _ort_built(
        out_onnx, inp, op_count=_quant_ops(counts), expected_ops=expected, diagnostics=diagnostics
    )


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


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """Build one variant, measure it, write its measures.json (and its model files next to it)."""
    from whylab.lm.data import corpus_files, load_tokenizer, token_blocks
    from whylab.runtime import resolve_device, set_seed, set_threads

    set_threads(threads)
    set_seed(int(settings.get("seeds", [0])[0]))
    variant = parse(str(settings["variant"]))
    q = settings["quantization"]
    device = resolve_device(str(settings.get("device", "auto")))
    out = Path(outputs["measures"])
    # the variant's model files: their own (declared, temporary) folder when the rule gives one
    outdir = Path(outputs.get("models", out.parent))
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    record = base_record(variant, q, device, threads)
    reason = skip_reason(variant, device)
    if reason is not None:
        record.update(kept_beside("skipped", reason))
        validate_measures(record)
        write_json(out, record)
        return

    tokenizer = load_tokenizer(inputs["model"])
    languages = list(settings["languages"])
    m = q["measure"]
    eval_blocks = token_blocks(
        corpus_files(inputs["corpus"], languages, "valid"),
        tokenizer,
        int(m["block_size"]),
        int(m["eval_blocks"]),
    )
    calibration = token_blocks(
        corpus_files(inputs["corpus"], languages, "train"),
        tokenizer,
        int(m["block_size"]),
        int(q["calibration"]["blocks"]),
    )
    onnx_file = Path(inputs["onnx"]) / "model.onnx"
    inp = Inputs(Path(inputs["model"]), onnx_file, eval_blocks, calibration, q, device, threads, outdir)

    started = time.perf_counter()
    built = build(variant, inp)
    quantize_s = time.perf_counter() - started
    reference = ref_record = None
    if not variant.is_reference:
        ref_record = read_json(inputs["reference"])
        if ref_record.get("skipped"):
            raise InputError(f"{variant.name}: its reference {variant.reference} was skipped")
        reference = build(
            parse(variant.reference),
            Inputs(
                inp.model_dir, onnx_file, eval_blocks, calibration, q, device, threads, outdir / "_reference"
            ),
        )
    record.update(
        {
            "provider": built.providers[0],
            "providers": built.providers,
            "provider_note": built.provider_note,
            "size_bytes": built.size_bytes,
            "memory_bytes": built.memory_bytes,
            "quantized_op_count": built.op_count or None,
            "expected_quantized_ops": built.expected_ops,
            "diagnostics": built.diagnostics,
            "quantize_s": quantize_s,
            "eval_blocks": [int(s) for s in eval_blocks.shape],
            "languages": languages,
        }
    )
    record.update(measure(variant, built, reference, ref_record, inp))
    shutil.rmtree(outdir / "_reference", ignore_errors=True)
    record["wall_s"] = time.perf_counter() - started
    record = _finite(record)
    validate_measures(record)
    write_json(out, record)


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: turn them into None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
