"""The autograd probe: counts the gradient computations code makes while it runs.

Light on purpose (torch and the standard library only): C15's experiment uses it in the main
environment and :mod:`whylab.thirdparty.llmcompressor_check` in llmcompressor's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def autograd_probe() -> Iterator[dict[str, int]]:
    """Count gradient computations: backward()/grad() calls and tensors saved for a backward pass.

    ``Tensor.backward`` goes through ``torch.autograd.backward``, so both are counted here.
    """
    counts = {"backward_calls": 0, "grad_calls": 0, "saved_for_backward": 0}
    original_backward, original_grad = torch.autograd.backward, torch.autograd.grad

    def backward(*args: Any, **kwargs: Any) -> Any:
        counts["backward_calls"] += 1
        return original_backward(*args, **kwargs)

    def grad(*args: Any, **kwargs: Any) -> Any:
        counts["grad_calls"] += 1
        return original_grad(*args, **kwargs)

    def pack(t: torch.Tensor) -> torch.Tensor:
        counts["saved_for_backward"] += 1
        return t

    torch.autograd.backward, torch.autograd.grad = backward, grad
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield counts
    finally:
        torch.autograd.backward, torch.autograd.grad = original_backward, original_grad


def probe_control() -> dict[str, int]:
    """A gradient-based rounding step (what 'gradient-based' would look like), seen by the probe."""
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(32, 16, generator=gen), torch.randn(8, 16, generator=gen)
    with autograd_probe() as counts:
        q = w.clone().requires_grad_(True)
        loss = ((x @ q.T - x @ w.T) ** 2).mean() + (q - torch.round(q * 8) / 8).pow(2).sum()
        loss.backward()
    return dict(counts)
