"""The bench transformer's layers besides attention: the norms (LayerNorm, naive and PAD-masked
BatchNorm, RMSNorm), the feed-forward block, and the block that puts them together (Pre-/Post-LN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whylab.bench.attention import MultiHeadAttention
from whylab.bench.model_config import BenchConfig

# --------------------------------------------------------------------------- norms and FFN


class TokenBatchNorm(nn.Module):
    """BatchNorm as a naive user would apply it to text: each channel is normalised over
    batch *and* time, PAD positions included (nn.BatchNorm1d on (B*T, D)). Training mode
    uses the batch's statistics; eval mode the running ones."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return self.bn(x.reshape(b * t, d)).view(b, t, d)


class MaskedTokenBatchNorm(nn.Module):
    """BatchNorm whose statistics exclude PAD: each channel is normalised with the mean and
    variance of the batch's *real* tokens only (C07 isolates the notes' reason with it).

    The model sets ``real`` ((B, T) bool, True = real token) before each forward; without it
    every position counts, as in :class:`TokenBatchNorm`. Training mode uses the real tokens'
    batch statistics (and updates the running ones from them); eval mode the running ones.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.running_mean: Tensor
        self.running_var: Tensor
        self.register_buffer("running_mean", torch.zeros(d_model))
        self.register_buffer("running_var", torch.ones(d_model))
        self.real: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        flat = x.reshape(b * t, d)
        if self.training:
            rows = flat if self.real is None else flat[self.real.reshape(-1).to(torch.bool)]
            if rows.shape[0] < 2:
                rows = flat
            mean, var = rows.mean(0), rows.var(0, unbiased=False)
            with torch.no_grad():
                n = rows.shape[0]
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * n / max(1, n - 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        out: Tensor = (flat - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return out.view(b, t, d)


def set_norm_padding(model: nn.Module, real: Tensor | None) -> None:
    """Tell every :class:`MaskedTokenBatchNorm` in ``model`` which positions are real tokens."""
    for m in model.modules():
        if isinstance(m, MaskedTokenBatchNorm):
            m.real = real


def is_batch_norm(module: nn.Module) -> bool:
    """A norm that uses batch statistics in training mode (naive or PAD-masked)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm | MaskedTokenBatchNorm)


def make_norm(cfg: BenchConfig) -> nn.Module:
    if cfg.norm == "layer":
        return nn.LayerNorm(cfg.d_model)
    if cfg.norm == "batch":
        return TokenBatchNorm(cfg.d_model)
    if cfg.norm == "masked_batch":
        return MaskedTokenBatchNorm(cfg.d_model)
    if cfg.norm == "rms":
        return nn.RMSNorm(cfg.d_model, eps=1e-6)
    return nn.Identity()


class FeedForward(nn.Module):
    """Position-wise feed-forward block: Linear -> activation -> Linear -> dropout.

    SwiGLU (Shazeer 2020) uses two input projections, silu(x W1) * (x W3), and a
    hidden width of 2/3 · ffn_mult · d_model so its parameter count matches the others.
    """

    def __init__(self, cfg: BenchConfig) -> None:
        super().__init__()
        self.activation = cfg.activation
        d = cfg.d_model
        if cfg.activation == "swiglu":
            hidden = max(1, round(2 * cfg.ffn_mult * d / 3))
            self.gate: nn.Linear | None = nn.Linear(d, hidden)
        else:
            hidden = cfg.ffn_mult * d
            self.gate = None
        self.hidden_size = hidden
        self.up = nn.Linear(d, hidden)
        self.down = nn.Linear(hidden, d)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.activation == "swiglu":
            assert self.gate is not None
            h = F.silu(self.gate(x)) * self.up(x)
        elif self.activation == "relu":
            h = F.relu(self.up(x))
        else:
            h = F.gelu(self.up(x))
        return self.dropout(self.down(h))


# --------------------------------------------------------------------------- block


class Block(nn.Module):
    """One layer: self-attention (+ cross-attention in a decoder of an encoder–decoder) + FFN.

    Pre-LN:  x = x + Attn(Norm(x));  x = x + FFN(Norm(x))
    Post-LN: x = Norm(x + Attn(x));  x = Norm(x + FFN(x))   (Vaswani et al. 2017)
    """

    def __init__(self, cfg: BenchConfig, *, cross: bool = False) -> None:
        super().__init__()
        self.pre = cfg.norm_position == "pre"
        self.norm1 = make_norm(cfg)
        self.attn = MultiHeadAttention(cfg)
        self.cross_norm = make_norm(cfg) if cross else None
        self.cross_attn = MultiHeadAttention(cfg, cross=True) if cross else None
        self.norm2 = make_norm(cfg) if cfg.ffn else None
        self.ffn = FeedForward(cfg) if cfg.ffn else None
        self.dropout = nn.Dropout(cfg.dropout)

    def _sublayer(self, x: Tensor, norm: nn.Module, fn) -> Tensor:  # type: ignore[no-untyped-def]
        if self.pre:
            return x + self.dropout(fn(norm(x)))
        return norm(x + self.dropout(fn(x)))

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        return_attention: bool = False,
        causal: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns (x, self-attention weights, cross-attention weights); weights only if asked.
        ``causal``: ``mask`` is the plain causal mask (no padding)."""
        maps: dict[str, Tensor | None] = {"self": None, "cross": None}

        def self_attn(h: Tensor) -> Tensor:
            out, maps["self"] = self.attn(h, mask=mask, causal=causal, return_weights=return_attention)
            return out

        x = self._sublayer(x, self.norm1, self_attn)
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("a decoder block with cross-attention needs the encoder memory")
            assert self.cross_norm is not None

            cross_module = self.cross_attn

            def cross_attn(h: Tensor) -> Tensor:
                out, maps["cross"] = cross_module(
                    h, context=memory, mask=memory_mask, return_weights=return_attention
                )
                return out

            x = self._sublayer(x, self.cross_norm, cross_attn)
        if self.ffn is not None:
            assert self.norm2 is not None
            x = self._sublayer(x, self.norm2, self.ffn)
        return x, maps["self"], maps["cross"]
