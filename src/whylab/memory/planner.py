"""Training-memory planner: "will fine-tuning this model fit on my GPU, and what does each trick buy?"

``python -m whylab plan-memory MODEL [--batch B --seq S --dtype bf16 --optimizer adamw ...] [--json]``

MODEL is a preset name (:mod:`whylab.memory.presets`) or the path of a model's
``config.json``. Three families are understood: BERT (encoder, fine-tuned as
``BertForSequenceClassification``), GPT-2 (``GPT2LMHeadModel``) and Llama
(``LlamaForCausalLM``, grouped-query attention included). Everything is counted
from the config in pure Python (no torch import), so an answer takes well under
a second; the tests check every count against the model classes built on torch's
meta device and every activation count against the tensors autograd really saves
in small models of each family.

Per component, in bytes:

- weights: parameters × bytes of the weight dtype (``--qlora``: NF4 with double
  quantization, 4.127 bits, on the blocks' Linear layers; embeddings and head stay 16-bit);
- master copy: the FP32 copy of the trainable weights that mixed-precision training keeps
  (``--dtype bf16|fp16``; ZeRO's 16 bytes/param = 2 + 2 + 4 master + 8 Adam);
- gradients: trainable parameters × gradient bytes (16-bit in mixed precision);
- optimizer state: AdamW two FP32 moments (8 B/param); adamw8bit (bitsandbytes) two
  blockwise 8-bit moments (tensors below 4096 values stay 32-bit); SGD none; AdaFactor
  (torch.optim.Adafactor) a factored second moment: a row and a column vector per matrix;
- activations: the tensors autograd saves for backward, counted operation by operation
  for each family (``eager``: the b·a·s² attention probabilities are stored;
  ``sdpa``/``flash``: a fused kernel keeps only a log-sum-exp per head and token);
  dropout masks at ``mask_bytes`` (1: CUDA's bool masks);
- logits: the FP32 log-softmax the loss keeps, plus the two FP32 b·s·V gradients that
  exist together at the start of backward;
- buffers: the model's registered buffers (position ids, causal masks, RoPE frequencies).

The peak is the larger of two moments (the phase model of
:func:`whylab.memory.calculator.training_estimate`, validated on measured steps): the
start of backward (weights, master, optimizer state, activations, logits) and the
optimizer step (weights, master, gradients, optimizer state). The sum of all terms
is shown too: it is what most back-of-the-envelope formulas add up. Against a measured
AdamW step (MemTracker, CPU) the peak is within 0.1% for GPT-2 and Llama; BERT with a
classification head peaks inside a layer's backward, on transient gradients the phase
model does not count, and is under-estimated by about 5% (tests/test_memory_planner.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from whylab.errors import InputError
from whylab.memory.presets import PRESETS

GiB = 2**30
GB = 10**9
GPU_SIZES_GB = (24, 40, 80)

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
OPTIMIZERS = ("adamw", "adamw8bit", "sgd", "adafactor")
DTYPES = ("fp32", "bf16", "fp16")
ATTENTION = ("eager", "sdpa")
OFFLOAD = ("none", "optimizer", "params")
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + 8-bit absmax per 64 + FP32 absmax per 256 blocks
BNB8_BLOCK = 256  # bitsandbytes' blockwise 8-bit optimizer: one FP32 absmax per 256 values per state
BNB8_MIN_SIZE = 4096  # smaller tensors keep 32-bit state (min_8bit_size)


# --------------------------------------------------------------------------- architecture


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


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class Kernels:
    """What the kernels keep that differs between devices.

    ``mask_bytes``: bytes of a dropout-mask value (CUDA: bool, 1; CPU: the input's dtype);
    ``stat_bytes``: bytes of LayerNorm's saved mean and 1/std (CUDA: FP32 for 16-bit inputs;
    CPU: the input's dtype); ``sdpa_mask``: the sdpa kernel receives an explicit (b, 1, s, s)
    causal mask that each layer saves (transformers 4.57 on CPU; on CUDA it passes
    ``is_causal`` and no mask when nothing is padded).
    """

    mask_bytes: int = 1
    stat_bytes: int = 4
    sdpa_mask: bool = False

    @classmethod
    def cpu(cls, act: int) -> Kernels:
        return cls(act, act, True)


CUDA = Kernels()


def layer_activation_bytes(
    a: Arch,
    batch: int,
    seq: int,
    act: int,
    attention: str = "eager",
    kernels: Kernels = CUDA,
    train: bool = True,
) -> int:
    """Bytes one layer saves for backward, counted per operation (checked against autograd in the tests).

    ``act``: bytes of an activation value. Dropout with p = 0 (or ``train=False``) saves nothing.
    """
    b, s, h, f, n = batch, seq, a.hidden, a.intermediate, a.heads
    attn_drop = train and a.attn_dropout > 0
    hid_drop = train and a.hidden_dropout > 0
    m, st = kernels.mask_bytes, kernels.stat_bytes
    if attention == "eager":
        # probabilities (and, with attention dropout, its mask and its output), b·n·s² values
        probs = (4 + (act if act != 4 else 0)) if a.family == "llama" else act  # Llama: softmax in FP32
        if attn_drop:
            probs += m + act
        scores = b * n * s * s * probs
    elif attention == "sdpa":
        scores = b * n * s * 4  # log-sum-exp per head and token (FP32); dropout is regenerated from a seed
        if kernels.sdpa_mask and a.family == "llama":
            scores += b * s * s * act
    else:
        raise InputError(f"attention implementation {attention!r} is not one of {', '.join(ATTENTION)}")
    if a.family == "llama":
        # two RMSNorms (input upcast to FP32, normed value, output, 1/rms); q after RoPE, k and v with
        # the KV heads repeated to every head, attention output; SwiGLU: gate, silu(gate), up, product
        norms = 2 * (4 * h + 2 * act * h + 4)
        return b * s * (norms + 4 * act * a.q_dim + 4 * act * f) + scores
    if a.family == "gpt2":
        ln = 2 * (act * h + 2 * st)  # ln_1, ln_2: input, mean and rstd
        # c_attn input; q and v copied for the batched matmul, k copied too when batch > 1 (for batch 1
        # the k view keeps the whole fused qkv output, 3h, alive; sdpa keeps q, k, v views of it and
        # copies of two); the attention output; c_proj input; ln_2 output into c_fc
        qkv = 3 * h if (b == 1 or attention == "sdpa") else h
        attn = act * (h + h + qkv + h + h + h)
        mlp = 4 * act * f + act * f  # gelu_new's four saved tensors, c_proj input
        masks = 2 * m * h if hid_drop else 0
        const = act if attention == "eager" else 0  # the 0-d scale tensor
        return b * s * (ln + attn + mlp + masks) + scores + const
    # bert: the layer input (q, k, v share it), copies of q, k, v for the matmuls (sdpa: the kernel's
    # inputs and output), the context before attention.output, LayerNorm 1 input, intermediate input,
    # LayerNorm 2 input; GELU input and output-dense input (f wide)
    per_token = act * 8 * h + 2 * act * f + 2 * 2 * st
    masks = 2 * m * h if hid_drop else 0
    return b * s * (per_token + masks) + scores


def head_activation_bytes(
    a: Arch, batch: int, seq: int, act: int, kernels: Kernels = CUDA, train: bool = True
) -> int:
    """Saved bytes outside the layers (embeddings, final norm, head input), logits' log-softmax excluded."""
    b, s, h = batch, seq, a.hidden
    emb_drop = train and a.embd_dropout > 0
    m, st = kernels.mask_bytes, kernels.stat_bytes
    if a.family == "llama":
        rope = 2 * s * a.head_dim * act  # cos and sin (position ids have batch 1)
        final_norm = b * s * (4 * h + 2 * act * h + 4)
        targets = 8 * (b * s + (1 if b == 1 else 0)) + 4
        return 8 * b * s + rope + final_norm + targets
    if a.family == "gpt2":
        ids = 8 * b * s + 8 * s  # input ids, position ids
        drop = b * s * h * m if emb_drop else 0
        ln_f = b * s * (act * h + 2 * st)
        lm_in = b * s * act * h
        targets = 8 * (b * s + (1 if b == 1 else 0)) + 4
        return ids + drop + ln_f + lm_in + targets
    # bert (sequence classification): ids, embedding LayerNorm and its dropout mask; the pooler's input is
    # a view of the last hidden state (the whole b·s·h storage stays alive), its tanh output, the
    # classifier's dropout; the loss keeps a (b, labels) log-softmax and the targets
    ids = 8 * b * s
    emb_ln = b * s * (act * h + 2 * st)
    drop = b * s * h * m if emb_drop else 0
    pooler = b * s * h * act + b * h * act + (b * h * (m + act) if emb_drop else 0)
    loss = b * a.num_labels * act + 8 * b + act
    return ids + emb_ln + drop + pooler + loss


def logits_bytes(a: Arch, batch: int, seq: int) -> tuple[int, int]:
    """(saved FP32 log-softmax, FP32 gradients alive at the start of backward) of the LM head; BERT's is tiny."""
    if a.family == "bert":
        return 0, 0
    n = batch * seq * a.vocab
    return 4 * n, 2 * 4 * n


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Setup:
    batch: int = 1
    seq: int = 512
    dtype: str = "bf16"  # fp32: everything FP32; bf16/fp16: mixed precision with an FP32 master copy
    optimizer: str = "adamw"
    checkpointing: bool = False
    lora: int = 0
    qlora: bool = False
    offload: str = "none"
    attention: str = "sdpa"
    master: bool = True  # mixed precision keeps an FP32 master copy (False: pure 16-bit training)
    kernels: Kernels = CUDA

    def check(self) -> None:
        if self.batch < 1 or self.seq < 1:
            raise InputError(f"plan-memory: --batch and --seq must be positive, got {self.batch}, {self.seq}")
        for key, value, allowed in (
            ("dtype", self.dtype, DTYPES),
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("offload", self.offload, OFFLOAD),
            ("attention", self.attention, ATTENTION),
        ):
            if value not in allowed:
                raise InputError(f"plan-memory: --{key} {value!r} is not one of {', '.join(allowed)}")
        if self.lora < 0:
            raise InputError(f"plan-memory: --lora must be a rank ≥ 1, got {self.lora}")
        if self.qlora and not self.lora:
            raise InputError("plan-memory: --qlora trains LoRA adapters: give their rank with --lora R")


@dataclass
class Plan:
    model: str
    family: str
    params: int
    trainable_params: int
    setup: dict[str, Any]
    components: dict[str, int]  # on the accelerator
    host: dict[str, int]  # in CPU memory (offloading)
    peak: int
    sum_of_terms: int
    fits: dict[str, bool]
    accelerate: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components_gib"] = {k: v / GiB for k, v in self.components.items()}
        d["peak_gib"] = self.peak / GiB
        return d


def _optimizer_bytes(params: Sequence[Param], optimizer: str) -> int:
    total = 0
    for p in params:
        n = p.numel
        if optimizer == "adamw":
            total += 8 * n + 4  # two FP32 moments and a 0-d FP32 step per tensor
        elif optimizer == "adamw8bit":
            if n < BNB8_MIN_SIZE:
                total += 8 * n
            else:
                total += 2 * (n + 4 * math.ceil(n / BNB8_BLOCK))
        elif optimizer == "adafactor":
            if len(p.shape) >= 2:
                total += 4 * (math.prod(p.shape[:-1]) + math.prod(p.shape[:-2]) * p.shape[-1])
            else:
                total += 4 * n
            total += 4
    return total


def lora_params(a: Arch, rank: int) -> list[Param]:
    """LoRA adapters (A: r × in, B: out × r) on every Linear weight of the blocks (QLoRA's choice)."""
    out = []
    for p in param_list(a):
        if p.linear:
            rows, cols = (p.shape[1], p.shape[0]) if a.family == "gpt2" else p.shape
            out.append(Param(p.name + ".lora_A", (rank, cols), False, p.layer))
            out.append(Param(p.name + ".lora_B", (rows, rank), False, p.layer))
    return out


def accelerate_estimate(a: Arch, dtype: str) -> dict[str, Any]:
    """What ``accelerate estimate-memory`` prints for this model (its rule, reproduced; the tests run its code).

    accelerate sizes the model from its parameters and buffers in FP32 ("Total Size" for
    float32; halved for float16), and its "Training using Adam" is the largest of its
    model / gradients / optimizer / step entries: 4× the FP32 size in float32, 2× in
    mixed precision. It counts no activations.
    """
    buffers: float = buffer_bytes(a)
    if a.family == "gpt2":  # accelerate's dtype_byte_size counts a bool as 1/8 byte
        buffers = a.layers * (a.positions * a.positions / 8 + 4)
    fp32 = 4 * param_count(a) + buffers
    total: float
    training: float
    if dtype == "fp32":
        total, training = fp32, 4 * fp32
    else:
        total, training = fp32 / 2, 2 * fp32
    return {
        "dtype": {"fp32": "float32", "bf16": "float16", "fp16": "float16"}[dtype],
        "total_size": total,
        "training_using_adam": training,
        "rule": "accelerate.commands.estimate.estimate_training_usage on calculate_maximum_sizes",
    }


def plan(cfg: Mapping[str, Any], setup: Setup, name: str = "", overhead_bytes: int = 0) -> Plan:
    """The memory plan of one training step of the model ``cfg`` under ``setup``."""
    setup.check()
    a = arch_from_config(cfg, name)
    if a.family in ("bert", "gpt2") and setup.seq > a.positions:
        raise InputError(
            f"plan-memory: --seq {setup.seq} is longer than {name or a.family}'s {a.positions} learned positions"
        )
    params = param_list(a)
    n = sum(p.numel for p in params)
    act = 4 if setup.dtype == "fp32" else 2
    mixed = setup.dtype != "fp32" and setup.master
    notes: list[str] = []
    if setup.lora:
        trainable = lora_params(a, setup.lora)
        frozen_linear = sum(p.numel for p in params if p.linear)
        other = n - frozen_linear
        w_bytes = 4 if setup.dtype == "fp32" else 2
        base = (NF4_BYTES if setup.qlora else w_bytes) * frozen_linear + w_bytes * other
        adapters = sum(p.numel for p in trainable)
        weights = int(base) + 4 * adapters  # adapters are kept in FP32 (peft's default)
        master = 0
        grads = 4 * adapters
        notes.append(
            f"LoRA r={setup.lora} on every block Linear: {adapters:,} trainable parameters (FP32), "
            f"base weights frozen{' in NF4 (QLoRA)' if setup.qlora else ''}"
        )
    else:
        trainable = params
        adapters = n
        weights = n * act
        master = 4 * n if mixed else 0
        grads = n * act
    opt = _optimizer_bytes(trainable, setup.optimizer)
    layer = layer_activation_bytes(a, setup.batch, setup.seq, act, setup.attention, setup.kernels)
    head = head_activation_bytes(a, setup.batch, setup.seq, act, setup.kernels)
    if setup.checkpointing:
        # one layer input kept per layer, one layer recomputed at a time during backward
        acts = a.layers * setup.batch * setup.seq * a.hidden * act + layer + head
    else:
        acts = a.layers * layer + head
    if setup.lora:
        acts += sum(
            setup.batch * setup.seq * p.shape[0] * act for p in trainable if p.name.endswith("lora_A")
        )
    saved_logits, loss_grads = logits_bytes(a, setup.batch, setup.seq)
    buffers = buffer_bytes(a)
    host: dict[str, int] = {}
    if setup.offload == "optimizer":
        host = {"master copy": master, "optimizer state": opt, "gradients (FP32 on host)": 4 * adapters}
        master, opt = 0, 0
        grads = 0  # streamed to the host during backward (ZeRO-Offload); buckets are small
        notes.append(
            "ZeRO-Offload: gradients stream to CPU memory during backward; the update runs on the CPU"
        )
    elif setup.offload == "params":
        per_layer = max(
            (sum(p.numel for p in params if p.layer == i) for i in range(a.layers)), default=0
        ) * (act if not setup.lora else 2)
        host = {"weights": weights, "master copy": master, "optimizer state": opt, "gradients": grads}
        weights = 2 * per_layer  # the layer in use and the next one, prefetched
        master, opt, grads = 0, 0, 0
        notes.append("parameter offload: weights live in CPU memory, two layers at a time on the accelerator")
    components = {
        "weights": weights,
        "master copy": master,
        "gradients": grads,
        "optimizer state": opt,
        "activations": acts,
        "logits": saved_logits + loss_grads,
        "buffers": buffers,
    }
    if overhead_bytes:
        components["CUDA context + allocator (allowance)"] = overhead_bytes
    backward_start = weights + master + opt + acts + saved_logits + loss_grads + buffers
    step = weights + master + grads + opt + buffers
    peak = max(backward_start, step) + overhead_bytes
    total = sum(components.values())
    return Plan(
        model=name or str(cfg.get("_name_or_path", a.family)),
        family=a.family,
        params=n,
        trainable_params=adapters,
        setup=asdict(setup),
        components=components,
        host=host,
        peak=peak,
        sum_of_terms=total,
        fits={f"{g} GB": peak <= g * GB for g in GPU_SIZES_GB},
        accelerate=accelerate_estimate(a, setup.dtype),
        notes=notes,
    )


# --------------------------------------------------------------------------- command line


def load_model_config(model: str) -> tuple[str, dict[str, Any]]:
    """A preset name or a ``config.json`` path (or a folder holding one)."""
    if model in PRESETS:
        return model, dict(PRESETS[model])
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(
            f"plan-memory: MODEL {model!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json file"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"plan-memory: {path} is not a JSON config: {exc}") from None
    if not isinstance(cfg, dict):
        raise InputError(f"plan-memory: {path} does not hold a JSON object")
    return path.parent.name or path.stem, cfg


def render(p: Plan) -> str:
    """The plan as a plain-text table (GiB)."""
    s = p.setup
    lines = [
        f"{p.model} ({p.family}): {p.params:,} parameters, {p.trainable_params:,} trainable",
        f"batch {s['batch']} × seq {s['seq']}, {s['dtype']}{' mixed precision' if s['dtype'] != 'fp32' and s['master'] else ''}, "
        f"{s['optimizer']}, attention {s['attention']}, checkpointing {'on' if s['checkpointing'] else 'off'}, "
        f"offload {s['offload']}",
        "",
        f"{'component':<38}{'GiB':>10}",
    ]
    for k, v in p.components.items():
        lines.append(f"{k:<38}{v / GiB:>10.2f}")
    lines.append(f"{'sum of all terms':<38}{p.sum_of_terms / GiB:>10.2f}")
    lines.append(f"{'estimated peak (phase model)':<38}{p.peak / GiB:>10.2f}")
    for k, v in p.host.items():
        lines.append(f"{'CPU memory: ' + k:<38}{v / GiB:>10.2f}")
    lines.append("")
    lines.append("fits: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in p.fits.items()))
    acc = p.accelerate
    lines.append(
        f"accelerate estimate-memory ({acc['dtype']}): total size {acc['total_size'] / GiB:.2f} GiB, "
        f"'training using Adam' {acc['training_using_adam'] / GiB:.2f} GiB (weights, gradients and Adam only; "
        "no activations)"
    )
    lines.extend(f"note: {n}" for n in p.notes)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whylab plan-memory", description="Training memory of a model, per component, in GiB."
    )
    parser.add_argument("model", help=f"a preset ({', '.join(PRESETS)}) or a config.json path")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument(
        "--dtype", choices=DTYPES, default="bf16", help="bf16/fp16: mixed precision (FP32 master)"
    )
    parser.add_argument("--pure", action="store_true", help="16-bit training without an FP32 master copy")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing per layer")
    parser.add_argument(
        "--lora", type=int, default=0, metavar="R", help="LoRA rank (adapters on every block Linear)"
    )
    parser.add_argument("--qlora", action="store_true", help="base weights in NF4 (needs --lora)")
    parser.add_argument("--offload", choices=OFFLOAD, default="none")
    parser.add_argument(
        "--attention", choices=ATTENTION, default="sdpa", help="eager stores the s² probabilities"
    )
    parser.add_argument(
        "--overhead-gib", type=float, default=0.0, help="add a CUDA context/allocator allowance"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--output", type=Path, default=None, metavar="PATH", help="also write the JSON to PATH"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        name, cfg = load_model_config(args.model)
        result = plan(
            cfg,
            Setup(
                batch=args.batch,
                seq=args.seq,
                dtype=args.dtype,
                optimizer=args.optimizer,
                checkpointing=args.checkpointing,
                lora=args.lora,
                qlora=args.qlora,
                offload=args.offload,
                attention=args.attention,
                master=not args.pure,
            ),
            name,
            int(args.overhead_gib * GiB),
        )
    except InputError as exc:
        print(f"whylab: {exc}", file=sys.stderr)
        return 2
    data = json.dumps(result.to_dict(), indent=2)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(data + "\n", encoding="utf-8")
    print(data if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
