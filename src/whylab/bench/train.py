"""One training loop for every bench experiment, so variants differ only in the model.

AdamW, linear warm-up then cosine decay, gradient clipping, evaluation on fixed
windows every ``eval_every`` steps. The same seed gives the same numbers on CPU:
the batches come from a generator seeded by ``TrainSettings.seed`` (the model's
initial weights are seeded by the caller, before it builds the model).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from whylab.bench.data import eval_windows, lm_batches
from whylab.bench.loss import cross_entropy
from whylab.bench.model import BenchConfig
from whylab.errors import InputError
from whylab.progress import Progress

LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
BatchFn = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]


@dataclass
class TrainSettings:
    steps: int = 200
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 50
    seed: int = 0
    eval_windows: int = 32  # at most this many validation windows (when valid is an id stream)
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    beta2: float = 0.95  # AdamW's second-moment decay (Xiong et al. 2020 train Post-LN with 0.98-0.999)


@dataclass
class TrainHistory:
    steps: list[int]
    train_loss: list[float]
    eval_steps: list[int]
    eval_loss: list[float]
    grad_norm: list[float]  # total grad norm before clipping, per step
    diverged: bool  # non-finite loss, or loss above 1.5x the initial loss at the end
    final_eval_loss: float
    lr: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_mapping(cls: type, values: Mapping[str, Any], where: str, **overrides: Any) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    merged = {**dict(values), **overrides}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise InputError(
            f"{where}: unknown key {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(known))})"
        )
    try:
        return cls(**merged)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {exc}") from None


def bench_config(model_settings: Mapping[str, Any], **overrides: Any) -> BenchConfig:
    """A BenchConfig from the config's ``mechanisms.model`` section plus per-experiment overrides."""
    return _from_mapping(BenchConfig, model_settings, "mechanisms.model", **overrides)


def train_settings(section: Mapping[str, Any], **overrides: Any) -> TrainSettings:
    """TrainSettings from the config's ``mechanisms.train`` section plus overrides."""
    return _from_mapping(TrainSettings, section, "mechanisms.train", **overrides)


def lm_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Next-token cross-entropy (nats/token); targets of -100 are ignored."""
    logits = model(x).logits
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)


def _lr_factor(step: int, settings: TrainSettings) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at the last step."""
    if settings.warmup_steps > 0 and step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    span = max(1, settings.steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return settings.min_lr_ratio + (1.0 - settings.min_lr_ratio) * cosine


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    windows: tuple[Tensor, Tensor],
    device: str = "cpu",
    loss_fn: LossFn | None = None,
    batch_size: int = 64,
) -> float:
    """Mean loss over ``windows`` (default: next-token cross-entropy, nats/token), in eval mode."""
    loss_fn = loss_fn or lm_loss
    was_training = model.training
    model.eval()
    x_all, y_all = windows
    total, weight = 0.0, 0
    for i in range(0, x_all.shape[0], batch_size):
        x = x_all[i : i + batch_size].to(device)
        y = y_all[i : i + batch_size].to(device)
        total += float(loss_fn(model, x, y)) * x.shape[0]
        weight += x.shape[0]
    model.train(was_training)
    return total / max(1, weight)


def _total_norm(params: list[nn.Parameter]) -> Tensor:
    """The 2-norm of all gradients together: the norm of the per-tensor norms, the numbers
    ``clip_grad_norm_`` computes (0 when no parameter has a gradient)."""
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(norms))


def _grad_norm(params: list[nn.Parameter]) -> float:
    return float(_total_norm(params))


def make_adamw(params: list[nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW with the settings' lr, betas and weight decay. On CPU and CUDA the fused kernel (one
    pass over each tensor; PyTorch's foreach on CPU is a loop of per-tensor ops, 11 of them per
    parameter), elsewhere foreach. Fused rounds differently from the per-op update, by float
    rounding only (tests/test_bench_fast_path.py)."""
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    kind: dict[str, bool] = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(
        params, lr=settings.lr, betas=(0.9, settings.beta2), weight_decay=settings.weight_decay, **kind
    )


def train_lm(
    model: nn.Module,
    train_ids: Tensor | None,
    valid_ids: Tensor | tuple[Tensor, Tensor] | None,
    settings: TrainSettings,
    device: str = "cpu",
    loss_fn: LossFn | None = None,
    batch_fn: BatchFn | None = None,
    label: str = "bench",
) -> TrainHistory:
    """Train ``model`` in place and return its history.

    ``batch_fn(step, generator) -> (x, y)`` replaces the random LM windows of
    ``train_ids`` (synthetic tasks use it); ``loss_fn(model, x, y)`` replaces
    next-token cross-entropy. ``valid_ids`` is an id stream (cut into fixed windows),
    ready (x, y) windows, or None (no evaluation). A run longer than a few seconds writes a
    progress line (``label``, step, loss, tokens/s, time left) to stderr every ~5 s.
    """
    loss_fn = loss_fn or lm_loss
    generator = torch.Generator().manual_seed(settings.seed)
    if batch_fn is None:
        if train_ids is None:
            raise ValueError("train_lm needs train_ids or a batch_fn")
        stream: Iterator[tuple[Tensor, Tensor]] = lm_batches(
            train_ids, batch_size=settings.batch_size, seq_len=settings.seq_len, generator=generator
        )
        next_batch: BatchFn = lambda step, gen: next(stream)  # noqa: E731
    else:
        next_batch = batch_fn
    windows: tuple[Tensor, Tensor] | None
    if valid_ids is None:
        windows = None
    elif isinstance(valid_ids, tuple):
        windows = valid_ids
    else:
        windows = eval_windows(valid_ids, seq_len=settings.seq_len, max_windows=settings.eval_windows)

    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_adamw(params, settings)
    hist = TrainHistory([], [], [], [], [], diverged=False, final_eval_loss=math.nan)

    def evaluate(step: int) -> None:
        if windows is not None:
            hist.eval_steps.append(step)
            hist.eval_loss.append(evaluate_lm(model, windows, device, loss_fn))

    evaluate(0)
    progress = Progress(label, settings.steps, settings.batch_size * settings.seq_len)
    for step in range(settings.steps):
        lr = settings.lr * _lr_factor(step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next_batch(step, generator)
        loss = loss_fn(model, x.to(device), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        total = _total_norm(params)  # computed once: logged, checked, and reused by the clipping
        norm = float(total)
        hist.steps.append(step + 1)
        hist.train_loss.append(value)
        hist.grad_norm.append(norm)
        hist.lr.append(lr)
        if not math.isfinite(value) or not math.isfinite(norm):
            hist.diverged = True
            break
        if settings.grad_clip is not None:  # what clip_grad_norm_ does, without a second norm pass
            torch.nn.utils.clip_grads_with_norm_(params, settings.grad_clip, total)
        optimizer.step()
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            evaluate(step + 1)
        progress.update(step + 1, value)
    finish_history(hist)
    return hist


def finish_history(hist: TrainHistory) -> None:
    """Set ``diverged`` and ``final_eval_loss`` once training stopped (``diverged`` already True:
    stopped early on a non-finite loss or gradient)."""
    blew_up = hist.diverged
    if not blew_up and hist.train_loss:
        tail = hist.train_loss[-max(1, min(10, len(hist.train_loss) // 10)) :]
        hist.diverged = sum(tail) / len(tail) > 1.5 * hist.train_loss[0]
    if hist.eval_loss and not blew_up:
        hist.final_eval_loss = hist.eval_loss[-1]


def per_layer_grad_norms(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None
) -> list[float]:
    """Gradient norm of each block's parameters after one backward at the current weights.

    The model's own gradients are left as they were (cleared before and after).
    """
    loss_fn = loss_fn or lm_loss
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError("per_layer_grad_norms needs a model with .blocks")
    model.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    loss_fn(model, x.to(device), y.to(device)).backward()
    norms = [_grad_norm([p for p in block.parameters() if p.requires_grad]) for block in blocks]
    model.zero_grad(set_to_none=True)
    return norms
