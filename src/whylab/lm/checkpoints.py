"""Checkpoints of the ``lm_train`` loop that a killed run resumes from, exactly.

A checkpoint holds the model, optimizer, scheduler, every RNG state and the history so far
(:class:`TrainResult`), as tensors and plain containers only (it loads with ``weights_only``).
It carries a fingerprint of the settings and the data, and is only resumed by a run with the
same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from whylab.files import atomic_path, write_json

CHECKPOINT_PREFIX = "ckpt-"


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


def resume(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, result: TrainResult
) -> int:
    """Load the checkpoint at ``path`` into the model, optimizer, scheduler, history and RNGs;
    return the step it was written after."""
    # tensors and plain containers only (RNG states included): no full unpickler runs on a
    # file in results/. Loaded to the CPU: RNG states must stay CPU ByteTensors;
    # load_state_dict moves the rest.
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    for key, value in ckpt["result"].items():
        setattr(result, key, value)
    _set_rng_state(ckpt["rng"])
    start = int(ckpt["step"])
    result.resumed_from_step = start
    print(f"resuming from {path} (step {start})", file=sys.stderr)
    return start
