"""Train until the comparison stops moving (issue 20): one learning-rate grid and one selection
rule for every arm, and a stability rule on the paired difference, not on one arm's training loss.

- ``choose_lr``: every arm is trained at every learning rate of the same grid, on the first seed
  only, and keeps the rate with the lowest loss on a held-out *tuning* split (text the reported
  evaluation never sees); that rate is then fixed for every paired seed.
- ``difference_curve`` / ``settle``: the mean over seeds of the paired difference a − b at each
  evaluation step; the comparison has stopped moving when, over the last ``window`` evaluations,
  that mean changed by less than the margin (max − min < margin). Otherwise the part is limited.

Pure: numbers in, numbers out (no torch), so measuring and deciding can both import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def choose_lr(scores: Mapping[float, float | None]) -> float | None:
    """The learning rate with the lowest finite held-out loss (ties: the smaller rate); None when
    every rate diverged."""
    finite = [(v, float(lr)) for lr, s in scores.items() if (v := _finite(s)) is not None]
    return min(finite)[1] if finite else None


def tune(
    arms: Sequence[str], grid: Sequence[float], run: Callable[[str, float], tuple[float | None, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every arm at every rate of ``grid``: ``run(arm, lr) -> (tuning-split loss, the run)``.

    Returns (per arm: the grid's tuning losses, the chosen rate; per arm: the chosen rate's run,
    which a caller may reuse as the first seed's run, since the choice read only the tuning split).
    """
    record: dict[str, dict[str, Any]] = {}
    chosen_runs: dict[str, Any] = {}
    for arm in arms:
        runs = {float(lr): run(arm, float(lr)) for lr in grid}
        scores = {lr: score for lr, (score, _) in runs.items()}
        best = choose_lr(scores)
        record[arm] = {
            "grid": [float(lr) for lr in grid],
            "tune_loss": [_finite(scores[float(lr)]) for lr in grid],
            "lr": best,
        }
        chosen_runs[arm] = None if best is None else runs[best][1]
    return record, chosen_runs


def difference_curve(
    curves_a: Sequence[Mapping[str, Any]], curves_b: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Mean over seeds of the paired evaluation-loss difference a − b at each evaluation step
    (curves: ``{"eval_steps": [...], "eval_loss": [...]}``, one per seed, paired by position).
    A seed whose curves differ in length or hold a non-finite loss is left out."""
    diffs: list[list[float]] = []
    steps: list[int] = []
    for ca, cb in zip(curves_a, curves_b, strict=True):
        la, lb = ca.get("eval_loss") or [], cb.get("eval_loss") or []
        if not la or len(la) != len(lb) or any(_finite(v) is None for v in (*la, *lb)):
            continue
        if steps and list(ca["eval_steps"]) != steps:
            continue
        steps = [int(s) for s in ca["eval_steps"]]
        diffs.append([float(a) - float(b) for a, b in zip(la, lb, strict=True)])
    mean = [sum(col) / len(col) for col in zip(*diffs, strict=True)] if diffs else []
    return {"steps": steps, "mean": mean, "n": len(diffs)}


def settle(curve: Mapping[str, Any], margin: float, window: int) -> dict[str, Any]:
    """Whether the mean paired difference stopped moving: over the last ``window`` evaluations
    (at least 2) it spans less than ``margin`` (max − min). ``span``: that range; ``from_step`` /
    ``to_step``: the evaluations it covers; ``first`` / ``end``: the difference there."""
    window = max(2, int(window))
    mean, steps = list(curve.get("mean") or []), list(curve.get("steps") or [])
    if len(mean) < window:
        return {
            "settled": False,
            "span": None,
            "from_step": None,
            "to_step": None,
            "first": None,
            "end": None,
        }
    tail = mean[-window:]
    span = max(tail) - min(tail)
    return {
        "settled": bool(span < margin),
        "span": span,
        "from_step": int(steps[-window]),
        "to_step": int(steps[-1]),
        "first": tail[0],
        "end": tail[-1],
    }
