"""The ``lm.training`` settings of the language model's training run: their defaults, the checks
that refuse a bad value, and what ``precision: auto`` means on a device."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from whylab.errors import InputError

# the training section's keys and their defaults (the schema lm.schema.yaml repeats them)
TRAIN_DEFAULTS: dict[str, Any] = {
    "block_size": 128,
    "batch_size": 16,
    "max_steps": 300,
    "learning_rate": 3e-3,
    "min_lr_ratio": 0.1,
    "warmup_steps": 30,
    "weight_decay": 0.1,
    "beta1": 0.9,
    "beta2": 0.95,
    "grad_clip": 1.0,
    "eval_every": 50,
    "eval_blocks": 32,
    "eval_batch_size": 16,
    "checkpoint_every": 100,
    "keep_checkpoints": 1,
    "max_train_blocks": None,
    "precision": "auto",
    "log_every": 10,
    "seed": None,
}


@dataclass
class TrainConfig:
    block_size: int
    batch_size: int
    max_steps: int
    learning_rate: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    eval_every: int
    eval_blocks: int
    eval_batch_size: int
    checkpoint_every: int
    keep_checkpoints: int
    max_train_blocks: int | None
    precision: str
    log_every: int
    seed: int | None

    @classmethod
    def from_settings(cls, section: Mapping[str, Any] | None) -> TrainConfig:
        section = dict(section or {})
        unknown = set(section) - set(TRAIN_DEFAULTS)
        if unknown:
            raise InputError(f"lm.training: unknown key(s) {', '.join(sorted(unknown))}")
        cfg = cls(**{**TRAIN_DEFAULTS, **section})
        for key in (
            "block_size",
            "batch_size",
            "max_steps",
            "eval_every",
            "eval_blocks",
            "eval_batch_size",
            "checkpoint_every",
            "keep_checkpoints",
            "log_every",
        ):
            if int(getattr(cfg, key)) < 1:
                raise InputError(f"lm.training.{key} must be at least 1, got {getattr(cfg, key)}")
        if cfg.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"lm.training.precision: {cfg.precision!r} is not one of auto, fp32, bf16")
        return cfg


def resolve_precision(setting: str, device: str) -> str:
    """``auto`` means bf16 autocast on a CUDA device that supports it, else fp32."""
    if setting == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return setting
