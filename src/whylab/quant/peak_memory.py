"""Peak memory of a block of code, on GPU (CUDA allocator) or CPU (process RSS high-water mark).

Why not tracemalloc: it only sees Python's allocator, not torch's tensors. Torch keeps
no peak statistics for CPU memory, so on CPU this measures the process's resident set
instead: Linux resets the high-water mark (VmHWM) on request (writing 5 to
/proc/self/clear_refs), and the block's peak is VmHWM minus the RSS when it started.
glibc would otherwise keep freed tensors' memory inside the process and hand it out
again without the RSS moving, so large allocations (>= 64 KiB) are forced onto mmap,
which returns them to the system when freed: a later block cannot hide in an earlier
block's leftovers. Small allocations (< 64 KiB) can still be reused unseen; they are
noise next to weights, gradients, optimizer state and activations.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from pathlib import Path
from types import TracebackType

import torch

_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
_MMAP_THRESHOLD_BYTES = 64 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_mmap_forced = False


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_peak_supported() -> tuple[bool, str]:
    """Whether this process can reset and read its RSS high-water mark (Linux only)."""
    if _status_kib("VmHWM") is None:
        return False, "no /proc/self/status VmHWM (not Linux?)"
    try:
        _CLEAR_REFS.write_text("5")
    except OSError as exc:
        return False, f"cannot reset the RSS high-water mark ({exc.strerror or exc})"
    return True, ""


def _force_mmap_for_large_allocations() -> None:
    global _mmap_forced
    if _mmap_forced:
        return
    name = ctypes.util.find_library("c")
    if name:
        try:
            libc = ctypes.CDLL(name)
            if hasattr(libc, "mallopt"):
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        except OSError:
            pass
    _mmap_forced = True


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.peak_bytes``: the most extra memory in use.

    ``peak_bytes`` counts memory above what was in use when the block started (so the
    weights already loaded are not in it). ``method`` says how it was measured.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")
        self.peak_bytes: int | None = None
        self.start_bytes: int | None = None
        if self.cuda:
            self.method = "torch.cuda.max_memory_allocated minus memory_allocated at the start"
        else:
            self.method = (
                "process RSS high-water mark (VmHWM, reset via /proc/self/clear_refs) minus "
                "RSS at the start; allocations >= 64 KiB forced onto mmap so freed memory leaves"
            )

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = int(torch.cuda.memory_allocated(self.device))
            return self
        ok, _why = cpu_peak_supported()
        if ok:
            _force_mmap_for_large_allocations()
            gc.collect()
            _CLEAR_REFS.write_text("5")
            rss = _status_kib("VmRSS")
            self.start_bytes = None if rss is None else rss * 1024
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device)) - int(self.start_bytes or 0)
            return
        hwm = _status_kib("VmHWM")
        if self.start_bytes is not None and hwm is not None:
            self.peak_bytes = max(0, hwm * 1024 - self.start_bytes)
