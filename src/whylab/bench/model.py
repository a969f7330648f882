"""The bench transformer: a small, hand-written model with a switch for every ablation.

Claims C03–C11 ask *why* a transformer is built the way it is, so the experiments
need a model in which each design choice can be turned off or swapped: the query/key
and value projections, the attention scale, the kind and place of normalisation,
the feed-forward block, the causal mask and cross-attention. No library model has
those switches, so this file writes the model out in the spirit of nanoGPT's
``model.py``: one file, read from top to bottom.

Attention is written as the notes' four steps (``attention`` below: QKᵀ, scale,
softmax, ·V). When the switches are the standard ones and no attention map is
asked for, the same computation goes through PyTorch's fused
``scaled_dot_product_attention`` (the tests check both give the same numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ScaleKind = Literal["sqrt_dk", "sqrt_dmodel", "none"]
NormKind = Literal["layer", "batch", "masked_batch", "rms", "none"]
NormPosition = Literal["pre", "post"]
Activation = Literal["relu", "gelu", "swiglu"]


@dataclass
class BenchConfig:
    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    max_len: int = 256
    # attention switches
    qk_proj: bool = True  # False: Q = K = X (no W_q, W_k; heads are slices of X)
    v_proj: bool = True  # False: V = X (no W_v; heads are slices of X)
    scale: ScaleKind = "sqrt_dk"
    # normalisation
    norm: NormKind = "layer"
    norm_position: NormPosition = "pre"
    # feed-forward block
    ffn: bool = True
    ffn_mult: int = 4  # hidden width = ffn_mult * d_model (SwiGLU: 2/3 of that, rounded)
    activation: Activation = "gelu"
    dropout: float = 0.0
    # structure
    causal: bool = True  # True: decoder (causal mask); False: encoder (bidirectional)
    pad_id: int | None = None  # if set, keys at PAD positions are masked out of attention
    freeze_embedding: bool = False  # C03: keep the random token embedding fixed
    tie_embeddings: bool = False
    use_sdpa: bool = True  # fast path via F.scaled_dot_product_attention when allowed
    # additions beyond the shared API (defaults keep the standard model)
    o_proj: bool = True  # False: no output projection W_o after the heads are concatenated
    init_std: float = 0.02  # std of the normal init of every Linear and Embedding (GPT-2's 0.02)
    qk_init_std: float | None = None  # std for W_q, W_k only (None: init_std); C05 sets 1/sqrt(d_model)

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.scale not in ("sqrt_dk", "sqrt_dmodel", "none"):
            raise ValueError(f"scale={self.scale!r} is not one of sqrt_dk, sqrt_dmodel, none")
        if self.norm not in ("layer", "batch", "masked_batch", "rms", "none"):
            raise ValueError(f"norm={self.norm!r} is not one of layer, batch, masked_batch, rms, none")
        if self.norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position={self.norm_position!r} is not one of pre, post")
        if self.activation not in ("relu", "gelu", "swiglu"):
            raise ValueError(f"activation={self.activation!r} is not one of relu, gelu, swiglu")
        if self.freeze_embedding and self.tie_embeddings:
            raise ValueError("freeze_embedding with tie_embeddings would also freeze the output layer")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def scale_factor(self) -> float | None:
        """The number the scores are multiplied by: 1/√d_k (per head), 1/√d_model, or none."""
        if self.scale == "sqrt_dk":
            return 1.0 / math.sqrt(self.d_head)
        if self.scale == "sqrt_dmodel":
            return 1.0 / math.sqrt(self.d_model)
        return None


@dataclass
class BenchOutput:
    logits: Tensor  # (B, T, vocab)
    hidden: Tensor  # (B, T, d_model), after the final norm
    attentions: list[Tensor] | None  # per layer (B, H, T, T), only if return_attention
    cross_attentions: list[Tensor] | None = None  # per decoder layer (B, H, T, S)
    memory: Tensor | None = None  # encoder output, for EncoderDecoder


# --------------------------------------------------------------------------- attention


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


def _sdpa(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None) -> Tensor:
    """The same computation through PyTorch's fused kernel (standard 1/√d_k scaling)."""
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
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        source = x if context is None else context  # where keys and values come from
        q = self.q_proj(x) if self.q_proj is not None else x
        k = self.k_proj(source) if self.k_proj is not None else source
        v = self.v_proj(source) if self.v_proj is not None else source
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        weights: Tensor | None = None
        if self._can_use_sdpa(return_weights):
            out = _sdpa(q, k, v, mask=mask)
        else:
            out, weights = attention(q, k, v, mask=mask, scale=self.scale)
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.cfg.d_model)  # concatenate the heads
        if self.out_proj is not None:
            out = self.out_proj(out)
        return out, (weights if return_weights else None)


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
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns (x, self-attention weights, cross-attention weights); weights only if asked."""
        maps: dict[str, Tensor | None] = {"self": None, "cross": None}

        def self_attn(h: Tensor) -> Tensor:
            out, maps["self"] = self.attn(h, mask=mask, return_weights=return_attention)
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


# --------------------------------------------------------------------------- models


def _init_weights(model: nn.Module, cfg: BenchConfig) -> None:
    """GPT-2 style init: normal(0, init_std) for Linear and Embedding weights, zero biases;
    W_q and W_k may get their own std (C05 wants unit-variance queries and keys)."""
    qk_std = cfg.qk_init_std if cfg.qk_init_std is not None else cfg.init_std
    qk_modules: set[int] = set()
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            qk_modules.update(id(p) for p in (m.q_proj, m.k_proj) if p is not None)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, qk_std if id(m) in qk_modules else cfg.init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, cfg.init_std)


def _check_length(t: int, cfg: BenchConfig) -> None:
    if t > cfg.max_len:
        raise ValueError(f"sequence length {t} exceeds max_len={cfg.max_len}")


class BenchTransformer(nn.Module):
    """Decoder-only language model (``cfg.causal=True``) or bidirectional encoder (False).

    ids -> token embedding + learned positional embedding -> blocks -> final norm -> lm_head.
    """

    def __init__(self, cfg: BenchConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        # Post-LN already ends each block with a norm; Pre-LN needs one after the last block
        self.final_norm = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        _init_weights(self, cfg)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.token_embedding.weight
        if cfg.freeze_embedding:
            self.token_embedding.weight.requires_grad_(False)

    def key_padding(self, ids: Tensor, padding_mask: Tensor | None) -> Tensor | None:
        """(B, T) True = real token: the given mask, else ids != pad_id when pad_id is set."""
        if padding_mask is not None:
            return padding_mask.to(torch.bool)
        if self.cfg.pad_id is not None:
            return ids != self.cfg.pad_id
        return None

    def forward(
        self, ids: Tensor, *, padding_mask: Tensor | None = None, return_attention: bool = False
    ) -> BenchOutput:
        b, t = ids.shape
        _check_length(t, self.cfg)
        positions = torch.arange(t, device=ids.device)
        x = self.dropout(self.token_embedding(ids) + self.position_embedding(positions)[None])
        mask = make_mask(
            b,
            t,
            t,
            causal=self.cfg.causal,
            key_padding=self.key_padding(ids, padding_mask),
            device=ids.device,
        )
        maps: list[Tensor] = []
        key_padding = self.key_padding(ids, padding_mask)
        set_norm_padding(self, key_padding)
        for block in self.blocks:
            x, weights, _ = block(x, mask=mask, return_attention=return_attention)
            if weights is not None:
                maps.append(weights)
        hidden = self.final_norm(x)
        return BenchOutput(
            logits=self.lm_head(hidden), hidden=hidden, attentions=maps if return_attention else None
        )


class EncoderDecoder(nn.Module):
    """The original transformer's shape: a bidirectional encoder reads the source; a
    decoder with causal self-attention and cross-attention writes the target.

    In cross-attention the queries come from the decoder's own states; the keys and
    values come from the encoder output (``memory``), as in Vaswani et al. 2017, 3.2.3.
    """

    def __init__(self, cfg: BenchConfig, tgt_vocab_size: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        tgt_vocab = tgt_vocab_size if tgt_vocab_size is not None else cfg.vocab_size
        self.src_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab, cfg.d_model)
        self.src_position = nn.Embedding(cfg.max_len, cfg.d_model)
        self.tgt_position = nn.Embedding(cfg.max_len, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder_blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.decoder_blocks = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.n_layers))
        pre = cfg.norm_position == "pre"
        self.encoder_norm = make_norm(cfg) if pre else nn.Identity()
        self.decoder_norm = make_norm(cfg) if pre else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, tgt_vocab, bias=False)
        _init_weights(self, cfg)
        if cfg.tie_embeddings:
            if tgt_vocab != cfg.vocab_size:
                raise ValueError("tie_embeddings needs tgt_vocab_size == vocab_size")
            self.lm_head.weight = self.tgt_embedding.weight
        if cfg.freeze_embedding:
            self.src_embedding.weight.requires_grad_(False)
            self.tgt_embedding.weight.requires_grad_(False)

    def _src_padding(self, src_ids: Tensor, src_padding_mask: Tensor | None) -> Tensor | None:
        if src_padding_mask is not None:
            return src_padding_mask.to(torch.bool)
        if self.cfg.pad_id is not None:
            return src_ids != self.cfg.pad_id
        return None

    def encode(
        self, src_ids: Tensor, *, src_padding_mask: Tensor | None = None, return_attention: bool = False
    ) -> Tensor:
        """Memory (B, S, d_model): the source read with bidirectional self-attention."""
        b, s = src_ids.shape
        _check_length(s, self.cfg)
        positions = torch.arange(s, device=src_ids.device)
        x = self.dropout(self.src_embedding(src_ids) + self.src_position(positions)[None])
        mask = make_mask(
            b,
            s,
            s,
            causal=False,
            key_padding=self._src_padding(src_ids, src_padding_mask),
            device=src_ids.device,
        )
        self.last_encoder_attentions: list[Tensor] | None = [] if return_attention else None
        for block in self.encoder_blocks:
            x, weights, _ = block(x, mask=mask, return_attention=return_attention)
            if self.last_encoder_attentions is not None and weights is not None:
                self.last_encoder_attentions.append(weights)
        return self.encoder_norm(x)

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        *,
        src_padding_mask: Tensor | None = None,
        return_attention: bool = False,
        tgt_padding_mask: Tensor | None = None,
    ) -> BenchOutput:
        """Target logits given the memory; ``src_padding_mask`` (B, S) hides PAD in the memory."""
        b, t = tgt_ids.shape
        _check_length(t, self.cfg)
        positions = torch.arange(t, device=tgt_ids.device)
        x = self.dropout(self.tgt_embedding(tgt_ids) + self.tgt_position(positions)[None])
        self_mask = make_mask(b, t, t, causal=True, key_padding=tgt_padding_mask, device=tgt_ids.device)
        memory_mask = make_mask(
            b, t, memory.shape[1], causal=False, key_padding=src_padding_mask, device=tgt_ids.device
        )
        self_maps: list[Tensor] = []
        cross_maps: list[Tensor] = []
        for block in self.decoder_blocks:
            x, w_self, w_cross = block(
                x, mask=self_mask, memory=memory, memory_mask=memory_mask, return_attention=return_attention
            )
            if w_self is not None:
                self_maps.append(w_self)
            if w_cross is not None:
                cross_maps.append(w_cross)
        hidden = self.decoder_norm(x)
        return BenchOutput(
            logits=self.lm_head(hidden),
            hidden=hidden,
            attentions=self_maps if return_attention else None,
            cross_attentions=cross_maps if return_attention else None,
            memory=memory,
        )

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        *,
        src_padding_mask: Tensor | None = None,
        return_attention: bool = False,
    ) -> BenchOutput:
        src_padding = self._src_padding(src_ids, src_padding_mask)
        memory = self.encode(src_ids, src_padding_mask=src_padding)
        return self.decode(tgt_ids, memory, src_padding_mask=src_padding, return_attention=return_attention)


# --------------------------------------------------------------------------- parameter counts


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared/tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


_NORM_TYPES = (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm1d, TokenBatchNorm, MaskedTokenBatchNorm)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameters per part: embedding, attention, ffn, norm, lm_head, other (tied counted once)."""
    out = {"embedding": 0, "attention": 0, "ffn": 0, "norm": 0, "lm_head": 0, "other": 0}
    seen: set[int] = set()
    owner: dict[int, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            kind = "embedding"
        elif isinstance(module, MultiHeadAttention):
            kind = "attention"
        elif isinstance(module, FeedForward):
            kind = "ffn"
        elif isinstance(module, _NORM_TYPES):
            kind = "norm"
        elif name == "lm_head":
            kind = "lm_head"
        else:
            continue
        for p in module.parameters():
            owner.setdefault(id(p), kind)  # outermost classified module wins
    for p in model.parameters():  # deduplicated by PyTorch
        if id(p) in seen:
            continue
        seen.add(id(p))
        out[owner.get(id(p), "other")] += p.numel()
    return out
