"""The bench transformer's configuration: one switch for every ablation (see bench/model.py).

The kinds of scale, norm, norm position and activation a claim may pick, and the checks that
refuse a combination the model cannot build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

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
