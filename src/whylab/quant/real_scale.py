"""Real-scale shapes with random weights, for the size and speed parts of C12/C13: ``quant_real_scale``.

Size, memory and speed do not need trained weights, only the real shapes. This step builds,
from config alone (nothing downloaded), a BERT-base encoder (the notes' own example: 12
layers, 768 wide) and a stack of Llama-2-7B-width decoder layers (4096 wide, 11008 MLP,
32 heads of 128; a small vocabulary, so the stack is its decoder layers), exports each
through optimum's ONNX exporter (the LM's own path: ``text-generation-with-past`` for the
Llama stack, so decoding runs with the KV cache), and measures FP32 vs INT8 vs INT4:

* file size (whole ``model.onnx``, external data included);
* BERT prefill latency, batch 1, ``bert.prefill_tokens`` tokens;
* decode tokens/s at batch 1 with the KV cache on the Llama stack (a ``llama.prompt_tokens``
  prefill, then ``llama.decode_tokens`` single-token steps): the memory-bound regime, where
  a weight-only format wins by reading fewer bytes per token.

INT8 is the primary INT8 variant of C12 (ONNX Runtime dynamic, per-channel, set up by
:func:`whylab.quant.onnx_quant.int8_setup`); INT4 is MatMulNBits at group ``int4_block_size``
(128: the GPTQ/AWQ papers' setting). A MatMulNBits graph's size and speed do not depend on which
4-bit codes an algorithm picked, so round-to-nearest at that group size stands for GPTQ-g128
here (random weights give GPTQ nothing to fit). Variants are timed interleaved, round by round,
on one thread's CPU time when one thread runs. The kernel path that ran is ONNX Runtime's own
record: each session runs under its profiler before the timing (op types after graph
optimization, their share of kernel time: ``kernel_profile``; the profile files go to a
temporary folder), with the CPU's instruction sets beside it as context.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from whylab.errors import InputError
from whylab.files import write_json
from whylab.messages import kept_beside
from whylab.quant.kernel_paths import MEMORY_BOUND_FACTOR as MEMORY_BOUND_FACTOR
from whylab.quant.kernel_paths import fast_path as fast_path
from whylab.quant.kernel_paths import fast_path_record as fast_path_record
from whylab.quant.kernel_paths import int8_isa as int8_isa
from whylab.quant.kernel_paths import kernel_path as kernel_path
from whylab.quant.kernel_paths import last_level_cache_bytes as last_level_cache_bytes
from whylab.quant.session_timing import bert_feeds as bert_feeds
from whylab.quant.session_timing import decoder as decoder
from whylab.quant.session_timing import interleaved as interleaved
from whylab.quant.session_timing import prefill as prefill
from whylab.quant.session_timing import speed_summary as speed_summary
from whylab.quant.session_timing import timed as timed

FORMATS = ("fp32", "int8", "int4")
MB = 1_000_000


# ----------------------------------------------------------------------------- settings
def check_settings(rs: Mapping[str, Any]) -> None:
    """One-line InputError naming the key, before any work."""
    bs = int(rs["int4_block_size"])
    bert, llama = rs["bert"], rs["llama"]
    for name, section in (("bert", bert), ("llama", llama)):
        for key in ("hidden_size", "intermediate_size"):
            if int(section[key]) % bs:
                raise InputError(
                    f"quantization.real_scale.int4_block_size: {bs} does not divide "
                    f"quantization.real_scale.{name}.{key} ({section[key]})"
                )
        if int(section["hidden_size"]) % int(section["num_heads"]):
            raise InputError(
                f"quantization.real_scale.{name}.num_heads: {section['num_heads']} does not divide "
                f"hidden_size {section['hidden_size']}"
            )
    if int(bert["prefill_tokens"]) > int(bert["max_position_embeddings"]):
        raise InputError(
            "quantization.real_scale.bert.prefill_tokens: longer than bert.max_position_embeddings"
        )
    if int(llama["prompt_tokens"]) + int(llama["decode_tokens"]) > int(llama["max_position_embeddings"]):
        raise InputError(
            "quantization.real_scale.llama.decode_tokens: prompt + decode tokens exceed "
            "llama.max_position_embeddings"
        )


def bert_config(cfg: Mapping[str, Any]) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        num_hidden_layers=int(cfg["num_layers"]),
        num_attention_heads=int(cfg["num_heads"]),
        intermediate_size=int(cfg["intermediate_size"]),
        max_position_embeddings=int(cfg["max_position_embeddings"]),
    )


def llama_config(cfg: Mapping[str, Any]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_hidden_layers=int(cfg["num_layers"]),
        num_attention_heads=int(cfg["num_heads"]),
        num_key_value_heads=int(cfg["num_heads"]),
        max_position_embeddings=int(cfg["max_position_embeddings"]),
        tie_word_embeddings=False,
    )


def parameter_counts(model: Any) -> dict[str, int]:
    """Parameters in total and in the transformer layers (what a 7B model is 96% made of)."""
    import torch

    total = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return {"total": int(total), "linear_weights": int(linear)}


# ----------------------------------------------------------------------------- build, export, quantize
def export(kind: str, cfg: Mapping[str, Any], out_dir: Path, seed: int) -> tuple[Path, dict[str, int]]:
    """Build the model from config with seeded random weights and export it with optimum."""
    import torch
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import BertModel, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "bert":
        model: Any = BertModel(bert_config(cfg)).eval()
        task = "feature-extraction"
    else:
        model = LlamaForCausalLM(llama_config(cfg)).eval()
        task = "text-generation-with-past"
    counts = parameter_counts(model)
    onnx_export_from_model(model, str(out_dir), task=task, do_validation=False)
    del model
    gc.collect()
    return out_dir / "model.onnx", counts


def file_bytes(onnx_file: Path) -> int:
    data = Path(str(onnx_file) + ".data")
    extra = sum(p.stat().st_size for p in onnx_file.parent.glob("*.onnx_data"))
    return onnx_file.stat().st_size + (data.stat().st_size if data.exists() else 0) + extra


def quantize(fp32: Path, outdir: Path, block_size: int) -> dict[str, dict[str, Any]]:
    """FP32 plus the primary INT8 (ORT dynamic per-channel) and INT4 (MatMulNBits) graphs of ``fp32``."""
    from whylab.quant import onnx_graph, onnx_quant

    out: dict[str, dict[str, Any]] = {}
    expected = onnx_quant.expected_weight_matmuls(fp32)
    out["fp32"] = {"path": fp32, "op_counts": onnx_graph.op_counts(onnx_graph.load(fp32)), "quantize_s": 0.0}
    start = time.perf_counter()
    int8 = outdir / "int8" / "model.onnx"
    notes: list[str] = []
    # without quant_pre_process: at these sizes it takes ~60% of the quantizing time (BERT-base
    # 21 s -> 10 s) and changes no quantized op (72 of 72 MatMulInteger either way, same file
    # size); what it adds (constant folding, shape inference) ONNX Runtime does when it loads the
    # session. The small LM's variants keep it (quant_variants).
    counts = onnx_quant.int8_dynamic(fp32, int8, per_channel=True, pre_process=False, notes=notes)
    notes.append("quant_pre_process skipped at real scale: same quantized MatMuls; ORT optimizes at load")
    out["int8"] = {
        "path": int8,
        "op_counts": counts,
        "quantize_s": time.perf_counter() - start,
        "notes": notes,
    }
    start = time.perf_counter()
    int4 = outdir / "int4" / "model.onnx"
    counts = onnx_quant.int4_ort(fp32, int4, "rtn", block_size)
    out["int4"] = {"path": int4, "op_counts": counts, "quantize_s": time.perf_counter() - start}
    for fmt, row in out.items():
        row["size_bytes"] = file_bytes(row["path"])
        row["expected_weight_matmuls"] = expected
        row["attributes"] = matmulnbits_attributes(row["path"]) if fmt == "int4" else {}
    return out


def matmulnbits_attributes(path: Path) -> dict[str, int]:
    """bits, block_size and accuracy_level of the first MatMulNBits node (they are all alike)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            return {k: int(attrs.get(k, 0)) for k in ("bits", "block_size", "accuracy_level")}
    return {}


# ----------------------------------------------------------------------------- the step
def _sessions(
    models: Mapping[str, Mapping[str, Any]], device: str, threads: int, profile_dir: Path
) -> dict[str, Any]:
    """One session per format, its profiler on until :func:`_profiles` has run it once."""
    from whylab.quant.measure import ort_session

    return {fmt: ort_session(m["path"], device, threads, profile_dir) for fmt, m in models.items()}


def _profiles(
    sessions: Mapping[str, Any], runners: Mapping[str, Any], calls: int, skip_runs: int
) -> dict[str, dict[str, Any]]:
    """What ONNX Runtime ran for each format: the runner called ``calls`` times under the
    profiler, the first ``skip_runs`` inferences (first-run allocations, a decode's untimed
    prefill) left out. The profiled calls warm the sessions before the timing's own warm-up."""
    from whylab.quant.ort_profile import profile

    return {fmt: profile(sessions[fmt].session, runners[fmt], calls, skip_runs) for fmt in sessions}


def _family_record(
    models: Mapping[str, Mapping[str, Any]],
    sessions: Mapping[str, Any],
    features: Any,
    profiles: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    fp32 = models["fp32"]["size_bytes"]
    return {
        fmt: {
            "size_bytes": int(m["size_bytes"]),
            "size_cut_pct": 100.0 * (1.0 - m["size_bytes"] / fp32),
            "quantize_s": m["quantize_s"],
            "quantized_ops": {
                k: int(v)
                for k, v in m["op_counts"].items()
                if k in ("MatMul", "MatMulInteger", "MatMulNBits")
            },
            "expected_weight_matmuls": int(m["expected_weight_matmuls"]),
            "kernel_profile": dict(profiles[fmt]),
            **kept_beside("kernel_path", kernel_path(fmt, profiles[fmt], features)),
            "providers": list(sessions[fmt].providers),
            "notes": list(m.get("notes", [])),
        }
        for fmt, m in models.items()
    }


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """``whylab quant_real_scale``: no inputs; output ``measures`` (JSON). Models are deleted after."""
    from whylab.environment import cpu_features, environment
    from whylab.quant.measure import speedup_clock
    from whylab.quant.onnx_quant import int8_setup
    from whylab.runtime import resolve_device, set_threads

    rs = settings["quantization"]["real_scale"]
    check_settings(rs)
    set_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = resolve_device(str(settings.get("device", "auto")))
    ort_device = "cpu"  # the CPU's kernels are what this step measures; GPUs: benchmarks/bench_quant_gpu.py
    seed = int(settings.get("seeds", [0])[0])
    features = cpu_features()
    cache = last_level_cache_bytes()
    clock = speedup_clock(ort_device, threads)
    timing = rs["timing"]
    bs = int(rs["int4_block_size"])
    out = Path(outputs["measures"])
    work = out.parent / "_models"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    profile_dir = Path(tempfile.mkdtemp(prefix="whylab_ort_profile_"))  # never under results
    started = time.perf_counter()
    record: dict[str, Any] = {
        "cpu_features": features,
        "last_level_cache_bytes": cache,
        "environment": environment(device, threads),
        "ort_device": ort_device,
        "int8_setup": int8_setup(features),
        "int4_block_size": bs,
        "clock": clock,
        "threads": threads,
        "settings": rs,
    }
    try:
        # BERT-base: size and batch-1 prefill latency
        cfg = rs["bert"]
        fp32, params = export("bert", cfg, work / "bert" / "fp32", seed)
        models = quantize(fp32, work / "bert", bs)
        sessions = _sessions(models, ort_device, threads, profile_dir)
        feeds = bert_feeds(sessions["fp32"].session, int(cfg["prefill_tokens"]), int(cfg["vocab_size"]), seed)
        runners = {fmt: timed(prefill(s, feeds)) for fmt, s in sessions.items()}
        # four prefills, the first (first-run allocations) left out: one alone varies under load
        profiles = _profiles(sessions, runners, calls=4, skip_runs=1)
        times = interleaved(runners, int(timing["warmup"]), int(timing["rounds"]))
        bert = {
            "config": dict(cfg),
            "parameters": params,
            "formats": _family_record(models, sessions, features, profiles),
            "prefill": speed_summary(times, clock, float(cfg["prefill_tokens"]), "tokens_per_s"),
            "fast_path": {fmt: fast_path_record(*fast_path("prefill", fmt, features)) for fmt in FORMATS[1:]},
        }
        del sessions, runners
        gc.collect()
        shutil.rmtree(work / "bert")
        record["bert"] = bert

        # Llama-2-7B-width decoder layers: size and batch-1 decode tokens/s with the KV cache
        cfg = rs["llama"]
        fp32, params = export("llama", cfg, work / "llama" / "fp32", seed)
        models = quantize(fp32, work / "llama", bs)
        sessions = _sessions(models, ort_device, threads, profile_dir)
        prompt = np.random.default_rng(seed).integers(
            0, int(cfg["vocab_size"]), size=(1, int(cfg["prompt_tokens"]))
        )
        new = int(cfg["decode_tokens"])
        runners = {fmt: decoder(s, prompt.astype(np.int64), new) for fmt, s in sessions.items()}
        # a decoder call is one prefill and `new` decode steps: one call, its prefill and first
        # decode step (the first-run allocations) left out; the rest are the decode steps
        profiles = _profiles(sessions, runners, calls=1, skip_runs=2)
        times = interleaved(runners, int(timing["warmup"]), int(timing["rounds"]))
        record["llama"] = {
            "config": dict(cfg),
            "parameters": params,
            "formats": _family_record(models, sessions, features, profiles),
            "decode": speed_summary(times, clock, float(new), "tokens_per_s"),
            "fast_path": {
                fmt: fast_path_record(
                    *fast_path("decode", fmt, features, models["fp32"]["size_bytes"], cache)
                )
                for fmt in FORMATS[1:]
            },
        }
        del sessions, runners
        gc.collect()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(profile_dir, ignore_errors=True)
    record["wall_s"] = time.perf_counter() - started
    write_json(out, record)
