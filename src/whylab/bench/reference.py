"""The bench's training loop as it was before its fast path (issue 19), kept as the reference the
fast path is tested against (tests/test_bench_fast_path.py) and timed beside
(benchmarks/bench_lab_throughput.py).

What the fast path changed, and this loop keeps: the causal mask reaches the fused attention
kernel as an additive mask (not ``is_causal``), the loss is ``F.cross_entropy`` (its backward
fills and re-reads a tokens x vocab tensor), AdamW is ``foreach`` (on CPU a loop of per-tensor
ops) and the gradient norm is computed twice, once for the history and once inside
``clip_grad_norm_``. Same batches, same schedule, same clipping as ``train_lm``; no evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whylab.bench import attention
from whylab.bench.data import lm_batches
from whylab.bench.train import TrainSettings, _grad_norm, _lr_factor


@contextmanager
def additive_causal_mask() -> Iterator[None]:
    """Inside: the fused attention path takes the causal mask as an additive mask, as before."""
    fast = attention._sdpa

    def old(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, causal: bool = False) -> Tensor:
        return fast(q, k, v, mask=mask, causal=False)

    attention._sdpa = old
    try:
        yield
    finally:
        attention._sdpa = fast


def train_reference(model: nn.Module, train_ids: Tensor, s: TrainSettings) -> tuple[list[float], list[float]]:
    """Train ``model`` in place the old way; (train loss, grad norm before clipping) per step."""
    gen = torch.Generator().manual_seed(s.seed)
    stream = lm_batches(train_ids, batch_size=s.batch_size, seq_len=s.seq_len, generator=gen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, betas=(0.9, s.beta2), weight_decay=s.weight_decay, foreach=True)
    losses: list[float] = []
    norms: list[float] = []
    model.train()
    with additive_causal_mask():
        for step in range(s.steps):
            for group in opt.param_groups:
                group["lr"] = s.lr * _lr_factor(step, s)
            x, y = next(stream)
            logits = model(x).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            losses.append(float(loss.detach()))
            norms.append(_grad_norm(params))
            if s.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            opt.step()
    return losses, norms
