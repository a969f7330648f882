"""Memory arithmetic: the notes' formula, and an exact accounting model to hold it against.

The notes (GPU 메모리 계산방식) say::

    기본_메모리 = 파라미터_수 * 데이터타입_크기                # bytes per dtype: FP32 4, FP16/BF16 2, INT8 1, INT4 0.5
    필요_메모리 = 기본_메모리 * (옵티마이저_계수 + 그래디언트_계수 + 활성화_계수)
    # Adam 8 B/param, AdaFactor 2-4, SGD 0; gradients FP32 4 / FP16 2; activations ~20-30% of the model

Read literally, the training formula multiplies bytes by bytes-per-parameter
(``notes_training_bytes(..., reading="literal")``). The reading that keeps the
units straight adds per-parameter bytes (``reading="additive"``). The exact model
here counts each term from the parameter shapes and the architecture:

- weights and gradients: parameters × bytes of their dtype;
- optimizer state per optimizer, as torch implements it: Adam/AdamW two FP32
  moments (8 B/param) plus a 4-byte ``step`` tensor per parameter tensor;
  SGD nothing; SGD with momentum one buffer (4 B/param); AdaFactor (Shazeer &
  Stern 2018, torch.optim.Adafactor) a factored second moment: a row and a
  column vector per matrix, a full vector per 1-D parameter, no first moment;
  mixed precision adds an FP32 master copy (4 B/param; ZeRO's 16 B/param total);
- activations: the tensors autograd saves in a Llama decoder layer with eager
  attention, counted operation by operation (the method of Korthikanti et al.
  2022, "Reducing Activation Recomputation in Large Transformer Models", whose
  GPT result is ``s·b·h·(34 + 5·a·s/h)`` bytes per layer at 16 bits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from whylab.errors import InputError

DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
MB, MiB, GB, GiB = 10**6, 2**20, 10**9, 2**30

# The notes' factors, in bytes per parameter as written there.
NOTES_OPTIMIZER_BYTES: dict[str, tuple[float, float]] = {
    "adam": (8.0, 8.0),
    "adamw": (8.0, 8.0),
    "adafactor": (2.0, 4.0),
    "sgd": (0.0, 0.0),
}
# the notes' optimizer whose factor applies to each optimizer the experiments run
NOTES_OPTIMIZER_OF: dict[str, str] = {
    "adamw": "adamw",
    "adam": "adam",
    "sgd": "sgd",
    "sgd_momentum": "sgd",
    "adafactor": "adafactor",
    "mixed_adamw": "adamw",
}
NOTES_GRADIENT_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0}
NOTES_ACTIVATION_FRACTION: tuple[float, float] = (0.20, 0.30)


def dtype_bytes(dtype: str) -> float:
    if dtype not in DTYPE_BYTES:
        raise InputError(f"memory: dtype {dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def model_bytes(params: int | float, dtype: str) -> float:
    """The notes' base memory: parameters × bytes per value."""
    return params * dtype_bytes(dtype)


def notes_training_bytes(
    params: int | float,
    dtype: str,
    optimizer: str,
    activation_fraction: float = 0.25,
    reading: str = "literal",
) -> float:
    """The notes' training memory.

    ``literal``: base × (optimizer + gradient + activation factors), factors as the
    notes list them (bytes/param, bytes/param, fraction): the units do not match.
    ``additive``: weights + (optimizer + gradient bytes/param) × params + fraction × weights.
    """
    if optimizer not in NOTES_OPTIMIZER_BYTES:
        raise InputError(f"memory: the notes give no factor for optimizer {optimizer!r}")
    grad_dtype = dtype if dtype in NOTES_GRADIENT_BYTES else "fp32"
    opt = sum(NOTES_OPTIMIZER_BYTES[optimizer]) / 2
    grad = NOTES_GRADIENT_BYTES[grad_dtype]
    base = model_bytes(params, dtype)
    if reading == "literal":
        return base * (opt + grad + activation_fraction)
    if reading == "additive":
        return base + params * (opt + grad) + activation_fraction * base
    raise InputError(f"memory: reading {reading!r} is not one of literal, additive")


# --------------------------------------------------------------------------- precision


@dataclass(frozen=True)
class Precision:
    """Bytes per value of weights, gradients, activations, and the FP32 master copy (if any)."""

    name: str
    weight: int
    grad: int
    act: int
    master: int


PRECISION_BYTES: dict[str, Precision] = {
    "fp32": Precision("fp32", 4, 4, 4, 0),
    "bf16": Precision("bf16", 2, 2, 2, 0),
    "fp16": Precision("fp16", 2, 2, 2, 0),
    "mixed_bf16": Precision("mixed_bf16", 2, 2, 2, 4),
}


def precision(name: str) -> Precision:
    if name not in PRECISION_BYTES:
        raise InputError(f"memory: precision {name!r} is not one of {', '.join(PRECISION_BYTES)}")
    return PRECISION_BYTES[name]


# --------------------------------------------------------------------------- optimizer state


def optimizer_state_bytes(
    shapes: Sequence[Sequence[int]],
    optimizer: str,
    state_bytes: int = 4,
    step_bytes: int = 4,
    master_bytes: int = 0,
) -> int:
    """Exact bytes of optimizer state for parameters of ``shapes``, as torch's optimizers keep it.

    ``step_bytes``: the per-tensor ``step`` counter (a 0-d FP32 tensor in torch's
    Adam/AdamW/Adafactor; pass 0 where it lives on another device).
    """
    numels = [math.prod(s) for s in shapes]
    if optimizer in ("adam", "adamw"):
        return sum(2 * n * state_bytes + step_bytes for n in numels)
    if optimizer == "mixed_adamw":  # FP32 master + two FP32 moments; python-int step
        return sum(n * (2 * state_bytes + (master_bytes or 4)) for n in numels)
    if optimizer == "sgd":
        return 0
    if optimizer == "sgd_momentum":
        return sum(n * state_bytes for n in numels)
    if optimizer == "adafactor":
        total = 0
        for shape in shapes:
            if len(shape) >= 2:
                row = math.prod(shape[:-1])  # row_var: shape[:-1] + (1,)
                col = math.prod(shape[:-2]) * shape[-1]  # col_var: shape[:-2] + (1, shape[-1])
                total += (row + col) * state_bytes
            else:
                total += math.prod(shape) * state_bytes
            total += step_bytes
        return total
    raise InputError(f"memory: optimizer {optimizer!r} has no state model")


def optimizer_bytes_per_param(shapes: Sequence[Sequence[int]], optimizer: str, **kw: int) -> float:
    n = sum(math.prod(s) for s in shapes)
    return optimizer_state_bytes(shapes, optimizer, **kw) / n if n else math.nan


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class LlamaShape:
    """The sizes the activation count depends on."""

    hidden: int
    intermediate: int
    heads: int
    layers: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @classmethod
    def from_model_cfg(cls, cfg: Mapping[str, Any], layers: int | None = None) -> LlamaShape:
        return cls(
            int(cfg["hidden_size"]),
            int(cfg["intermediate_size"]),
            int(cfg["num_heads"]),
            int(layers if layers is not None else cfg["num_layers"]),
            int(cfg["vocab_size"]),
        )


def llama_layer_activation_bytes(shape: LlamaShape, batch: int, seq: int, act: int = 4) -> int:
    """Bytes one LlamaDecoderLayer (eager attention, no dropout) saves for backward.

    Per token (b·s) and per value: each RMSNorm keeps its input upcast to FP32
    (4·h), its pre-weight output and its output (2·act·h) and 1/rms (4); attention
    keeps q and k after RoPE, v, and the attention output before o_proj (4·act·h)
    and the softmax output, b·a·s² values in FP32 (plus its 16-bit copy when
    act < 4); the SwiGLU MLP keeps gate, silu(gate), up and their product (4·act·f).
    """
    b, s, h, f, a = batch, seq, shape.hidden, shape.intermediate, shape.heads
    per_token = 2 * (4 * h + 2 * act * h + 4) + 4 * act * h + 4 * act * f
    softmax = b * a * s * s * (4 + (act if act != 4 else 0))
    return b * s * per_token + softmax


def llama_head_activation_bytes(shape: LlamaShape, batch: int, seq: int, act: int = 4) -> int:
    """Saved bytes outside the layers: ids, RoPE cos/sin, final norm, FP32 log-softmax, targets."""
    b, s, h, d = batch, seq, shape.hidden, shape.head_dim
    ids = 8 * b * s
    rope = 2 * s * d * act  # cos and sin, shared by every layer (position ids have batch 1)
    final_norm = b * s * (4 * h + 2 * act * h + 4)
    log_softmax = 4 * b * s * shape.vocab
    # int64 targets: labels padded by one and shifted; for batch 1 the shifted slice is already
    # contiguous and keeps the padded (s+1)-long storage alive; plus the loss's 4-byte total weight
    targets = 8 * (b * s + (1 if b == 1 else 0)) + 4
    return ids + rope + final_norm + log_softmax + targets


def llama_activation_bytes(shape: LlamaShape, batch: int, seq: int, act: int = 4) -> int:
    """All bytes saved for backward by a LlamaForCausalLM training forward (eager attention)."""
    return shape.layers * llama_layer_activation_bytes(shape, batch, seq, act) + llama_head_activation_bytes(
        shape, batch, seq, act
    )


def llama_checkpointed_activation_bytes(
    shape: LlamaShape, batch: int, seq: int, act: int = 4, segment: int = 1
) -> int:
    """Activation peak with checkpointing every ``segment`` layers.

    Kept: one input per segment (b·s·h values); during the backward of a segment
    its layers' activations are recomputed and held together (segment × one
    layer). ``segment = 1`` is transformers' per-layer checkpointing; ceil(sqrt(L))
    is Chen et al.'s sqrt(n) schedule.
    """
    segments = math.ceil(shape.layers / segment)
    boundaries = segments * batch * seq * shape.hidden * act
    return (
        boundaries
        + min(segment, shape.layers) * llama_layer_activation_bytes(shape, batch, seq, act)
        + llama_head_activation_bytes(shape, batch, seq, act)
    )


def korthikanti_layer_bytes(seq: int, batch: int, hidden: int, heads: int) -> float:
    """Korthikanti et al. 2022, eq. 1: activation bytes per GPT layer, 16-bit, no parallelism."""
    return seq * batch * hidden * (34 + 5 * heads * seq / hidden)


def loss_grad_bytes(shape: LlamaShape, batch: int, seq: int) -> int:
    """The first gradients of backward: dL/d(log-probs) and dL/d(logits), both FP32, alive together."""
    return 2 * batch * seq * shape.vocab * 4


# --------------------------------------------------------------------------- a training step


@dataclass(frozen=True)
class TrainingEstimate:
    """Bytes of each term of one training step, and two ways to turn them into a peak."""

    params: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    loss_grads: int
    sum_of_terms: int  # weights + gradients + optimizer + activations: the usual tally
    phase_peak: int  # the largest of the moments at which the terms coexist

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def training_estimate(
    shapes: Sequence[Sequence[int]],
    shape: LlamaShape,
    batch: int,
    seq: int,
    optimizer: str,
    precision_name: str = "fp32",
    step_bytes: int = 4,
    checkpoint_segment: int | None = None,
) -> TrainingEstimate:
    """The exact-accounting estimate of one training step of the Llama model.

    Phase model (gradients released with ``zero_grad(set_to_none=True)``; the
    logits are not kept after the loss): at the start of backward, weights +
    optimizer state + saved activations coexist with the first two gradients,
    dL/d(log-probs) and dL/d(logits), both FP32 b·s·V; during the optimizer step, weights + gradients + optimizer state coexist
    with one tensor's temporaries (foreach=False). The peak is the larger.
    """
    prec = precision(precision_name)
    n = sum(math.prod(s) for s in shapes)
    largest = max((math.prod(s) for s in shapes), default=0)
    weights, grads = n * prec.weight, n * prec.grad
    opt = optimizer_state_bytes(shapes, optimizer, step_bytes=step_bytes, master_bytes=prec.master)
    if checkpoint_segment is None:
        acts = llama_activation_bytes(shape, batch, seq, prec.act)
    else:
        acts = llama_checkpointed_activation_bytes(shape, batch, seq, prec.act, checkpoint_segment)
    loss_grads = loss_grad_bytes(shape, batch, seq)
    backward_start = weights + opt + acts + loss_grads
    step_temp = largest * (4 * 2 if optimizer in ("adam", "adamw", "mixed_adamw") else 4)
    step = weights + grads + opt + step_temp
    return TrainingEstimate(
        n, weights, grads, opt, acts, loss_grads, weights + grads + opt + acts, max(backward_start, step)
    )
