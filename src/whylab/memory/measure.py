"""Measured memory, by methods whose meaning and noise are known.

- ``tensor_bytes``: bytes held by a model's tensors (parameters, buffers, and the
  inner tensors of quantized weights: int data, scales, zero points, quant state).
  Exact: it reads storage sizes, de-duplicated by storage.
- ``saved_activation_bytes``: bytes autograd keeps for backward (saved-tensor hooks),
  de-duplicated by storage, parameters excluded. Exact.
- ``tracked_peak``: the peak of live tensor memory during a function.
  On CUDA it is ``torch.cuda.max_memory_allocated`` (the caching allocator's own
  count); everywhere it also runs torch's dispatch-level ``MemTracker``
  (torch.distributed._tools.mem_tracker), which follows every tensor storage
  created or freed and files it under parameter / gradient / optimizer state /
  activation / temporary. On CPU, where torch keeps no allocator statistics,
  MemTracker's peak is the measurement. It is deterministic (no noise) but sees
  only torch tensors, not the allocator's slack or the interpreter.
- ``rss_peak``: the process-level check. The work runs in a fresh process forked
  from a clean server (``multiprocessing`` forkserver, torch preloaded, glibc's
  mmap threshold fixed at 128 KiB so freed tensors go back to the OS); the peak
  resident set size is reset (``/proc/self/clear_refs``) just before the work and
  read (``VmHWM``) after it; without clear_refs, ``getrusage(ru_maxrss)`` before
  and after is used. Its noise floor is measured with work that allocates nothing.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

MiB = 2**20
CATEGORIES = ("parameters", "buffers", "gradients", "optimizer", "activations", "temporaries", "other")
_MEMTRACKER_NAMES = {
    "PARAM": "parameters",
    "BUFFER": "buffers",
    "GRAD": "gradients",
    "OPT": "optimizer",
    "ACT": "activations",
    "TEMP": "temporaries",
    "OTH": "other",
}


# --------------------------------------------------------------------------- tensor bytes


def _leaf_tensors(t: torch.Tensor) -> Iterable[torch.Tensor]:
    """The plain tensors under a tensor subclass (e.g. torchao's qdata, scale, zero_point)."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if is_traceable_wrapper_subclass(t):
        names, _ = t.__tensor_flatten__()
        for name in names:
            yield from _leaf_tensors(getattr(t, name))
    else:
        yield t


def _attached_tensors(obj: Any, depth: int = 0) -> Iterable[torch.Tensor]:
    """Tensors a quantized parameter carries as attributes (bitsandbytes SCB, quant_state.absmax, ...)."""
    if depth > 2:
        return
    for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
        if isinstance(value, torch.Tensor):
            yield value
        elif type(value).__name__ == "QuantState":
            yield from _attached_tensors(value, depth + 1)


def tensor_bytes(model: nn.Module) -> int:
    """Bytes held by the model's tensors, each storage once (tied weights are stored once)."""
    seen: dict[tuple[int, int], int] = {}

    def add(t: torch.Tensor) -> None:
        for leaf in _leaf_tensors(t):
            st = leaf.untyped_storage()
            seen[(st.data_ptr(), st.nbytes())] = st.nbytes()

    for t in [*model.parameters(), *model.buffers()]:
        add(t)
        for extra in _attached_tensors(t):
            add(extra)
    return sum(seen.values())


def saved_activation_bytes(model: nn.Module, forward: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes autograd saves for backward during ``forward()``, parameters excluded; and its output."""
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in param_storages:
            saved[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    return sum(saved.values()), out


# --------------------------------------------------------------------------- peak of live tensors


@dataclass
class Peak:
    """Peak memory of one measured function, with the breakdown at the peak."""

    peak_bytes: int
    breakdown: dict[str, int]  # category -> bytes at the peak (MemTracker)
    method: str
    device: str
    tracker_peak_bytes: int = 0
    baseline_bytes: int = 0  # live before ``fn``: tracked tensors (CPU) or everything allocated (CUDA)
    extra: dict[str, Any] = field(default_factory=dict)

    def mib(self) -> float:
        return self.peak_bytes / MiB


class MemTrackerChanged(RuntimeError):
    """torch's private MemTracker no longer offers what the CPU measurements rely on."""


def check_memtracker() -> Any:
    """The MemTracker class, after checking the private API this module uses (fails with a clear message)."""
    where = f"torch {torch.__version__}: torch.distributed._tools.mem_tracker"
    hint = (
        "whylab's CPU memory measurements rely on this private torch API as it is in the pinned torch "
        "(2.13.0); pin that version or update whylab.memory.measure"
    )
    try:
        from torch.distributed._tools import mem_tracker
    except ImportError as exc:
        raise MemTrackerChanged(f"{where} cannot be imported ({exc}); {hint}") from None
    missing = [
        name
        for name in ("track_external", "get_tracker_snapshot", "reset_mod_stats", "__enter__", "__exit__")
        if not hasattr(getattr(mem_tracker, "MemTracker", None), name)
    ]
    ref = getattr(mem_tracker, "_MemRefType", None)
    names = {m.name for m in ref} if ref is not None else set()
    missing += [f"_MemRefType.{n}" for n in _MEMTRACKER_NAMES if n not in names]
    if missing:
        raise MemTrackerChanged(f"{where} changed: {', '.join(missing)} missing; {hint}")
    return mem_tracker.MemTracker


def _memtracker_peak(
    fn: Callable[[], Any], track: Iterable[Any], device: str
) -> tuple[int, dict[str, int], int]:
    tracker = check_memtracker()()
    for attr in ("memory_tracking", "_mod_tracker"):
        if not hasattr(tracker, attr):
            raise MemTrackerChanged(
                f"torch {torch.__version__}: MemTracker instances have no {attr!r}; whylab's CPU memory "
                "measurements rely on the pinned torch (2.13.0): pin it or update whylab.memory.measure"
            )
    tracker.track_external(*track)
    dev = torch.device(device if device != "cuda" else f"cuda:{torch.cuda.current_device()}")
    before = int(tracker.get_tracker_snapshot("current").get(dev, {}).get("Total", 0))
    roots = [m for m in track if isinstance(m, nn.Module)]

    def next_call(module: nn.Module, args: Any) -> None:
        # MemTracker refuses a second forward of the root module (it keeps per-module stats of one
        # iteration); gradient accumulation runs several. Its global peak is unaffected by the reset.
        if (
            any(module is r for r in roots)
            and module in tracker.memory_tracking
            and not tracker._mod_tracker.is_bw
        ):
            tracker.reset_mod_stats()

    handle = torch.nn.modules.module.register_module_forward_pre_hook(next_call)
    try:
        with tracker:
            fn()
    finally:
        handle.remove()
    snap = tracker.get_tracker_snapshot("peak")
    dev_snap = snap.get(dev, {})
    breakdown = dict.fromkeys(CATEGORIES, 0)
    total = 0
    for key, value in dev_snap.items():
        name = getattr(key, "name", str(key))
        if name in _MEMTRACKER_NAMES:
            breakdown[_MEMTRACKER_NAMES[name]] += int(value)
        elif str(key) == "Total":
            total = int(value)
    return total, breakdown, before


def tracked_peak(fn: Callable[[], Any], track: Iterable[Any], device: str, use_tracker: bool = True) -> Peak:
    """Peak live memory during ``fn()`` on ``device``; ``track`` = modules/optimizers/tensors alive before.

    On CUDA the peak is the allocator's ``max_memory_allocated``, measured in a
    separate call of ``fn`` from the tracker's (the tracker adds no device memory,
    but keeping the two apart keeps the allocator number clean).
    """
    track = list(track)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        gc.collect()
        torch.cuda.reset_peak_memory_stats()
        baseline = int(torch.cuda.memory_allocated())
        fn()
        torch.cuda.synchronize()
        peak = int(torch.cuda.max_memory_allocated())
        extra = {"max_memory_reserved": int(torch.cuda.max_memory_reserved()), **cuda_context()}
        tracker_total, breakdown, _ = (
            _memtracker_peak(fn, track, device) if use_tracker else (0, dict.fromkeys(CATEGORIES, 0), 0)
        )
        return Peak(
            peak, breakdown, "torch.cuda.max_memory_allocated", device, tracker_total, baseline, extra
        )
    total, breakdown, before = _memtracker_peak(fn, track, device)
    return Peak(total, breakdown, "MemTracker (dispatch-level live tensor bytes)", device, total, before)


def cuda_context() -> dict[str, int]:
    """What the GPU holds beyond PyTorch's allocator: device memory in use (cudaMemGetInfo) minus reserved.

    In a process that is alone on the GPU this is the CUDA context (driver, kernels, cuBLAS/cuDNN
    handles); other processes on the same GPU would add to it.
    """
    free, total = torch.cuda.mem_get_info()
    used = int(total - free)
    return {"device_used": used, "cuda_context": used - int(torch.cuda.memory_reserved())}


def time_calls(fn: Callable[[], Any], repeats: int, device: str, warmup: int = 1) -> list[float]:
    """Wall time of ``fn()`` in seconds, ``repeats`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


# --------------------------------------------------------------------------- RSS in a fresh process


def _read_status(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field_name)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_child(target: str, kwargs: dict[str, Any], threads: int) -> dict[str, Any]:
    """Runs in the fresh process: set up (unmeasured), reset the peak, run the work, report."""
    import importlib

    torch.set_num_threads(threads)
    module_name, _, func_name = target.partition(":")
    work = getattr(importlib.import_module(module_name), func_name)(**kwargs)
    gc.collect()
    if _reset_peak_rss():
        base = _read_status("VmRSS")
        result = work()
        gc.collect()
        peak = _read_status("VmHWM")
        method = "VmHWM after clear_refs"
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result = work()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        method = "ru_maxrss delta"
    after = _read_status("VmRSS")
    return {
        "peak_delta_bytes": peak - base,
        "resident_delta_bytes": after - base,
        "baseline_rss_bytes": base,
        "method": method,
        "result": result,
    }


_POOL_CTX: Any = None


def _context() -> Any:
    global _POOL_CTX
    if _POOL_CTX is None:
        # glibc: a fixed mmap threshold keeps freed tensor buffers from being kept in the heap
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(
            ["torch", "transformers.models.llama.modeling_llama", "whylab.memory.training"]
        )
        _POOL_CTX = ctx
    return _POOL_CTX


def rss_peak(
    target: str, kwargs: Mapping[str, Any] | None = None, threads: int = 1, timeout: float = 300.0
) -> dict[str, Any]:
    """Peak RSS increase of ``target(**kwargs)()`` in a fresh process ("module:function" returning the work)."""
    ctx = _context()
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply_async(_rss_child, (target, dict(kwargs or {}), threads)).get(timeout)


def null_work() -> Callable[[], None]:
    """Work that allocates nothing: its peak-RSS delta is the method's noise floor."""
    return lambda: None
