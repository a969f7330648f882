"""Attention for the bench transformer: the notes' four steps, the fused fast path, the masks,
and multi-head attention with switchable projections and scale.

Attention is written as the notes' four steps (``attention`` below: QKᵀ, scale,
softmax, ·V). When the switches are the standard ones and no attention map is
asked for, the same computation goes through PyTorch's fused
``scaled_dot_product_attention`` (the tests check both give the same numbers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whylab.bench.model_config import BenchConfig


def attention(
    q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, scale: float | None
) -> tuple[Tensor, Tensor]:
    """The notes' four steps written out.

    1. scores = q @ kᵀ                       (B, H, Tq, Tk)
    2. scores * scale                        (None = no scaling)
    3. masked positions -> -inf, softmax over the keys
    4. weights @ v                           (B, H, Tq, d_head)

    ``mask`` is bool, broadcastable to (B, H, Tq, Tk), True = may attend. A query
    that may attend to no key at all gets zero weights and a zero output (instead
    of the NaN that a softmax over only -inf would give). Returns (output, weights).
    """
    scores = q @ k.transpose(-2, -1)  # 1. how well each query matches each key
    if scale is not None:
        scores = scores * scale  # 2. keep the score variance near 1
    if mask is not None:
        # 3a. the most negative float instead of -inf: identical after softmax (exp underflows
        # to exactly 0), but a fully masked row stays finite, so gradients stay finite too
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1)  # 3b. a probability distribution over the keys
    if mask is not None:
        weights = weights * mask.any(dim=-1, keepdim=True)  # rows with no visible key -> 0
    return weights @ v, weights  # 4. a weighted average of the values


def _sdpa(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None, causal: bool = False) -> Tensor:
    """The same computation through PyTorch's fused kernel (standard 1/√d_k scaling).

    ``causal``: ``mask`` is exactly the causal mask (no padding), so the kernel's own causal
    masking replaces the additive mask (``is_causal``; it skips the blocks above the diagonal).
    """
    if causal and q.shape[-2] == k.shape[-2]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    additive = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
    additive = additive.masked_fill(~mask, torch.finfo(q.dtype).min)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
    return out * mask.any(dim=-1, keepdim=True)


def make_mask(
    batch: int, t_q: int, t_k: int, *, causal: bool, key_padding: Tensor | None, device: torch.device
) -> Tensor | None:
    """Bool mask (B or 1, 1, Tq, Tk), True = may attend; None when nothing is masked.

    ``causal``: query i sees keys j <= i (the decoder's masked self-attention).
    ``key_padding``: (B, Tk) True = real token; PAD keys are hidden from every query.
    """
    mask: Tensor | None = None
    if causal:
        mask = torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()[None, None]
    if key_padding is not None:
        pad = key_padding.to(torch.bool)[:, None, None, :]  # (B, 1, 1, Tk)
        mask = pad if mask is None else (mask & pad)
    return mask


class MultiHeadAttention(nn.Module):
    """Multi-head attention with switchable projections and scale.

    Self-attention when ``context`` is None; cross-attention otherwise: the queries
    come from ``x`` (the decoder side), the keys and values from ``context`` (the
    encoder output). Without W_q/W_k (``qk_proj=False``) the queries and keys are
    the inputs themselves, cut into heads; without W_v, so are the values.
    """

    def __init__(self, cfg: BenchConfig, *, cross: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.cross = cross
        d = cfg.d_model
        self.q_proj = nn.Linear(d, d) if cfg.qk_proj else None
        self.k_proj = nn.Linear(d, d) if cfg.qk_proj else None
        if not cfg.qk_proj:  # Q = K = X: draw (and drop) what W_q, W_k would, so every layer
            for _ in range(2):  # built after them starts as it does with them (C04's pairing)
                nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d) if cfg.v_proj else None
        self.out_proj = nn.Linear(d, d) if cfg.o_proj else None
        self.scale = cfg.scale_factor()

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, d_head)
        b, t, _ = x.shape
        return x.view(b, t, self.cfg.n_heads, self.cfg.d_head).transpose(1, 2)

    def _can_use_sdpa(self, return_weights: bool) -> bool:
        c = self.cfg
        return c.use_sdpa and not return_weights and c.qk_proj and c.v_proj and c.scale == "sqrt_dk"

    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``causal``: ``mask`` is the plain causal mask (the fused path may use ``is_causal``)."""
        source = x if context is None else context  # where keys and values come from
        q = self.q_proj(x) if self.q_proj is not None else x
        k = self.k_proj(source) if self.k_proj is not None else source
        v = self.v_proj(source) if self.v_proj is not None else source
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        weights: Tensor | None = None
        if self._can_use_sdpa(return_weights):
            out = _sdpa(q, k, v, mask=mask, causal=causal)
        else:
            out, weights = attention(q, k, v, mask=mask, scale=self.scale)
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.cfg.d_model)  # concatenate the heads
        if self.out_proj is not None:
            out = self.out_proj(out)
        return out, (weights if return_weights else None)
