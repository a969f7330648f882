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
on one thread's CPU time when one thread runs; the kernel path that ran is named from the
graph's ops and the CPU's instruction sets (ONNX Runtime's MLAS picks its kernels by CPU flag).
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from whylab.errors import InputError
from whylab.files import write_json
from whylab.messages import Msg, kept_beside

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
    counts = onnx_quant.int8_dynamic(fp32, int8, per_channel=True, notes=notes)
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


# ----------------------------------------------------------------------------- kernel paths
def int8_isa(features: Mapping[str, bool] | None) -> str | Msg | None:
    """The U8S8 kernel ONNX Runtime's MLAS dispatches to on this CPU (best instruction set first)."""
    f = features or {}
    for key, name in (
        ("amx", "AMX"),
        ("avx512_vnni", "AVX512-VNNI"),
        ("avx_vnni", "AVX-VNNI"),
        ("avx2", Msg("quant.kernel.isa_avx2")),
    ):
        if f.get(key):
            return name
    return None


def kernel_path(fmt: str, op_counts: Mapping[str, int], attrs: Mapping[str, int], features: Any) -> Msg:
    """The kernel path a format's weight MatMuls run on, in words (a catalogue message)."""
    f = features or {}
    float_isa = "AVX-512" if f.get("avx512") else "AVX2" if f.get("avx2") else "generic"
    if fmt == "fp32":
        return Msg("quant.kernel.fp32", isa=float_isa)
    if fmt == "int8":
        isa = int8_isa(features) or Msg("quant.kernel.no_isa")
        return Msg("quant.kernel.int8", count=op_counts.get("MatMulInteger", 0), isa=isa)
    level = int(attrs.get("accuracy_level", 0))
    return Msg(
        "quant.kernel.int4_int8_compute" if level == 4 else "quant.kernel.int4_fp32_compute",
        count=op_counts.get("MatMulNBits", 0),
        bits=attrs.get("bits", 4),
        block=attrs.get("block_size"),
        level=level,
        isa=float_isa,
    )


def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """Size of the CPU's largest cache level (Linux sysfs); None where unreadable."""
    best: tuple[int, int] | None = None
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text().strip())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit() and (best is None or level > best[0]):
            best = (level, int(digits) * scale)
    return None if best is None else best[1]


MEMORY_BOUND_FACTOR = 4  # decode is memory-bound when the FP32 weights exceed this many times the cache


def fast_path(
    regime: str,
    fmt: str,
    features: Mapping[str, bool] | None,
    weight_bytes: int | None = None,
    cache_bytes: int | None = None,
) -> tuple[bool | None, Msg]:
    """Whether an INT8/INT4 fast path exists for ``regime`` on this CPU, and why (None: unknown).

    Decode at batch 1 is memory-bound once the weights are far larger than the cache: any
    INT8/INT4 kernel that reads packed weights then wins by bandwidth (AVX2 suffices); weights
    that fit in the cache leave no bandwidth to save. Prefill is compute-bound: INT8 beats FP32
    arithmetic only with an INT8 dot-product instruction (VNNI or AMX); 4-bit weights dequantized
    to fp32 have none.
    """
    if features is None:
        return None, Msg("quant.fast_path.no_cpu_info")
    if regime == "decode":
        if not features.get("avx2"):
            return False, Msg("quant.fast_path.no_avx2")
        if weight_bytes is not None and cache_bytes and weight_bytes < MEMORY_BOUND_FACTOR * cache_bytes:
            return False, Msg(
                "quant.fast_path.fits_cache",
                weights=f"{weight_bytes / 1e6:.3g} MB",
                factor=MEMORY_BOUND_FACTOR,
                cache=f"{cache_bytes / 1e6:.3g} MB",
            )
        return True, Msg("quant.fast_path.memory_bound")
    if fmt == "int8":
        if any(features.get(k) for k in ("avx512_vnni", "avx_vnni", "amx")):
            return True, Msg("quant.fast_path.vnni")
        return False, Msg("quant.fast_path.no_vnni")
    return False, Msg("quant.fast_path.int4_prefill")


def fast_path_record(exists: bool | None, why: Msg) -> dict[str, Any]:
    """A fast-path verdict as the record keeps it (the reason in English, its message beside it)."""
    return {"exists": exists, **kept_beside("why", why)}


# ----------------------------------------------------------------------------- timing
def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def bert_feeds(session: Any, tokens: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(1, tokens), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    names = {i.name for i in session.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}


def decoder(sess: Any, prompt: np.ndarray, new_tokens: int) -> Callable[[], tuple[float, float]]:
    """A function that prefills ``prompt`` untimed, decodes ``new_tokens`` greedily with the KV cache,
    and returns the decode's (wall, thread CPU) seconds."""
    past_names = [i.name for i in sess.session.get_inputs() if i.name.startswith("past_key_values")]
    out_names = [o.name for o in sess.session.get_outputs()]
    present = {
        n.replace("present", "past_key_values"): i for i, n in enumerate(out_names) if n.startswith("present")
    }
    if set(present) != set(past_names):
        raise RuntimeError(
            "the exported decoder's present.* outputs do not match its past_key_values.* inputs"
        )
    logits_index = out_names.index("logits")
    names = {i.name for i in sess.session.get_inputs()}

    def step(
        ids: np.ndarray, past: dict[str, np.ndarray] | None, position: int
    ) -> tuple[int, dict[str, np.ndarray]]:
        if past is None:
            feeds = sess.feeds(ids)
        else:
            total = position + ids.shape[1]
            feeds = {"input_ids": ids, **past}
            if "attention_mask" in names:
                feeds["attention_mask"] = np.ones((1, total), dtype=np.int64)
            if "position_ids" in names:
                feeds["position_ids"] = np.arange(position, total, dtype=np.int64)[None, :]
        outs = sess.session.run(None, feeds)
        nxt = int(np.argmax(outs[logits_index][0, -1]))
        return nxt, {name: outs[i] for name, i in present.items()}

    def run() -> tuple[float, float]:
        token, past = step(prompt, None, 0)
        position = prompt.shape[1]
        wall0, cpu0 = _clock()
        for _ in range(new_tokens):
            token, past = step(np.array([[token]], dtype=np.int64), past, position)
            position += 1
        wall1, cpu1 = _clock()
        return wall1 - wall0, cpu1 - cpu0

    return run


def interleaved(
    runners: Mapping[str, Callable[[], tuple[float, float]]], warmup: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Seconds (wall, thread CPU) of each runner, run in turn within every round, after warm-up rounds."""
    out: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in runners}
    for r in range(warmup + rounds):
        for name, fn in runners.items():
            wall, cpu = fn()
            if r >= warmup:
                out[name]["wall"].append(wall)
                out[name]["cpu"].append(cpu)
    return out


def prefill(sess: Any, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
    """One batch-1 forward pass of ``feeds`` through the session."""
    return lambda: sess.session.run(None, dict(feeds))


def timed(fn: Callable[[], Any]) -> Callable[[], tuple[float, float]]:
    def run() -> tuple[float, float]:
        wall0, cpu0 = _clock()
        fn()
        wall1, cpu1 = _clock()
        return wall1 - wall0, cpu1 - cpu0

    return run


def speed_summary(
    times: Mapping[str, Mapping[str, list[float]]], clock: str, work: float, unit: str
) -> dict[str, dict[str, Any]]:
    """Per format: median time, rate (work / time), and per-round speed-ups over fp32 on ``clock``."""
    ref = times["fp32"][clock]
    out: dict[str, dict[str, Any]] = {}
    for fmt, t in times.items():
        vals = t[clock]
        rounds = [r / v for r, v in zip(ref, vals, strict=True)]
        q = np.percentile(np.asarray(rounds), [25, 50, 75])
        out[fmt] = {
            "median_s": statistics.median(vals),
            "median_wall_s": statistics.median(t["wall"]),
            unit: work / statistics.median(vals),
            "speedup_rounds": rounds,
            "speedup_q25": float(q[0]),
            "speedup_median": float(q[1]),
            "speedup_q75": float(q[2]),
            "speedup_n": len(rounds),
        }
    return out


# ----------------------------------------------------------------------------- the step
def _sessions(models: Mapping[str, Mapping[str, Any]], device: str, threads: int) -> dict[str, Any]:
    from whylab.quant.measure import ort_session

    return {fmt: ort_session(m["path"], device, threads) for fmt, m in models.items()}


def _family_record(
    models: Mapping[str, Mapping[str, Any]], sessions: Mapping[str, Any], features: Any
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
            **kept_beside("kernel_path", kernel_path(fmt, m["op_counts"], m["attributes"], features)),
            "providers": list(sessions[fmt].providers),
            "notes": list(m.get("notes", [])),
        }
        for fmt, m in models.items()
    }


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """``whylab quant_real_scale``: no inputs; output ``measures`` (JSON). Models are deleted after."""
    from whylab.quant.measure import speedup_clock
    from whylab.quant.onnx_quant import int8_setup
    from whylab.results import cpu_features, environment
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
        sessions = _sessions(models, ort_device, threads)
        feeds = bert_feeds(sessions["fp32"].session, int(cfg["prefill_tokens"]), int(cfg["vocab_size"]), seed)
        runners = {fmt: timed(prefill(s, feeds)) for fmt, s in sessions.items()}
        times = interleaved(runners, int(timing["warmup"]), int(timing["rounds"]))
        bert = {
            "config": dict(cfg),
            "parameters": params,
            "formats": _family_record(models, sessions, features),
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
        sessions = _sessions(models, ort_device, threads)
        prompt = np.random.default_rng(seed).integers(
            0, int(cfg["vocab_size"]), size=(1, int(cfg["prompt_tokens"]))
        )
        new = int(cfg["decode_tokens"])
        runners = {fmt: decoder(s, prompt.astype(np.int64), new) for fmt, s in sessions.items()}
        times = interleaved(runners, int(timing["warmup"]), int(timing["rounds"]))
        record["llama"] = {
            "config": dict(cfg),
            "parameters": params,
            "formats": _family_record(models, sessions, features),
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
    record["wall_s"] = time.perf_counter() - started
    write_json(out, record)
