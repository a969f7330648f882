"""Process-wide run settings: device choice, seeds, CPU threads."""

from __future__ import annotations

import contextlib
import os
import random

from whylab.errors import InputError


def resolve_device(setting: str = "auto") -> str:
    """Map the config's ``device`` (auto | cpu | cuda) to a torch device string."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise InputError("device: 'cuda' was asked for, but torch sees no CUDA device; use 'auto' or 'cpu'")
    if setting not in ("cpu", "cuda"):
        raise InputError(f"device: {setting!r} is not one of auto, cpu, cuda")
    return setting


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- seeds the legacy global RNG that libraries still draw from
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_threads(threads: int) -> None:
    """Use at most ``threads`` CPU threads in torch, so parallel rules do not oversubscribe."""
    import torch

    threads = max(1, int(threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set once in this process
        torch.set_num_interop_threads(threads)
