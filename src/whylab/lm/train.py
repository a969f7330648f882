"""Train the language model: the ``lm_train`` step.

A plain, explicit loop (no Trainer) so that every piece the notes talk about is
visible and testable: AdamW with decoupled weight decay, linear warm-up then
cosine decay of the learning rate, gradient clipping, bf16 autocast on GPUs that
support it, periodic validation, and checkpoints that a killed run resumes from.

Resume is exact on CPU: the batch order is a pure function of (seed, step), and
a checkpoint holds the model, optimizer, scheduler, every RNG state and the
history, so a run killed after its checkpoint at step k and resumed ends with
bit-identical weights to one that never stopped (``tests/test_lm_train.py``).
A checkpoint carries a fingerprint of the settings and the data, and is only
resumed by a run with the same fingerprint.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from whylab.errors import InputError
from whylab.files import atomic_path, write_json
from whylab.lm.checkpoints import CHECKPOINT_PREFIX as CHECKPOINT_PREFIX
from whylab.lm.checkpoints import TrainResult as TrainResult
from whylab.lm.checkpoints import _rng_state as _rng_state
from whylab.lm.checkpoints import _save_checkpoint as _save_checkpoint
from whylab.lm.checkpoints import _set_rng_state as _set_rng_state
from whylab.lm.checkpoints import fingerprint as fingerprint
from whylab.lm.checkpoints import latest_checkpoint as latest_checkpoint
from whylab.lm.checkpoints import resume
from whylab.lm.data import corpus_files, load_tokenizer, token_blocks
from whylab.lm.evaluate import nll_per_token
from whylab.lm.flops import PEAK_FLOPS as PEAK_FLOPS
from whylab.lm.flops import flops_per_token as flops_per_token
from whylab.lm.flops import peak_flops as peak_flops
from whylab.lm.model import build_model, count_parameters
from whylab.lm.train_config import TRAIN_DEFAULTS as TRAIN_DEFAULTS
from whylab.lm.train_config import TrainConfig as TrainConfig
from whylab.lm.train_config import resolve_precision as resolve_precision
from whylab.progress import Progress
from whylab.runtime import resolve_device, set_seed, set_threads


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak learning rate before optimizer step ``step`` (0-based).

    Linear warm-up from 1/warmup to 1 over ``warmup_steps``, then cosine decay to
    ``min_lr_ratio`` at ``max_steps``.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(step: int, n_blocks: int, batch_size: int, seed: int) -> torch.Tensor:
    """Training block indices of optimizer step ``step``: a pure function of its arguments.

    The blocks are visited in a fresh seeded permutation each epoch; a batch may
    straddle two epochs. Being stateless is what makes resume exact.
    """
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = positions // n_blocks, positions % n_blocks
    out = torch.empty(batch_size, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        here = epochs == epoch
        out[here] = _epoch_permutation(epoch, n_blocks, seed)[offsets[here]]
    return out


_PERM_CACHE: dict[tuple[int, int, int], torch.Tensor] = {}


def _epoch_permutation(epoch: int, n_blocks: int, seed: int) -> torch.Tensor:
    key = (epoch, n_blocks, seed)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 8:
            _PERM_CACHE.clear()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        _PERM_CACHE[key] = torch.randperm(n_blocks, generator=gen)
    return _PERM_CACHE[key]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on the matrices only (not on norms), as in GPT-style training."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), eps=1e-8)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class _Segment:
    """The losses queued on the device since the last read, and the timing segment they fall
    in: ``flush`` reads them (one device sync) into the history and adds the segment's time
    and tokens to it."""

    def __init__(self, result: TrainResult, device: str, tokens_per_step: int) -> None:
        self.result, self.device, self.tokens_per_step = result, device, tokens_per_step
        self.pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self.start, self.steps = 0.0, 0

    def begin(self) -> None:
        """Start a timing segment once the device has finished the work queued so far."""
        _sync(self.device)
        self.start = time.perf_counter()

    def add(self, step: int, lr: float, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.pending.append((step, lr, loss, grad_norm))
        self.steps += 1

    def flush(self) -> None:
        """Read the queued losses (one device sync) and close the timing segment."""
        result = self.result
        if self.pending:
            values = torch.stack([torch.stack([loss, gn]) for _, _, loss, gn in self.pending]).tolist()
            for (step, lr, _, _), (loss, gn) in zip(self.pending, values, strict=True):
                result.steps.append(step)
                result.lrs.append(lr)
                result.losses.append(loss)
                result.grad_norms.append(gn)
            self.pending.clear()
        _sync(self.device)
        elapsed = time.perf_counter() - self.start
        result.train_seconds += elapsed
        result.tokens_trained += self.steps * self.tokens_per_step
        self.steps = 0


def train_model(
    model: torch.nn.Module,
    train_blocks: torch.Tensor,
    valid_blocks: torch.Tensor,
    cfg: TrainConfig,
    *,
    seed: int,
    device: str,
    precision: str,
    checkpoint_dir: Path | None = None,
    fp: str = "",
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.max_steps`` optimizer steps; return the history.

    If ``checkpoint_dir`` holds a checkpoint with fingerprint ``fp``, training
    resumes from it. ``on_step(step)`` is called after every completed step
    (tests use it to simulate a kill).
    """
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    result = TrainResult()
    start = 0
    ckpt_path = latest_checkpoint(checkpoint_dir, fp)
    if ckpt_path is not None:
        start = resume(ckpt_path, model, optimizer, scheduler, result)

    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")
    tokens_per_step = cfg.batch_size * cfg.block_size
    valid = valid_blocks[: cfg.eval_blocks]

    def evaluate(step: int) -> None:
        with autocast:
            nll = nll_per_token(model, valid, batch_size=cfg.eval_batch_size, device=device)
        result.evals.append({"step": step, "valid_nll": nll, "valid_ppl": math.exp(nll)})

    if start == 0:
        evaluate(0)
    # plain lines, not a tqdm bar: in a Snakemake log file the bar's carriage-return redraws
    # pile up into one line (and tqdm was only a transitive, unpinned dependency)
    bar = Progress("lm train", cfg.max_steps, tokens_per_step, start_step=start, enabled=progress)
    segment = _Segment(result, device, tokens_per_step)
    segment.begin()

    for step in range(start, cfg.max_steps):
        idx = batch_indices(step, train_blocks.shape[0], cfg.batch_size, seed)
        batch = train_blocks[idx].to(device, non_blocking=True)
        lr = optimizer.param_groups[0]["lr"]
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        segment.add(step + 1, lr, loss.detach().float(), grad_norm.detach().float())
        done = step + 1
        bar.update(done, result.losses[-1] if result.losses else None)
        due_eval = done % cfg.eval_every == 0 or done == cfg.max_steps
        due_ckpt = checkpoint_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.max_steps)
        if due_eval or due_ckpt or done % cfg.log_every == 0:
            segment.flush()
            if due_eval:
                evaluate(done)
                model.train()
            if due_ckpt and checkpoint_dir is not None:
                result.checkpoints_written += 1
                _save_checkpoint(
                    checkpoint_dir, done, fp, model, optimizer, scheduler, result, cfg.keep_checkpoints
                )
            segment.begin()
        if on_step is not None:
            on_step(done)
    segment.flush()
    return result


# --- the pipeline step --------------------------------------------------------------------


def tokenizer_dir(path: Path) -> Path:
    """The tokenizers rule declares ``.../tokenizer.json``; its ``hf/`` folder sits beside it."""
    path = Path(path)
    if path.is_file() and (path.parent / "hf").is_dir():
        return path.parent / "hf"
    return path


def write_curve(path: Path, result: TrainResult) -> None:
    """One CSV row per optimizer step; the validation columns are filled at evaluation steps."""
    evals = {int(e["step"]): e for e in result.evals}
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "lr", "train_loss", "grad_norm", "valid_loss", "valid_ppl"])
        if 0 in evals:
            writer.writerow([0, "", "", "", evals[0]["valid_nll"], evals[0]["valid_ppl"]])
        for step, lr, loss, gn in zip(
            result.steps, result.lrs, result.losses, result.grad_norms, strict=True
        ):
            e = evals.get(step, {})
            writer.writerow([step, lr, loss, gn, e.get("valid_nll", ""), e.get("valid_ppl", "")])


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """``whylab lm_train``: inputs tokenizer, corpus; outputs model, metrics, curve, checkpoints."""
    wall_start = time.perf_counter()
    set_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = TrainConfig.from_settings(settings.get("training"))
    languages = list(settings.get("train_languages", ["en"]))
    seeds = settings.get("seeds") or [0]
    seed = int(cfg.seed if cfg.seed is not None else seeds[0])
    device = resolve_device(settings.get("device", "auto"))
    precision = resolve_precision(cfg.precision, device)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    tokenizer = load_tokenizer(tokenizer_dir(inputs["tokenizer"]))
    corpus_root = Path(inputs["corpus"])
    train_blocks = token_blocks(
        corpus_files(corpus_root, languages, "train", key="lm.train_languages"),
        tokenizer,
        cfg.block_size,
        cfg.max_train_blocks,
    )
    valid_blocks = token_blocks(
        corpus_files(corpus_root, languages, "valid", key="lm.train_languages"),
        tokenizer,
        cfg.block_size,
        cfg.eval_blocks,
    )
    model_cfg = dict(settings.get("model") or {})
    if cfg.block_size > int(model_cfg.get("max_position_embeddings") or 256):
        raise InputError(
            f"lm.training.block_size ({cfg.block_size}) exceeds lm.model.max_position_embeddings"
        )

    set_seed(seed)
    model = build_model(
        model_cfg,
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    fp = fingerprint(
        {
            "model": model_cfg,
            "training": cfg.__dict__,
            "seed": seed,
            "precision": precision,
            "vocab": len(tokenizer),
        },
        train_blocks,
        valid_blocks,
    )
    ckpt_dir = Path(outputs["checkpoints"]) if "checkpoints" in outputs else None
    result = train_model(
        model,
        train_blocks,
        valid_blocks,
        cfg,
        seed=seed,
        device=device,
        precision=precision,
        checkpoint_dir=ckpt_dir,
        fp=fp,
    )

    model = model.cpu().float().eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_path(outputs["model"]) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    write_curve(Path(outputs["curve"]), result)

    tokens_per_s = result.tokens_trained / result.train_seconds if result.train_seconds else None
    peak, peak_note = peak_flops(device, precision)
    fpt = flops_per_token(model, cfg.block_size)
    mfu = tokens_per_s * fpt / peak if (peak and tokens_per_s) else None
    first, last = result.evals[0] if result.evals else None, result.evals[-1]
    tail = result.losses[-max(1, min(len(result.losses), cfg.log_every)) :]
    metrics = {
        "settings": settings,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "precision": precision,
        "threads": torch.get_num_threads(),
        "seed": seed,
        "train_languages": languages,
        "vocab_size": len(tokenizer),
        "params_total": count_parameters(model),
        "params_non_embedding": count_parameters(model, non_embedding=True),
        "train_blocks": int(train_blocks.shape[0]),
        "valid_blocks": int(min(valid_blocks.shape[0], cfg.eval_blocks)),
        "block_size": cfg.block_size,
        "batch_size": cfg.batch_size,
        "steps": cfg.max_steps,
        "epochs": cfg.max_steps * cfg.batch_size / train_blocks.shape[0],
        "tokens_trained": result.tokens_trained,
        "train_seconds": result.train_seconds,
        "tokens_per_s": tokens_per_s,
        "flops_per_token": fpt,
        "peak_flops": peak,
        "mfu": mfu,
        "mfu_note": peak_note,
        "initial_valid_ppl": first["valid_ppl"] if first else None,
        "final_train_loss": sum(tail) / len(tail) if tail else None,
        "final_valid_nll": last["valid_nll"],
        "final_valid_ppl": last["valid_ppl"],
        "resumed_from_step": result.resumed_from_step,
        "checkpoints_written": result.checkpoints_written,
        "evals": result.evals,
        "loss_curve": [
            {"step": s, "lr": lr, "train_loss": loss}
            for s, lr, loss in zip(result.steps, result.lrs, result.losses, strict=True)
        ],
        "wall_seconds": time.perf_counter() - wall_start,
    }
    write_json(outputs["metrics"], metrics)
    if ckpt_dir is not None and ckpt_dir.is_dir():
        shutil.rmtree(ckpt_dir)  # finished: the saved model replaces them
    print(
        f"trained {cfg.max_steps} steps on {device} ({precision}) in {result.train_seconds:.1f} s: "
        f"{tokens_per_s:,.0f} tokens/s, valid ppl {last['valid_ppl']:.2f}"
        + (f", MFU {mfu:.1%}" if mfu is not None else ""),
        file=sys.stderr,
    )
