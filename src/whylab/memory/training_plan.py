"""The training-memory plan of one step (see :mod:`whylab.memory.planner` for the method): per
component on the accelerator and on the host, the peak of the phase model, the sum of all
terms, which GPU sizes it fits, and what ``accelerate estimate-memory`` would say."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from whylab.errors import InputError
from whylab.memory.activations import (
    ATTENTION,
    CUDA,
    Kernels,
    head_activation_bytes,
    layer_activation_bytes,
    logits_bytes,
)
from whylab.memory.architecture import Arch, Param, arch_from_config, buffer_bytes, param_count, param_list

GiB = 2**30
GB = 10**9
GPU_SIZES_GB = (24, 40, 80)
OPTIMIZERS = ("adamw", "adamw8bit", "sgd", "adafactor")
DTYPES = ("fp32", "bf16", "fp16")
OFFLOAD = ("none", "optimizer", "params")
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + 8-bit absmax per 64 + FP32 absmax per 256 blocks
BNB8_BLOCK = 256  # bitsandbytes' blockwise 8-bit optimizer: one FP32 absmax per 256 values per state
BNB8_MIN_SIZE = 4096  # smaller tensors keep 32-bit state (min_8bit_size)


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
    if a.family == "bert":  # BertModel alone (encoder + pooler) is the count papers quote
        notes.append(
            f"BERT counted as BertForSequenceClassification: encoder, pooler and a {a.num_labels}-label head"
        )
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
