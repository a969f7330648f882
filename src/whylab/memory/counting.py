"""Exact parameter counts of real architectures, without any weights.

The notes quote "BERT-base 110M" and "GPT-3 175B". Here the counts come from
the architectures themselves: an analytic formula per family (so a reader can
see where every parameter sits), checked against the model class built on
PyTorch's ``meta`` device (shapes only, zero bytes allocated), so a 175B model
is counted on a laptop in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whylab.errors import InputError

FAMILIES = ("bert", "gpt2", "llama")


@dataclass(frozen=True)
class ModelSpec:
    """A named architecture: family plus the config keys that differ from the library defaults."""

    name: str
    family: str
    overrides: dict[str, Any]
    quoted_params: float | None = None  # the count the notes (or the paper) quote, if any
    source: str = ""


def spec_from_mapping(item: Mapping[str, Any]) -> ModelSpec:
    family = str(item.get("family", ""))
    if family not in FAMILIES:
        raise InputError(f"memory.C17.models: family {family!r} is not one of {', '.join(FAMILIES)}")
    return ModelSpec(
        name=str(item["name"]),
        family=family,
        overrides=dict(item.get("config", {})),
        quoted_params=item.get("quoted_params"),
        source=str(item.get("source", "")),
    )


def make_config(spec: ModelSpec) -> Any:
    """The transformers config object of ``spec`` (library defaults + overrides)."""
    from transformers import BertConfig, GPT2Config, LlamaConfig

    cls = {"bert": BertConfig, "gpt2": GPT2Config, "llama": LlamaConfig}[spec.family]
    try:
        return cls(**spec.overrides)
    except TypeError as exc:
        raise InputError(f"memory.C17.models[{spec.name}].config: {exc}") from None


def bert_params(cfg: Any, pooler: bool = True) -> int:
    """BertModel: embeddings (word, position, token type, LayerNorm), L encoder layers, pooler."""
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    emb = v * h + cfg.max_position_embeddings * h + cfg.type_vocab_size * h + 2 * h
    layer = (
        4 * (h * h + h)  # query, key, value, attention output dense (weight + bias)
        + 2 * h  # attention LayerNorm
        + (h * i + i)
        + (i * h + h)  # intermediate and output dense
        + 2 * h  # output LayerNorm
    )
    return emb + cfg.num_hidden_layers * layer + ((h * h + h) if pooler else 0)


def gpt2_params(cfg: Any) -> int:
    """GPT2LMHeadModel: token and position embeddings, L blocks, final LayerNorm; head tied to wte."""
    h, v = cfg.n_embd, cfg.vocab_size
    inner = cfg.n_inner if cfg.n_inner is not None else 4 * h
    layer = (
        2 * h  # ln_1
        + (h * 3 * h + 3 * h)  # c_attn (q, k, v together)
        + (h * h + h)  # attention c_proj
        + 2 * h  # ln_2
        + (h * inner + inner)
        + (inner * h + h)  # mlp c_fc, c_proj
    )
    head = 0 if cfg.tie_word_embeddings else v * h
    return v * h + cfg.n_positions * h + cfg.n_layer * layer + 2 * h + head


def llama_params(cfg: Any) -> int:
    """LlamaForCausalLM: embedding, L decoder layers (attention + SwiGLU MLP + 2 RMSNorms), norm, head."""
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    d = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * d, cfg.num_key_value_heads * d
    attn_bias = bool(getattr(cfg, "attention_bias", False))
    mlp_bias = bool(getattr(cfg, "mlp_bias", False))
    attn = h * q + 2 * h * kv + q * h + ((q + 2 * kv + h) if attn_bias else 0)
    mlp = 3 * h * f + ((2 * f + h) if mlp_bias else 0)
    layer = attn + mlp + 2 * h
    head = 0 if cfg.tie_word_embeddings else v * h
    return v * h + cfg.num_hidden_layers * layer + h + head


def analytic_params(spec: ModelSpec) -> int:
    cfg = make_config(spec)
    return {"bert": bert_params, "gpt2": gpt2_params, "llama": llama_params}[spec.family](cfg)


def meta_counts(spec: ModelSpec) -> tuple[int, int]:
    """(all parameters, quantizable weights) by instantiating the real model class on the meta
    device (no storage is allocated). Quantizable: the weights of the Linear layers (GPT-2's
    Conv1D) outside the output head, what weight-only INT8/INT4 quantizers (bitsandbytes, GPTQ,
    AWQ, torchao) replace; the embeddings, norms, biases and the head stay in 16-bit floats."""
    import torch
    from transformers import BertModel, GPT2LMHeadModel, LlamaForCausalLM
    from transformers.pytorch_utils import Conv1D

    cls = {"bert": BertModel, "gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}[spec.family]
    with torch.device("meta"):
        model = cls(make_config(spec))
    quantizable = {
        id(m.weight)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear | Conv1D) and name.split(".")[-1] != "lm_head"
    }
    # parameters() yields a tied weight once, as it is stored once (GPT-2's head is its embedding)
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if id(p) in quantizable)


def meta_params(spec: ModelSpec) -> int:
    """Count by instantiating the real model class on the meta device (no storage is allocated)."""
    return meta_counts(spec)[0]
