"""Fine-tuning variants for C14: QLoRA (NF4 base + LoRA), LoRA on the FP32 base, full fine-tuning.

QLoRA (Dettmers et al. 2023) = the pretrained weights stored as 4-bit NormalFloat (NF4,
optionally with the quantization constants quantized again: "double quantization"),
frozen, dequantized on the fly in each forward pass, plus trainable low-rank adapters
(LoRA, Hu et al. 2021) in 16/32-bit. The base is loaded through transformers'
``BitsAndBytesConfig`` (bitsandbytes ``Linear4bit`` layers) with every other tensor kept
in float32 (without ``dtype=float32`` transformers would turn the rest into float16);
adapters come from peft. All three variants share one training loop, seed, batch order
and learning-rate schedule, so their differences are the method's.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from whylab.errors import InputError

VARIANTS = ("qlora", "lora", "full")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class FinetuneConfig:
    """One fine-tuning run's hyper-parameters (the same for every variant, except the lr)."""

    steps: int = 40
    batch_size: int = 8
    warmup_steps: int = 4
    lr_adapters: float = 3e-3
    lr_full: float = 1e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    double_quant: bool = True
    eval_batch_size: int = 8

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> FinetuneConfig:
        known = set(cls.__dataclass_fields__)
        cfg = cls(**{k: settings[k] for k in known if k in settings})
        for key in ("steps", "batch_size", "lora_r", "eval_batch_size"):
            if int(getattr(cfg, key)) < 1:
                raise InputError(f"quantization.qlora.{key} must be at least 1, got {getattr(cfg, key)}")
        return cfg


@dataclass
class FinetuneResult:
    variant: str
    seed: int
    trainable_params: int
    total_params: int
    base_storage_bytes: int  # every base tensor as stored (packed 4-bit weights + their constants)
    linear_storage_bytes: int  # the decoder linear layers' weights only
    linear_table_bytes: int  # of which fixed-size lookup tables (4-bit only)
    linear_bits_per_weight: float  # codes + per-block scales per weight
    linear_code_bytes_per_weight: float  # the stored codes alone (0.5 for two packed 4-bit codes per byte)
    linear_weights: int  # how many weights those layers hold
    linear4bit_count: int
    decoder_linear_count: int
    nf4: bool
    only_adapters_trainable: bool
    base_unchanged: bool
    ppl_before: float
    ppl_after: float
    retained_ppl_after: float | None
    peak_bytes: int | None
    train_seconds: float
    losses: list[float] = field(default_factory=list)


def bnb_available() -> tuple[bool, str]:
    """Whether bitsandbytes 4-bit layers can run here, with the reason when not."""
    try:
        import bitsandbytes as bnb  # noqa: F401
    except Exception as exc:
        return False, f"bitsandbytes cannot be imported: {exc}"
    return True, ""


def load_base(model_dir: Path, variant: str, device: str, double_quant: bool = True) -> nn.Module:
    """The pretrained model for ``variant``: NF4 4-bit linear layers for qlora, float32 otherwise."""
    from transformers import BitsAndBytesConfig

    from whylab.lm.pretrained import load_causal_lm

    if variant not in VARIANTS:
        raise InputError(f"quantization.qlora.variants: {variant!r} is not one of {', '.join(VARIANTS)}")
    if variant != "qlora":
        model: nn.Module = load_causal_lm(model_dir, torch.float32, device)
        return model
    bnb_config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = load_causal_lm(
        model_dir, torch.float32, device, quantization_config=bnb_config, device_map={"": device}
    )
    _keep_standard_4bit_layout(model)
    return model


def _keep_standard_4bit_layout(model: nn.Module) -> None:
    """Turn off bitsandbytes' CPU inference repacking.

    On CPUs with AVX512-BF16, a ``Linear4bit`` in eval mode rewrites its packed weight, in
    place, into another layout for a faster kernel; that layout needs out_features divisible
    by 32 (this model's 344-wide MLP is not) and would change the very bytes whose
    constancy shows that the base stayed frozen. The standard dequantize-then-matmul path
    computes the same product.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def decoder_linear_names(model: nn.Module) -> list[str]:
    """Qualified names of the decoder's projection layers (what QLoRA quantizes and adapts)."""
    return [
        n
        for n, m in model.named_modules()
        if n.rsplit(".", 1)[-1] in LORA_TARGETS and hasattr(m, "weight") and ".layers." in f".{n}"
    ]


def _quant_state_bytes(weight: Any) -> tuple[int, int]:
    """Bytes of a bitsandbytes 4-bit weight's constants: (per-block scales, lookup tables).

    Scales grow with the layer (one absmax per block of 64 weights, 8-bit with double
    quantization plus one float per 256 blocks); the lookup tables (16 NF4 levels, 256
    levels of the 8-bit scale code) are a fixed size per layer, shareable in principle.
    """
    state = getattr(weight, "quant_state", None)
    if state is None:
        return 0, 0

    def nbytes(t: Any) -> int:
        return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0

    scales = nbytes(getattr(state, "absmax", None)) + nbytes(getattr(state, "offset", None))
    tables = nbytes(getattr(state, "code", None))
    nested = getattr(state, "state2", None)
    if nested is not None:
        scales += nbytes(getattr(nested, "absmax", None))
        tables += nbytes(getattr(nested, "code", None))
    return scales, tables


def storage_report(model: nn.Module) -> dict[str, Any]:
    """Bytes of the base model as stored, and of its decoder linear weights, with 4-bit counts.

    A bitsandbytes 4-bit weight holds two 4-bit codes per uint8 byte plus its constants;
    all of it is in the storage totals. ``linear_bits_per_weight`` counts codes and
    per-block scales (what grows with the model), not the fixed-size lookup tables.
    """
    import bitsandbytes as bnb

    linear = set(decoder_linear_names(model))
    base_bytes = linear_bytes = linear_tables = linear_weights = linear_codes = 0
    n4 = 0
    nf4 = True
    for name, module in model.named_modules():
        for pname, p in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            if "lora_" in f"{name}.{pname}":
                continue
            scales, tables = _quant_state_bytes(p)
            b = p.numel() * p.element_size() + scales + tables
            base_bytes += b
            if name in linear and pname == "weight":
                linear_bytes += b
                linear_tables += tables
                linear_codes += p.numel() * p.element_size()  # the packed codes alone
        if name in linear:
            linear_weights += int(module.out_features) * int(module.in_features)
        if isinstance(module, bnb.nn.Linear4bit):
            n4 += 1
            state = getattr(module.weight, "quant_state", None)
            nf4 = nf4 and state is not None and getattr(state, "quant_type", "") == "nf4"
    return {
        "base_storage_bytes": base_bytes,
        "linear_storage_bytes": linear_bytes,
        "linear_table_bytes": linear_tables,
        "linear_weights": linear_weights,
        "linear_bits_per_weight": 8 * (linear_bytes - linear_tables) / max(1, linear_weights),
        "linear_code_bytes_per_weight": linear_codes / max(1, linear_weights),
        "linear4bit_count": n4,
        "decoder_linear_count": len(linear),
        "nf4": bool(n4 and nf4),
    }


def base_fingerprint(model: nn.Module) -> str:
    """A hash of every non-adapter tensor's bytes: equal before and after means the base stayed frozen."""
    h = hashlib.sha256()
    for name, t in sorted(list(model.named_parameters()) + list(model.named_buffers()), key=lambda x: x[0]):
        if "lora_" in name:
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def add_adapters(model: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """LoRA adapters on every decoder projection, as the QLoRA paper does (all linear layers)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(LORA_TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def lr_multiplier(step: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to ``min_lr_ratio`` of it."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_order(n_blocks: int, steps: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The blocks of each step: shuffled epochs from ``seed``, identical for every variant."""
    g = torch.Generator().manual_seed(int(seed))
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += torch.randperm(n_blocks, generator=g).tolist()
    return [torch.tensor(order[i * batch_size : (i + 1) * batch_size]) for i in range(steps)]


def train(
    model: nn.Module, blocks: torch.Tensor, cfg: FinetuneConfig, lr: float, seed: int, device: str
) -> list[float]:
    """AdamW over the trainable parameters with the shared schedule; returns the loss per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_multiplier(s, cfg))
    model.train()
    losses: list[float] = []
    for idx in batch_order(blocks.shape[0], cfg.steps, cfg.batch_size, seed):
        batch = blocks[idx].to(device)
        out = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
    model.eval()
    return losses


def finetune(
    variant: str,
    model_dir: Path,
    train_blocks: torch.Tensor,
    valid_blocks: torch.Tensor,
    cfg: FinetuneConfig,
    seed: int,
    device: str,
    retain_blocks: torch.Tensor | None = None,
) -> FinetuneResult:
    """Load the base for ``variant``, measure it, fine-tune it, measure again."""
    from whylab.lm.evaluate import perplexity
    from whylab.quant.peak_memory import PeakMemory
    from whylab.runtime import set_seed

    set_seed(seed)
    model = load_base(model_dir, variant, device, cfg.double_quant)
    report = storage_report(model)
    ppl_before = perplexity(model, valid_blocks, batch_size=cfg.eval_batch_size, device=device)
    if variant == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        lr = cfg.lr_full
    else:
        model = add_adapters(model, cfg)
        lr = cfg.lr_adapters
    before_fp = base_fingerprint(model) if variant != "full" else ""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    only_adapters = bool(trainable) and all("lora_" in n for n, _ in trainable)
    n_trainable = sum(p.numel() for _, p in trainable)
    total = sum(_logical_numel(p) for p in model.parameters())
    set_seed(seed)  # adapters are initialised above; training draws from a fresh stream
    start = time.perf_counter()
    with PeakMemory(device) as pm:
        losses = train(model, train_blocks, cfg, lr, seed, device)
    seconds = time.perf_counter() - start
    unchanged = variant != "full" and base_fingerprint(model) == before_fp
    ppl_after = perplexity(model, valid_blocks, batch_size=cfg.eval_batch_size, device=device)
    retained = (
        perplexity(model, retain_blocks, batch_size=cfg.eval_batch_size, device=device)
        if retain_blocks is not None
        else None
    )
    result = FinetuneResult(
        variant=variant,
        seed=seed,
        trainable_params=n_trainable,
        total_params=total,
        base_storage_bytes=report["base_storage_bytes"],
        linear_storage_bytes=report["linear_storage_bytes"],
        linear_table_bytes=report["linear_table_bytes"],
        linear_bits_per_weight=report["linear_bits_per_weight"],
        linear_code_bytes_per_weight=report["linear_code_bytes_per_weight"],
        linear_weights=report["linear_weights"],
        linear4bit_count=report["linear4bit_count"],
        decoder_linear_count=report["decoder_linear_count"],
        nf4=report["nf4"],
        only_adapters_trainable=only_adapters,
        base_unchanged=unchanged,
        ppl_before=ppl_before,
        ppl_after=ppl_after,
        retained_ppl_after=retained,
        peak_bytes=pm.peak_bytes,
        train_seconds=seconds,
        losses=losses,
    )
    del model
    return result


def _logical_numel(p: torch.Tensor) -> int:
    """Weights a parameter stands for: a packed 4-bit tensor holds two per byte."""
    state = getattr(p, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return int(torch.Size(state.shape).numel())
    return p.numel()


def memory_method(device: str) -> str:
    from whylab.quant.peak_memory import PeakMemory

    return PeakMemory(device).method
