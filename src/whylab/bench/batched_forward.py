"""The batched forward and loss of R bench-transformer replicas (see bench/replicas.py).

Every weight carries a leading replica dimension: each Linear is one ``baddbmm`` over the
replicas, attention runs the same kernel on the replicas folded into the batch, and the
lm_head's cross-entropy goes a chunk of rows at a time so the (R, N, vocab) logits never exist
whole. The computation is BenchTransformer's, replica by replica.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from whylab.bench.attention import _sdpa, attention, make_mask
from whylab.bench.model_config import BenchConfig

ReplicaLoss = Literal["lm", "last_position"]
Params = dict[str, Tensor]


def _linear(x: Tensor, p: Params, name: str) -> Tensor:
    """(R, N, in) -> (R, N, out) with stacked weights (R, out, in) and biases (R, out)."""
    w = p[name + ".weight"].transpose(1, 2)
    bias = p.get(name + ".bias")
    if bias is None:
        return torch.bmm(x, w)
    return torch.baddbmm(bias[:, None, :], x, w)


def _norm(x: Tensor, p: Params, name: str, cfg: BenchConfig) -> Tensor:
    d = (cfg.d_model,)
    if cfg.norm == "layer":
        out = F.layer_norm(x, d, eps=1e-5)
        return torch.addcmul(p[name + ".bias"][:, None], out, p[name + ".weight"][:, None])
    if cfg.norm == "rms":
        return F.rms_norm(x, d, eps=1e-6) * p[name + ".weight"][:, None]
    return x


def _heads(x: Tensor, r: int, b: int, cfg: BenchConfig) -> Tensor:  # (R, B*T, D) -> (R*B, H, T, dh)
    return x.view(r * b, -1, cfg.n_heads, cfg.d_head).transpose(1, 2)


def _attention(x: Tensor, p: Params, name: str, mask: Tensor | None, b: int, cfg: BenchConfig) -> Tensor:
    r = x.shape[0]
    q = _linear(x, p, name + ".q_proj") if cfg.qk_proj else x
    k = _linear(x, p, name + ".k_proj") if cfg.qk_proj else x
    v = _linear(x, p, name + ".v_proj") if cfg.v_proj else x
    q, k, v = _heads(q, r, b, cfg), _heads(k, r, b, cfg), _heads(v, r, b, cfg)
    if cfg.use_sdpa and cfg.qk_proj and cfg.v_proj and cfg.scale == "sqrt_dk":
        out = _sdpa(q, k, v, mask=mask)
    else:
        out, _ = attention(q, k, v, mask=mask, scale=cfg.scale_factor())
    out = out.transpose(1, 2).reshape(r, -1, cfg.d_model)
    return _linear(out, p, name + ".out_proj") if cfg.o_proj else out


def _ffn(x: Tensor, p: Params, name: str, cfg: BenchConfig) -> Tensor:
    if cfg.activation == "swiglu":
        h = F.silu(_linear(x, p, name + ".gate")) * _linear(x, p, name + ".up")
    elif cfg.activation == "relu":
        h = F.relu(_linear(x, p, name + ".up"))
    else:
        h = F.gelu(_linear(x, p, name + ".up"))
    return _linear(h, p, name + ".down")


def _sublayer(
    x: Tensor, fn: Callable[[Tensor], Tensor], norm: Callable[[Tensor], Tensor], pre: bool
) -> Tensor:
    return x + fn(norm(x)) if pre else norm(x + fn(x))


def batched_hidden(p: Params, ids: Tensor, cfg: BenchConfig) -> Tensor:
    """The final hidden states (R, B*T, D) of R replicas on their own ids (R, B, T)."""
    r, b, t = ids.shape
    if t > cfg.max_len:
        raise ValueError(f"sequence length {t} exceeds max_len={cfg.max_len}")
    table = p["token_embedding.weight"]
    offsets = torch.arange(r, device=ids.device).view(r, 1, 1) * cfg.vocab_size
    tok = F.embedding((ids + offsets).view(r, b * t), table.reshape(-1, cfg.d_model))
    pos = p["position_embedding.weight"][:, :t].repeat(1, b, 1)
    x = tok + pos
    key_padding = (ids != cfg.pad_id).view(r * b, t) if cfg.pad_id is not None else None
    mask = make_mask(r * b, t, t, causal=cfg.causal, key_padding=key_padding, device=ids.device)
    pre = cfg.norm_position == "pre"
    for i in range(cfg.n_layers):
        blk = f"blocks.{i}"
        x = _sublayer(
            x,
            lambda h, blk=blk: _attention(h, p, blk + ".attn", mask, b, cfg),  # type: ignore[misc]
            lambda h, blk=blk: _norm(h, p, blk + ".norm1", cfg),  # type: ignore[misc]
            pre,
        )
        if cfg.ffn:
            x = _sublayer(
                x,
                lambda h, blk=blk: _ffn(h, p, blk + ".ffn", cfg),  # type: ignore[misc]
                lambda h, blk=blk: _norm(h, p, blk + ".norm2", cfg),  # type: ignore[misc]
                pre,
            )
    return _norm(x, p, "final_norm", cfg) if pre else x


class _ChunkedHeadCE(torch.autograd.Function):
    """lm_head + cross-entropy per replica, a chunk of rows at a time, so the (R, N, vocab)
    logits never exist whole: R models' logits overflow the cache and the softmax and its
    backward, memory-bound, then cost more than every matmul of the step. The backward
    recomputes each chunk's logits (one extra head matmul) instead of keeping them."""

    CHUNK = 128

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, target: Tensor) -> Tensor:
        # hidden (R, N, D), weight (R, V, D), target (R, N) with -100 = ignored; -> (R,) means
        lse = torch.empty(target.shape, dtype=hidden.dtype, device=hidden.device)
        picked = torch.empty_like(lse)
        safe = target.clamp_min(0)
        w_t = weight.transpose(1, 2)
        for i in range(0, hidden.shape[1], _ChunkedHeadCE.CHUNK):
            logits = torch.bmm(hidden[:, i : i + _ChunkedHeadCE.CHUNK], w_t)
            lse[:, i : i + logits.shape[1]] = torch.logsumexp(logits, dim=-1)
            picked[:, i : i + logits.shape[1]] = logits.gather(2, safe[:, i : i + logits.shape[1], None])[
                ..., 0
            ]
        valid = target != -100
        count = valid.sum(dim=1).to(hidden.dtype)
        ctx.save_for_backward(hidden, weight, safe, valid, lse, count)
        return ((lse - picked) * valid).sum(dim=1) / count

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        hidden, weight, safe, valid, lse, count = ctx.saved_tensors
        scale = valid.to(hidden.dtype) * (grad / count)[:, None]  # (R, N): d loss_r / d logit row
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        w_t = weight.transpose(1, 2)
        for i in range(0, hidden.shape[1], _ChunkedHeadCE.CHUNK):
            h = hidden[:, i : i + _ChunkedHeadCE.CHUNK]
            j = slice(i, i + h.shape[1])
            d = torch.bmm(h, w_t).sub_(lse[:, j, None]).exp_()  # softmax
            d.scatter_add_(2, safe[:, j, None], torch.full_like(lse[:, j, None], -1.0))
            d.mul_(scale[:, j, None])
            if grad_h is not None:
                torch.bmm(d, weight, out=grad_h[:, j])
            if grad_w is not None:
                grad_w.baddbmm_(d.transpose(1, 2), h)
        return grad_h, grad_w, None


def batched_loss(p: Params, x: Tensor, y: Tensor, cfg: BenchConfig, loss: ReplicaLoss) -> Tensor:
    """Each replica's mean loss (R,): next-token cross-entropy (targets of -100 ignored), or the
    cross-entropy of the answer at the last position (``y`` (R, B))."""
    hidden = batched_hidden(p, x, cfg)
    head = p.get("lm_head.weight", p["token_embedding.weight"])
    r, b, t = x.shape
    if loss == "last_position":
        hidden, target = hidden.view(r, b, t, -1)[:, :, -1], y.reshape(r, b)
    else:
        target = y.reshape(r, b * t)
    out: Tensor = _ChunkedHeadCE.apply(hidden, head, target)
    return out
