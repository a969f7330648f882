"""Next-token cross-entropy with a one-pass backward: the same loss as ``F.cross_entropy``,
cheaper to differentiate.

``F.cross_entropy`` is ``log_softmax`` then ``nll_loss``; its backward fills a (tokens, vocab)
tensor of zeros, scatters -1/N into it (``nll_loss_backward``) and then reads it again with the
saved log-probabilities (``_log_softmax_backward_data``). At the bench lab's vocabulary of 1,000
and 1,024 tokens a step, those two passes over 4 MB were the costliest ops after the matmuls.
Here the backward is the textbook form, ``softmax - onehot`` scaled by the incoming gradient
over the number of counted targets, written in place into the saved log-probabilities: one
``exp`` and one scale. The forward is the library's own (``log_softmax`` + ``nll_loss``), so
the loss value is the same float; the gradient agrees to float rounding
(tests/test_bench_fast_path.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        loss = F.nll_loss(logp, target, ignore_index=ignore_index)
        keep = target != ignore_index
        ctx.save_for_backward(logp, target, keep)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        logp, target, keep = ctx.saved_tensors
        # the saved log-probabilities are used by nothing else: the gradient is written over them
        grad = logp.exp_()
        scale = grad_out / keep.sum().clamp(min=1)
        grad.mul_(scale)
        safe = torch.where(keep, target, 0)[:, None]
        grad.scatter_add_(1, safe, (-scale * keep).to(grad.dtype)[:, None])
        grad.mul_(keep[:, None])  # ignored targets pass no gradient
        return grad, None, None


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy (nats) of ``logits`` (N, V) against ``target`` (N,); targets equal to
    ``ignore_index`` are left out of the mean, as in ``F.cross_entropy``."""
    if logits.dim() != 2 or not logits.requires_grad:
        return F.cross_entropy(logits, target, ignore_index=ignore_index)
    return _CrossEntropy.apply(logits, target, ignore_index)
