"""Train R replicas of one bench architecture together: one batched computation per step.

A claim trains the same :class:`BenchTransformer` shape several times (5 seeds, arms that
share shapes). One model at a time leaves a CPU core mostly waiting on small matmuls and
per-op overhead; here every weight carries a leading replica dimension, each Linear is one
``baddbmm`` over the replicas, attention runs the same kernel on the replicas folded into
the batch, and one AdamW steps all stacked weights at once.

Each replica keeps exactly what :func:`~whylab.bench.train.train_lm` would give it: its own
initial weights (the model handed in), its own batches (a generator seeded with its own
``TrainSettings.seed``), its own gradient norm and clipping, its own AdamW state (AdamW is
elementwise, so stacking does not mix replicas), its own divergence stop. The numbers agree
with one-at-a-time training to float rounding (the batched kernels sum in another order;
tests/test_bench_replicas.py holds the tolerance). Options that cannot be batched faithfully
(dropout, batch statistics, other model classes, a custom ``loss_fn``) are refused.

A hand-written batched forward was measured against ``torch.func`` (``stack_module_state``
+ ``functional_call`` + ``vmap``): vmap was 1.6x *slower* than five separate models on one
CPU thread (its SDPA has no batching rule and falls back to a loop). This one is about as fast
as five separate models on the default lab shape (~46k vs ~45k tokens per CPU-second, one
thread): five replicas' activations overflow the core's L2, so the bmm kernels run below
one model's mm. It may pay where per-op overhead dominates (small models, few tokens per
step; not measured yet).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from whylab.bench.batched_forward import Params as Params
from whylab.bench.batched_forward import ReplicaLoss as ReplicaLoss
from whylab.bench.batched_forward import batched_hidden as batched_hidden
from whylab.bench.batched_forward import batched_loss as batched_loss
from whylab.bench.data import eval_windows, lm_batches
from whylab.bench.model import BenchConfig, BenchTransformer
from whylab.bench.train import BatchFn, TrainHistory, TrainSettings, _lr_factor, finish_history
from whylab.progress import Progress


def _refuse_config(cfg: BenchConfig) -> None:
    reasons = []
    if cfg.dropout > 0:
        reasons.append(f"dropout={cfg.dropout} (each model would draw its own masks)")
    if cfg.norm in ("batch", "masked_batch"):
        reasons.append(f"norm={cfg.norm!r} (batch statistics and running buffers)")
    if reasons:
        raise ValueError("train_replicas cannot batch " + "; ".join(reasons) + ": use train_lm")


def _check_replicas(models: Sequence[torch.nn.Module], settings: Sequence[TrainSettings]) -> BenchConfig:
    if not models:
        raise ValueError("train_replicas needs at least one model")
    if len(settings) != len(models):
        raise ValueError(f"{len(models)} models but {len(settings)} TrainSettings")
    cfgs: list[BenchConfig] = []
    for m in models:
        if not isinstance(m, BenchTransformer) or type(m) is not BenchTransformer:
            raise ValueError(f"train_replicas batches BenchTransformer only, got {type(m).__name__}")
        cfgs.append(m.cfg)
    cfg = cfgs[0]
    if any(c != cfg for c in cfgs):
        raise ValueError("train_replicas needs one architecture: the models' BenchConfigs differ")
    _refuse_config(cfg)
    first = dataclasses.replace(settings[0], seed=0)
    if any(dataclasses.replace(s, seed=0) != first for s in settings):
        raise ValueError("the replicas' TrainSettings may differ only in seed")
    return cfg


# --------------------------------------------------------------------------- the trainer


class _Stacked:
    """The replicas' parameters stacked along a new leading dimension, and back."""

    def __init__(self, models: Sequence[torch.nn.Module], device: str) -> None:
        names = [n for n, _ in models[0].named_parameters()]  # tied weights once
        self.params: Params = {}
        tables = [dict(m.named_parameters()) for m in models]
        for name in names:
            stacked = torch.stack([t[name].detach() for t in tables]).to(device)
            self.params[name] = stacked.requires_grad_(tables[0][name].requires_grad)
        self.trainable = [t for t in self.params.values() if t.requires_grad]

    def grad_norms(self) -> Tensor:
        """Each replica's global gradient norm (R,), as train_lm's ``_grad_norm``."""
        grads = [t.grad for t in self.trainable if t.grad is not None]
        if not grads:
            return torch.zeros(next(iter(self.params.values())).shape[0])
        per = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
        return torch.linalg.vector_norm(per, dim=0)

    def scale_grads(self, coef: Tensor) -> None:
        for t in self.trainable:
            if t.grad is not None:
                t.grad.mul_(coef.view(-1, *([1] * (t.dim() - 1))))

    def write_back(self, model: torch.nn.Module, r: int) -> None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.params[name][r].to(param.device))


def _batches(
    train_ids: Tensor | None, settings: Sequence[TrainSettings], batch_fn: BatchFn | None
) -> Callable[[int], tuple[Tensor, Tensor]]:
    gens = [torch.Generator().manual_seed(s.seed) for s in settings]
    if batch_fn is None:
        if train_ids is None:
            raise ValueError("train_replicas needs train_ids or a batch_fn")
        s0 = settings[0]
        streams: list[Iterator[tuple[Tensor, Tensor]]] = [
            lm_batches(train_ids, batch_size=s0.batch_size, seq_len=s0.seq_len, generator=g) for g in gens
        ]
        draws: Callable[[int], list[tuple[Tensor, Tensor]]] = lambda step: [next(s) for s in streams]  # noqa: E731
    else:
        fn = batch_fn
        draws = lambda step: [fn(step, g) for g in gens]  # noqa: E731

    def stacked(step: int) -> tuple[Tensor, Tensor]:
        pairs = draws(step)
        if len({(x.shape, y.shape) for x, y in pairs}) > 1:
            raise ValueError(f"step {step}: the replicas' batches differ in shape; use train_lm")
        return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])

    return stacked


@torch.no_grad()
def _evaluate(
    p: Params, windows: tuple[Tensor, Tensor], cfg: BenchConfig, loss: ReplicaLoss, device: str
) -> list[float]:
    """Each replica's mean loss over the shared windows, weighted per chunk of 64 like evaluate_lm."""
    r = next(iter(p.values())).shape[0]
    x_all, y_all = windows
    total, weight = torch.zeros(r, dtype=torch.float64), 0
    for i in range(0, x_all.shape[0], 64):
        x = x_all[i : i + 64].to(device).expand(r, *x_all[i : i + 64].shape)
        y = y_all[i : i + 64].to(device).expand(r, *y_all[i : i + 64].shape)
        total += batched_loss(p, x, y, cfg, loss).double().cpu() * x.shape[1]
        weight += x.shape[1]
    return (total / max(1, weight)).tolist()


def train_replicas(
    models: Sequence[torch.nn.Module],
    train_ids: Tensor | None,
    valid_ids: Tensor | tuple[Tensor, Tensor] | None,
    settings: Sequence[TrainSettings],
    device: str = "cpu",
    loss: ReplicaLoss = "lm",
    batch_fn: BatchFn | None = None,
    label: str = "bench replicas",
) -> list[TrainHistory]:
    """Train each of ``models`` in place, as ``train_lm(models[i], ..., settings[i])`` would,
    in one batched computation; return their histories in order.

    The models must be BenchTransformers with one BenchConfig; ``settings`` may differ only in
    ``seed``. ``loss`` names the loss ("lm": next-token cross-entropy, ``train_lm``'s default;
    "last_position": ``_bench_common.last_position_loss``); ``batch_fn(step, generator)`` is
    called once per replica with that replica's generator.
    """
    cfg = _check_replicas(models, settings)
    s = settings[0]
    stack = _Stacked(models, device)
    next_batch = _batches(train_ids, settings, batch_fn)
    windows: tuple[Tensor, Tensor] | None = None
    if isinstance(valid_ids, tuple):
        windows = valid_ids
    elif valid_ids is not None:
        windows = eval_windows(valid_ids, seq_len=s.seq_len, max_windows=s.eval_windows)
    r = len(models)
    optimizer = torch.optim.AdamW(
        stack.trainable, lr=s.lr, betas=(0.9, 0.95), weight_decay=s.weight_decay, foreach=True
    )
    hists = [TrainHistory([], [], [], [], [], diverged=False, final_eval_loss=math.nan) for _ in range(r)]
    active = [True] * r

    def evaluate(step: int) -> None:
        if windows is not None:
            for i, value in enumerate(_evaluate(stack.params, windows, cfg, loss, device)):
                if active[i]:
                    hists[i].eval_steps.append(step)
                    hists[i].eval_loss.append(value)

    evaluate(0)
    progress = Progress(label, s.steps, r * s.batch_size * s.seq_len)
    for step in range(s.steps):
        lr = s.lr * _lr_factor(step, s)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next_batch(step)
        losses = batched_loss(stack.params, x.to(device), y.to(device), cfg, loss)
        for t in stack.trainable:
            t.grad = None
        losses.sum().backward()
        norms = stack.grad_norms()
        values, norm_values = losses.detach().tolist(), norms.tolist()
        for i in range(r):
            if not active[i]:
                continue
            h = hists[i]
            h.steps.append(step + 1)
            h.train_loss.append(values[i])
            h.grad_norm.append(norm_values[i])
            h.lr.append(lr)
            if not (math.isfinite(values[i]) and math.isfinite(norm_values[i])):
                h.diverged, active[i] = True, False
                stack.write_back(models[i], i)  # its weights when it stopped, as train_lm leaves them
        if not any(active):
            break
        keep = torch.tensor(active, dtype=norms.dtype, device=norms.device)
        coef = keep if s.grad_clip is None else keep * (s.grad_clip / (norms + 1e-6)).clamp(max=1.0)
        stack.scale_grads(torch.where(keep > 0, coef, torch.zeros_like(coef)))
        optimizer.step()
        if (step + 1) % s.eval_every == 0 or step + 1 == s.steps:
            evaluate(step + 1)
        progress.update(
            step + 1, sum(v for v, a in zip(values, active, strict=True) if a) / max(1, sum(active))
        )
    for i, model in enumerate(models):
        if active[i]:
            stack.write_back(model, i)
        finish_history(hists[i])
    return hists


def train_seeds(
    cfg: BenchConfig,
    seeds: Sequence[int],
    train_ids: Tensor | None,
    valid_ids: Tensor | tuple[Tensor, Tensor] | None,
    settings: TrainSettings,
    device: str = "cpu",
    loss: ReplicaLoss = "lm",
    batch_fn: BatchFn | None = None,
) -> list[tuple[BenchTransformer, TrainHistory]]:
    """``[(model, history)]`` per seed: each model built after ``torch.manual_seed(seed)`` (as
    ``_bench_common.build_model``) and trained with ``settings`` at that seed, all together."""
    models = []
    for seed in seeds:
        torch.manual_seed(int(seed))
        models.append(BenchTransformer(cfg).to(device))
    per = [dataclasses.replace(settings, seed=int(seed)) for seed in seeds]
    hists = train_replicas(
        models, train_ids, valid_ids, per, device, loss, batch_fn, label=f"bench x{len(seeds)}"
    )
    return list(zip(models, hists, strict=True))
