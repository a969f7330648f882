"""Build the language model from a config: a ``LlamaForCausalLM``, no hub weights.

Llama is chosen because every projection is an ``nn.Linear``: it exports to ONNX as
``MatMul``, which ONNX Runtime's 4-bit weight-only quantizer (MatMulNBits) accepts.
GPT-2's Conv1D exports as ``Gemm`` and would silently stay unquantized.
The input embedding and the output head are *not* tied: optimum de-duplicates a tied
head differently depending on whether accelerate is installed, and an untied head
keeps the exported graph (and its quantized size) the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import LlamaConfig, LlamaForCausalLM

from whylab.errors import InputError

# the model section's keys and their defaults (the schema lm.schema.yaml repeats them)
MODEL_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "num_layers": 4,
    "num_heads": 4,
    "num_kv_heads": None,  # None: as many as num_heads (plain multi-head attention)
    "intermediate_size": 384,  # 3 x 128: every INT4 block size divides it
    "max_position_embeddings": 256,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.02,
    "dropout": 0.0,
}


def model_config(
    model_cfg: Mapping[str, Any],
    vocab_size: int,
    *,
    pad_token_id: int | None,
    bos_token_id: int | None,
    eos_token_id: int | None,
) -> LlamaConfig:
    """The ``LlamaConfig`` for a model section (unknown keys are an error)."""
    unknown = set(model_cfg) - set(MODEL_DEFAULTS)
    if unknown:
        raise InputError(
            f"lm.model: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(MODEL_DEFAULTS)})"
        )
    cfg = {**MODEL_DEFAULTS, **{k: v for k, v in model_cfg.items() if v is not None}}
    heads = int(cfg["num_heads"])
    kv_heads = int(cfg["num_kv_heads"] or heads)
    hidden = int(cfg["hidden_size"])
    if hidden % heads:
        raise InputError(f"lm.model.hidden_size ({hidden}) must be divisible by num_heads ({heads})")
    if heads % kv_heads:
        raise InputError(f"lm.model.num_heads ({heads}) must be divisible by num_kv_heads ({kv_heads})")
    if vocab_size < 1:
        raise InputError(f"the tokenizer's vocabulary is empty (vocab_size={vocab_size})")
    return LlamaConfig(
        vocab_size=int(vocab_size),
        hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]),
        num_hidden_layers=int(cfg["num_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=int(cfg["max_position_embeddings"]),
        rope_theta=float(cfg["rope_theta"]),
        rms_norm_eps=float(cfg["rms_norm_eps"]),
        initializer_range=float(cfg["initializer_range"]),
        attention_dropout=float(cfg["dropout"]),
        hidden_act="silu",
        tie_word_embeddings=False,
        use_cache=True,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )


def build_model(
    model_cfg: Mapping[str, Any],
    vocab_size: int,
    *,
    pad_token_id: int | None,
    bos_token_id: int | None,
    eos_token_id: int | None,
) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` in float32.

    The weights come from torch's global RNG: seed it first (``whylab.runtime.set_seed``)
    for a reproducible model. SDPA attention is used for speed; it exports to ONNX too.
    """
    config = model_config(
        model_cfg, vocab_size, pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id
    )
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    return model.float()


def count_parameters(model: Any, *, non_embedding: bool = False) -> int:
    """Parameter count; ``non_embedding`` leaves out the input embedding table.

    The output head stays in: it is a real matmul per token, so it belongs in the
    6·N FLOPs-per-token estimate used for MFU (Kaplan et al. 2020 leave out only
    the embedding lookups, which cost no multiply-adds).
    """
    total = sum(p.numel() for p in model.parameters())
    if non_embedding:
        total -= model.get_input_embeddings().weight.numel()
    return int(total)
