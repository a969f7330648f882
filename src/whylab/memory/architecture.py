"""A model's architecture as the training-memory planner reads it from a ``config.json``
(BERT, GPT-2, Llama; transformers' defaults for missing keys), and its parameter tensors and
buffers, counted in pure Python (see :mod:`whylab.memory.planner`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whylab.errors import InputError

# transformers' config defaults per model_type (checked against the config classes in the tests)
DEFAULTS: dict[str, dict[str, Any]] = {
    "bert": {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "num_labels": 2,
    },
    "gpt2": {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "tie_word_embeddings": True,
    },
    "llama": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "head_dim": None,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
    },
}
FAMILIES = tuple(DEFAULTS)


@dataclass(frozen=True)
class Param:
    """One parameter tensor: name, shape as stored, whether it is a block Linear weight (LoRA/QLoRA target)."""

    name: str
    shape: tuple[int, ...]
    linear: bool = False
    layer: int = -1  # decoder/encoder layer index, -1 outside the blocks

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Arch:
    family: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    positions: int
    tied: bool
    attn_dropout: float
    hidden_dropout: float
    embd_dropout: float
    type_vocab: int = 0
    num_labels: int = 0
    attention_bias: bool = False
    mlp_bias: bool = False
    name: str = ""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def _get(cfg: Mapping[str, Any], family: str, key: str) -> Any:
    return cfg[key] if key in cfg else DEFAULTS[family][key]


def _int(cfg: Mapping[str, Any], family: str, key: str, where: str) -> int:
    value = _get(cfg, family, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def arch_from_config(cfg: Mapping[str, Any], name: str = "", where: str = "model config") -> Arch:
    """An :class:`Arch` from a ``config.json`` dict (transformers defaults for missing keys)."""
    family = str(cfg.get("model_type", ""))
    if family not in DEFAULTS:
        raise InputError(
            f"{where}: model_type {family!r} is not one of {', '.join(FAMILIES)} "
            "(the planner counts BERT, GPT-2 and Llama)"
        )
    if family == "bert":
        h, n = _int(cfg, family, "hidden_size", where), _int(cfg, family, "num_attention_heads", where)
        p_drop = float(_get(cfg, family, "hidden_dropout_prob"))
        return Arch(
            family,
            h,
            _int(cfg, family, "num_hidden_layers", where),
            n,
            n,
            h // n,
            _int(cfg, family, "intermediate_size", where),
            _int(cfg, family, "vocab_size", where),
            _int(cfg, family, "max_position_embeddings", where),
            False,
            float(_get(cfg, family, "attention_probs_dropout_prob")),
            p_drop,
            p_drop,
            type_vocab=_int(cfg, family, "type_vocab_size", where),
            num_labels=int(cfg.get("num_labels", len(cfg.get("id2label", {})) or 2)),
            attention_bias=True,
            mlp_bias=True,
            name=name,
        )
    if family == "gpt2":
        h, n = _int(cfg, family, "n_embd", where), _int(cfg, family, "n_head", where)
        inner = _get(cfg, family, "n_inner")
        return Arch(
            family,
            h,
            _int(cfg, family, "n_layer", where),
            n,
            n,
            h // n,
            int(inner) if inner is not None else 4 * h,
            _int(cfg, family, "vocab_size", where),
            _int(cfg, family, "n_positions", where),
            bool(_get(cfg, family, "tie_word_embeddings")),
            float(_get(cfg, family, "attn_pdrop")),
            float(_get(cfg, family, "resid_pdrop")),
            float(_get(cfg, family, "embd_pdrop")),
            attention_bias=True,
            mlp_bias=True,
            name=name,
        )
    h, n = _int(cfg, family, "hidden_size", where), _int(cfg, family, "num_attention_heads", where)
    kv = _get(cfg, family, "num_key_value_heads")
    hd = _get(cfg, family, "head_dim")
    kv_heads = int(kv) if kv is not None else n
    if n % kv_heads:
        raise InputError(
            f"{where}: num_attention_heads {n} is not a multiple of num_key_value_heads {kv_heads}"
        )
    return Arch(
        family,
        h,
        _int(cfg, family, "num_hidden_layers", where),
        n,
        kv_heads,
        int(hd) if hd is not None else h // n,
        _int(cfg, family, "intermediate_size", where),
        _int(cfg, family, "vocab_size", where),
        _int(cfg, family, "max_position_embeddings", where),
        bool(_get(cfg, family, "tie_word_embeddings")),
        float(_get(cfg, family, "attention_dropout")),
        0.0,
        0.0,
        attention_bias=bool(_get(cfg, family, "attention_bias")),
        mlp_bias=bool(_get(cfg, family, "mlp_bias")),
        name=name,
    )


def _linear(name: str, out: int, inp: int, bias: bool, layer: int, conv1d: bool = False) -> list[Param]:
    shape = (inp, out) if conv1d else (out, inp)  # GPT-2's Conv1D stores (in, out)
    params = [Param(f"{name}.weight", shape, True, layer)]
    if bias:
        params.append(Param(f"{name}.bias", (out,), False, layer))
    return params


def _norm(name: str, h: int, layer: int, bias: bool = True) -> list[Param]:
    return [Param(f"{name}.weight", (h,), False, layer)] + (
        [Param(f"{name}.bias", (h,), False, layer)] if bias else []
    )


def param_list(a: Arch) -> list[Param]:
    """Every parameter tensor of the model, as the transformers class stores it (tied weights once)."""
    h, f, v = a.hidden, a.intermediate, a.vocab
    out: list[Param] = []
    if a.family == "bert":
        out += [
            Param("embeddings.word", (v, h)),
            Param("embeddings.position", (a.positions, h)),
            Param("embeddings.token_type", (a.type_vocab, h)),
            *_norm("embeddings.LayerNorm", h, -1),
        ]
        for i in range(a.layers):
            for part in ("query", "key", "value", "attention.output"):
                out += _linear(f"layer{i}.{part}", h, h, True, i)
            out += _norm(f"layer{i}.attention.LayerNorm", h, i)
            out += _linear(f"layer{i}.intermediate", f, h, True, i)
            out += _linear(f"layer{i}.output", h, f, True, i)
            out += _norm(f"layer{i}.output.LayerNorm", h, i)
        out += [Param("pooler.weight", (h, h)), Param("pooler.bias", (h,))]
        out += [Param("classifier.weight", (a.num_labels, h)), Param("classifier.bias", (a.num_labels,))]
        return out
    if a.family == "gpt2":
        out += [Param("wte", (v, h)), Param("wpe", (a.positions, h))]
        for i in range(a.layers):
            out += _norm(f"h{i}.ln_1", h, i)
            out += _linear(f"h{i}.attn.c_attn", 3 * h, h, True, i, conv1d=True)
            out += _linear(f"h{i}.attn.c_proj", h, h, True, i, conv1d=True)
            out += _norm(f"h{i}.ln_2", h, i)
            out += _linear(f"h{i}.mlp.c_fc", f, h, True, i, conv1d=True)
            out += _linear(f"h{i}.mlp.c_proj", h, f, True, i, conv1d=True)
        out += _norm("ln_f", h, -1)
        if not a.tied:
            out.append(Param("lm_head", (v, h)))
        return out
    out.append(Param("embed_tokens", (v, h)))
    for i in range(a.layers):
        out += _norm(f"layers{i}.input_layernorm", h, i, bias=False)
        out += _linear(f"layers{i}.q_proj", a.q_dim, h, a.attention_bias, i)
        out += _linear(f"layers{i}.k_proj", a.kv_dim, h, a.attention_bias, i)
        out += _linear(f"layers{i}.v_proj", a.kv_dim, h, a.attention_bias, i)
        out += _linear(f"layers{i}.o_proj", h, a.q_dim, a.attention_bias, i)
        out += _norm(f"layers{i}.post_attention_layernorm", h, i, bias=False)
        out += _linear(f"layers{i}.gate_proj", f, h, a.mlp_bias, i)
        out += _linear(f"layers{i}.up_proj", f, h, a.mlp_bias, i)
        out += _linear(f"layers{i}.down_proj", h, f, a.mlp_bias, i)
    out += _norm("norm", h, -1, bias=False)
    if not a.tied:
        out.append(Param("lm_head", (v, h)))
    return out


def param_count(a: Arch) -> int:
    return sum(p.numel for p in param_list(a))


def buffer_bytes(a: Arch) -> int:
    """Registered buffers (transformers 4.57): BERT position/token-type ids, GPT-2 causal masks, Llama inv_freq."""
    if a.family == "bert":
        return 2 * a.positions * 8
    if a.family == "gpt2":
        return a.layers * (a.positions * a.positions + 4)  # bool (1, 1, P, P) + a 0-d FP32 masked_bias
    return 4 * (a.head_dim // 2)
