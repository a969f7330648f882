"""Which kernels a format ran in ONNX Runtime on this CPU (its profiler's op types, with the CPU's
instruction sets as context), and whether an INT8/INT4 fast path exists for a regime (decode or
prefill), for ``quant_real_scale``.

ONNX Runtime's MLAS picks its kernels by CPU flag; decode at batch 1 is memory-bound once the
weights far exceed the last-level cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from whylab.messages import Msg, kept_beside
from whylab.quant.ort_profile import top_ops


def int8_isa(features: Mapping[str, bool] | None) -> str | Msg | None:
    """The best INT8 dot-product instruction set this CPU has (context beside the profiled path)."""
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


def cpu_context(fmt: str, features: Mapping[str, bool] | None) -> str | Msg:
    """The CPU's instruction sets that matter for ``fmt``: context only, the path is the profiler's."""
    f = features or {}
    float_isa = "AVX-512" if f.get("avx512") else "AVX2" if f.get("avx2") else "generic"
    if fmt != "int8":
        return float_isa
    return int8_isa(features) or Msg("quant.kernel.no_isa")


def kernel_path(fmt: str, profile: Mapping[str, Any] | None, features: Any) -> Msg:
    """The kernel path a format ran, in words: the op types ONNX Runtime's profiler timed, with
    their share of kernel time (:mod:`whylab.quant.ort_profile`), and the CPU's instruction sets
    beside them; without a profile, only that it was not recorded."""
    isa = cpu_context(fmt, features)
    if not profile or not profile.get("ops"):
        return Msg("quant.kernel.unprofiled", isa=isa)
    ops = [
        Msg(
            "quant.kernel.op",
            op=o["op"],
            share=float(o["share_pct"]),
            provider=str(o["provider"]).removesuffix("ExecutionProvider"),
        )
        for o in top_ops(profile)
    ]
    return Msg("quant.kernel.profiled", ops=ops, runs=int(profile["runs"]), isa=isa)


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
