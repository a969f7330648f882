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
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from whylab.errors import InputError
from whylab.files import atomic_path, write_json
from whylab.lm.data import corpus_files, load_tokenizer, token_blocks
from whylab.lm.evaluate import nll_per_token
from whylab.lm.model import build_model, count_parameters
from whylab.progress import Progress
from whylab.runtime import resolve_device, set_seed, set_threads

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

# Peak dense tensor-core FLOP/s by device name (vendor datasheets, without sparsity):
# (bf16/fp16, tf32). The first substring that occurs in torch's device name wins,
# so the more specific names come first.
PEAK_FLOPS: list[tuple[str, float, float]] = [
    ("H100 PCIe", 756e12, 378e12),
    ("H100 NVL", 835e12, 418e12),
    ("GH200", 989e12, 495e12),
    ("H200", 989e12, 495e12),
    ("H100", 989e12, 495e12),
    ("A100", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("A10", 125e12, 62.5e12),
]

CHECKPOINT_PREFIX = "ckpt-"


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


def resolve_precision(setting: str, device: str) -> str:
    """``auto`` means bf16 autocast on a CUDA device that supports it, else fp32."""
    if setting == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    return setting


def peak_flops(device: str, precision: str) -> tuple[float | None, str]:
    """The device's peak FLOP/s for ``precision`` and a note saying where it came from."""
    if device != "cuda":
        return None, "MFU is reported on GPUs only"
    name = torch.cuda.get_device_name()
    for key, bf16, tf32 in PEAK_FLOPS:
        if key in name:
            value = bf16 if precision == "bf16" else tf32
            basis = "bf16 dense" if precision == "bf16" else "tf32 dense"
            return value, f"{name}: {value / 1e12:.0f} TFLOP/s {basis} peak (datasheet table)"
    return None, f"{name}: peak FLOP/s unknown (not in whylab.lm.train.PEAK_FLOPS), MFU not computed"


def flops_per_token(model: torch.nn.Module, block_size: int) -> float:
    """Training FLOPs per token: 6·N plus the attention term 12·L·d·T (PaLM, app. B).

    N counts every weight that multiplies activations (the embedding lookup is
    left out, the output head is in).
    """
    cfg: Any = model.config  # a transformers config: its fields are set at run time
    n = count_parameters(model, non_embedding=True)
    return 6.0 * n + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * block_size


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run measured."""

    steps: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    tokens_trained: int = 0
    resumed_from_step: int | None = None
    checkpoints_written: int = 0

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def fingerprint(payload: Mapping[str, Any], *tensors: torch.Tensor) -> str:
    """A hash of the settings and the data a checkpoint belongs to."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    for tensor in tensors:
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain lists, so the checkpoint loads with ``weights_only``."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002 -- the global RNG set_seed seeds
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))  # noqa: NPY002 -- restores the global RNG on resume
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(folder: Path | None, fp: str) -> Path | None:
    """The newest checkpoint in ``folder`` written with fingerprint ``fp`` (or None)."""
    if folder is None or not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"{CHECKPOINT_PREFIX}*.pt"), reverse=True):
        meta = path.with_suffix(".json")
        if meta.is_file() and json.loads(meta.read_text()).get("fingerprint") == fp:
            return path
    return None


def _save_checkpoint(
    folder: Path,
    step: int,
    fp: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    result: TrainResult,
    keep: int,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CHECKPOINT_PREFIX}{step:07d}.pt"
    with atomic_path(path) as tmp:
        torch.save(
            {
                "step": step,
                "fingerprint": fp,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "result": result.state(),
            },
            tmp,
        )
    # the small JSON beside it is written last: a checkpoint counts only once both exist
    write_json(path.with_suffix(".json"), {"step": step, "fingerprint": fp})
    old = sorted(folder.glob(f"{CHECKPOINT_PREFIX}*.pt"))[:-keep]
    for stale in old:
        stale.with_suffix(".json").unlink(missing_ok=True)
        stale.unlink(missing_ok=True)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on the matrices only (not on norms), as in GPT-style training."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), eps=1e-8)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


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
        # tensors and plain containers only (RNG states included): no full unpickler runs on a
        # file in results/. Loaded to the CPU: RNG states must stay CPU ByteTensors;
        # load_state_dict moves the rest.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        for key, value in ckpt["result"].items():
            setattr(result, key, value)
        _set_rng_state(ckpt["rng"])
        start = int(ckpt["step"])
        result.resumed_from_step = start
        print(f"resuming from {ckpt_path} (step {start})", file=sys.stderr)

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
    pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
    _sync(device)
    seg_start, seg_steps = time.perf_counter(), 0

    def flush() -> None:
        """Read the queued losses (one device sync) and close the timing segment."""
        nonlocal seg_steps
        if pending:
            values = torch.stack([torch.stack([loss, gn]) for _, _, loss, gn in pending]).tolist()
            for (step, lr, _, _), (loss, gn) in zip(pending, values, strict=True):
                result.steps.append(step)
                result.lrs.append(lr)
                result.losses.append(loss)
                result.grad_norms.append(gn)
            pending.clear()
        _sync(device)
        elapsed = time.perf_counter() - seg_start
        result.train_seconds += elapsed
        result.tokens_trained += seg_steps * tokens_per_step
        seg_steps = 0

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
        pending.append((step + 1, lr, loss.detach().float(), grad_norm.detach().float()))
        seg_steps += 1
        done = step + 1
        bar.update(done, result.losses[-1] if result.losses else None)
        due_eval = done % cfg.eval_every == 0 or done == cfg.max_steps
        due_ckpt = checkpoint_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.max_steps)
        if due_eval or due_ckpt or done % cfg.log_every == 0:
            flush()
            if due_eval:
                evaluate(done)
                model.train()
            if due_ckpt and checkpoint_dir is not None:
                result.checkpoints_written += 1
                _save_checkpoint(
                    checkpoint_dir, done, fp, model, optimizer, scheduler, result, cfg.keep_checkpoints
                )
            _sync(device)
            seg_start = time.perf_counter()
        if on_step is not None:
            on_step(done)
    flush()
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
