"""The bench transformer: a small, hand-written model with a switch for every ablation.

Claims C03–C11 ask *why* a transformer is built the way it is, so the experiments
need a model in which each design choice can be turned off or swapped: the query/key
and value projections, the attention scale, the kind and place of normalisation,
the feed-forward block, the causal mask and cross-attention. No library model has
those switches, so the model is written out in the spirit of nanoGPT's ``model.py``,
in four files read in order: ``model_config`` (the switches), ``attention`` (the notes'
four steps and multi-head attention), ``layers`` (norms, feed-forward, the block) and
this one (the decoder/encoder, the encoder–decoder and the parameter counts). The names
of the other three are importable from here as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from whylab.bench.attention import MultiHeadAttention as MultiHeadAttention
from whylab.bench.attention import attention as attention
from whylab.bench.attention import make_mask as make_mask
from whylab.bench.layers import Block as Block
from whylab.bench.layers import FeedForward as FeedForward
from whylab.bench.layers import MaskedTokenBatchNorm as MaskedTokenBatchNorm
from whylab.bench.layers import TokenBatchNorm as TokenBatchNorm
from whylab.bench.layers import is_batch_norm as is_batch_norm
from whylab.bench.layers import make_norm as make_norm
from whylab.bench.layers import set_norm_padding as set_norm_padding
from whylab.bench.model_config import Activation as Activation
from whylab.bench.model_config import BenchConfig as BenchConfig
from whylab.bench.model_config import NormKind as NormKind
from whylab.bench.model_config import NormPosition as NormPosition
from whylab.bench.model_config import ScaleKind as ScaleKind


@dataclass
class BenchOutput:
    logits: Tensor  # (B, T, vocab)
    hidden: Tensor  # (B, T, d_model), after the final norm
    attentions: list[Tensor] | None  # per layer (B, H, T, T), only if return_attention
    cross_attentions: list[Tensor] | None = None  # per decoder layer (B, H, T, S)
    memory: Tensor | None = None  # encoder output, for EncoderDecoder


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
        if isinstance(m, MultiHeadAttention) and not m.cfg.qk_proj:
            for _ in range(2):  # the draws of the absent W_q, W_k, dropped: the pairing stays exact
                torch.empty(m.cfg.d_model, m.cfg.d_model).normal_(0.0, qk_std)
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
        key_padding = self.key_padding(ids, padding_mask)
        mask = make_mask(b, t, t, causal=self.cfg.causal, key_padding=key_padding, device=ids.device)
        plain_causal = self.cfg.causal and key_padding is None
        maps: list[Tensor] = []
        set_norm_padding(self, key_padding)
        for block in self.blocks:
            x, weights, _ = block(x, mask=mask, causal=plain_causal, return_attention=return_attention)
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
