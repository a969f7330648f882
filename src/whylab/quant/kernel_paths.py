"""Which kernels a format ran in ONNX Runtime on this CPU (its profiler's op types, with the CPU's
instruction sets as context), whether an INT8/INT4 fast path exists for a regime (decode or
prefill), for ``quant_real_scale``, and why decode got the speed-up it got (:class:`DecodeBytes`:
the bytes each format reads per token and the bandwidth it achieved), for C12's speed part.

ONNX Runtime's MLAS picks its kernels by CPU flag; decode at batch 1 is memory-bound once the
weights exceed the last-level cache: it then streams every weight once per token, and a format
that reads fewer bytes is faster by about the ratio of the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


# decode streams its weights from memory once the FP32 weights exceed the last-level cache (1×);
# the factor 4 used before left an 843 MB decoder on a 503 MB cache "not memory-bound" although
# both formats streamed at the same ~14 GB/s (results/concepts/C12, issue 21)
MEMORY_BOUND_FACTOR = 1
# INT8 reading its weights this many times faster than FP32 reads its own: more than streaming
# from memory explains (both formats stream at the same bandwidth when decode is memory-bound),
# so the cache serves part of INT8's smaller weights and the speed-up overstates a full-size model's
CACHE_SERVED_RATIO = 1.25


def fast_path(
    regime: str,
    fmt: str,
    features: Mapping[str, bool] | None,
    weight_bytes: int | None = None,
    cache_bytes: int | None = None,
) -> tuple[bool | None, Msg]:
    """Whether an INT8/INT4 fast path exists for ``regime`` on this CPU, and why (None: unknown).

    Decode at batch 1 is memory-bound once the FP32 weights exceed the cache: any INT8/INT4
    kernel that reads packed weights then wins by bandwidth (AVX2 suffices); weights that fit in
    the cache leave no memory bandwidth to save. Prefill is compute-bound: INT8 beats FP32
    arithmetic only with an INT8 dot-product instruction (VNNI or AMX); 4-bit weights dequantized
    to fp32 have none.
    """
    if features is None:
        return None, Msg("quant.fast_path.no_cpu_info")
    if regime == "decode":
        if not features.get("avx2"):
            return False, Msg("quant.fast_path.no_avx2")
        if weight_bytes is not None and cache_bytes and weight_bytes <= MEMORY_BOUND_FACTOR * cache_bytes:
            return False, Msg(
                "quant.fast_path.fits_cache", weights=megabytes(weight_bytes), cache=megabytes(cache_bytes)
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


def megabytes(n: float) -> str:
    return f"{n / 1e6:.3g} MB"


@dataclass(frozen=True)
class DecodeBytes:
    """What batch-1 decode read per token in FP32 and in a quantized format (each ONNX file: the
    weights, read once per token), how fast each went, and the last-level cache (None: unknown).

    The achieved weight bandwidth is tokens/s × bytes per token. Where decode is memory-bound
    both formats stream at about the same bandwidth, so the speed-up is about the ratio of the
    bytes; a quantized format that streams far faster than FP32 is partly served from the cache.
    """

    fp32_bytes: float
    quantized_bytes: float
    fp32_tokens_per_s: float
    quantized_tokens_per_s: float
    cache_bytes: float | None = None

    @property
    def bytes_ratio(self) -> float:
        return self.fp32_bytes / self.quantized_bytes

    @property
    def fp32_gb_per_s(self) -> float:
        return self.fp32_tokens_per_s * self.fp32_bytes / 1e9

    @property
    def quantized_gb_per_s(self) -> float:
        return self.quantized_tokens_per_s * self.quantized_bytes / 1e9

    @property
    def bandwidth_ratio(self) -> float:
        return self.quantized_gb_per_s / self.fp32_gb_per_s

    def limit(self) -> str | None:
        """Why this decode cannot speak for a full-size model's, or None: 'fits_cache' (the FP32
        weights fit in the cache: nothing streams from memory), 'cache_served' (the quantized
        weights streamed more than :data:`CACHE_SERVED_RATIO` times faster than FP32's)."""
        if self.cache_bytes and self.fp32_bytes <= MEMORY_BOUND_FACTOR * self.cache_bytes:
            return "fits_cache"
        if self.bandwidth_ratio > CACHE_SERVED_RATIO:
            return "cache_served"
        return None

    def numbers(self) -> dict[str, Any]:
        return {
            "fp32": megabytes(self.fp32_bytes),
            "quantized": megabytes(self.quantized_bytes),
            "ratio": self.bytes_ratio,
            "fp32_bw": self.fp32_gb_per_s,
            "q_bw": self.quantized_gb_per_s,
            "bw_ratio": self.bandwidth_ratio,
            "limit": CACHE_SERVED_RATIO,
            "cache": Msg("quant.decode.cache_unknown")
            if not self.cache_bytes
            else megabytes(self.cache_bytes),
        }

    def why(self) -> Msg:
        """The speed-up explained by the bytes moved, with the cache caveat the numbers support."""
        nums = self.numbers()
        fits = bool(self.cache_bytes) and self.quantized_bytes <= float(self.cache_bytes or 0)
        if self.limit() is not None:
            note = Msg(f"quant.open.{self.limit()}", **nums)
        elif not self.cache_bytes:
            note = Msg("quant.decode.no_cache_size")
        elif fits:
            note = Msg("quant.decode.streamed", **nums)
        else:
            note = Msg("quant.decode.beyond_cache", **nums)
        bound = "memory_bound" if self.bandwidth_ratio >= 1 / CACHE_SERVED_RATIO else "below_bytes"
        return Msg(f"quant.decode.{bound}", note=note, **nums)


def decode_bytes(real: Mapping[str, Any], fmt: str, cache_bytes: float | None) -> DecodeBytes | None:
    """The decode record of the real-scale step as :class:`DecodeBytes` (None: not measured)."""
    try:
        files, decode = real["formats"], real["decode"]
        return DecodeBytes(
            float(files["fp32"]["size_bytes"]),
            float(files[fmt]["size_bytes"]),
            float(decode["fp32"]["tokens_per_s"]),
            float(decode[fmt]["tokens_per_s"]),
            None if not cache_bytes else float(cache_bytes),
        )
    except (KeyError, TypeError, ZeroDivisionError):
        return None
