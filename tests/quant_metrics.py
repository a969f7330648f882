"""Synthetic C12/C13 metrics: variant rows as summarize_variants gives them, and the metrics
around them (the claimed ranges and tolerances from each claim's claim.yaml)."""

from __future__ import annotations

from typing import Any

from whylab.concepts.c12_int8 import verdict as c12
from whylab.concepts.c13_int4 import verdict as c13


def variant(
    name: str,
    family: str,
    *,
    loss: float,
    size_cut: float,
    tensor_cut: float | None = None,
    speedup: float | None = 1.0,
    spread: float = 0.05,
    n: int = 20,
    ci: float = 0.5,
) -> dict[str, Any]:
    return {
        "variant": name,
        "family": family,
        "bits": 8 if family == "int8" else 4,
        "runtime": "onnxruntime",
        "algorithm": "x",
        "block_size": 32,
        "provider": "CPUExecutionProvider",
        "valid_ppl": 10.0,
        "ppl_change_pct": loss,
        "ppl_change_low_pct": loss - ci,
        "ppl_change_high_pct": loss + ci,
        "size_bytes": 100,
        "size_cut_pct": size_cut,
        "memory_cut_pct": size_cut,
        "quantized_tensor_cut_pct": tensor_cut,
        "latency_ms_p50": 1.0,
        "latency_ms_p90": 1.2,
        "speedup_clock": "cpu",
        "speedup_latency_p50": speedup,
        "speedup_q25": None if speedup is None else speedup - spread,
        "speedup_median": speedup,
        "speedup_q75": None if speedup is None else speedup + spread,
        "speedup_n": n,
        "speedup_throughput": speedup,
    }


def c12_metrics(*variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "claimed": c12.CLAIMED,
        "tolerance": c12.TOLERANCE,
        "variants": list(variants),
        "skipped": [],
        "device": "cpu",
        "providers": ["CPUExecutionProvider"],
    }


def c13_metrics(*variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "claimed": c13.CLAIMED,
        "tolerance": c13.TOLERANCE,
        "variants": list(variants),
        "skipped": [],
        "device": "cpu",
        "providers": ["CPUExecutionProvider"],
    }
