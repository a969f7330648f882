"""What the norm and feed-forward claims (C07, C08, C09) share: building bench-model variants
from the ``mechanisms`` settings, training one variant over several seeds, summarising a
quantity over seeds, and the seed-band figure of training curves.

Each of the three experiments compares variants of the same bench transformer (norm kind,
norm position, feed-forward shape) trained the same way; keeping the plumbing here lets each
concept module show only what is specific to its claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from whylab.results import FigureRef
from whylab.verdict import Spread


def model_config(settings: Mapping[str, Any], vocab_size: int, **overrides: Any) -> Any:
    """A BenchConfig from the ``model`` section of the settings plus this variant's overrides."""
    from whylab.bench.train import bench_config

    return bench_config(settings.get("model", {}), vocab_size=vocab_size, **overrides)


def run_settings(settings: Mapping[str, Any], seed: int, **overrides: Any) -> Any:
    """TrainSettings from the ``train`` section plus overrides; an override of None keeps the shared value."""
    from whylab.bench.train import train_settings

    given = {k: v for k, v in overrides.items() if v is not None}
    return train_settings(settings.get("train", {}), **given, seed=int(seed))


def build_model(cfg: Any, seed: int, device: str) -> Any:
    """A BenchTransformer whose initial weights depend only on ``seed``, so two variants built
    with the same seed start from the same random draws where their shapes agree."""
    from whylab.bench.model import BenchTransformer

    torch.manual_seed(int(seed))
    return BenchTransformer(cfg).to(device)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and the per-seed values (JSON-able, NaN-free)."""
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "values": [None] * len(vals)}
    s = Spread.of(finite)
    return {"mean": s.mean, "std": None if math.isnan(s.std) else s.std,
            "values": [v if math.isfinite(v) else None for v in vals]}


def values(entry: Mapping[str, Any]) -> list[float]:
    """The per-seed values of a :func:`summary` (None, i.e. a failed run, dropped)."""
    return [float(v) for v in entry.get("values", []) if v is not None]


def fmt(entry: Mapping[str, Any], digits: int = 3) -> str:
    """'mean ± std' of a :func:`summary`, for a table cell or a reason."""
    if entry.get("mean") is None:
        return "n/a"
    if entry.get("std") is None:
        return f"{entry['mean']:.{digits}g}"
    return f"{entry['mean']:.{digits}g} ± {entry['std']:.{digits}g}"


def curves_frame(histories: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Long table (variant, run, step, validation loss) from TrainHistory objects per variant."""
    rows = []
    for variant, runs in histories.items():
        for i, hist in enumerate(runs):
            for step, loss in zip(hist.eval_steps, hist.eval_loss, strict=True):
                if math.isfinite(loss):
                    rows.append({"variant": variant, "run": i, "step": step, "eval_loss": float(loss)})
    return pd.DataFrame(rows, columns=["variant", "run", "step", "eval_loss"])


def plain_log_axis(ax: Any, axis: str = "y") -> None:
    """Log scale with plain tick labels ("1e-08"): the default math-text labels need a minus
    glyph that the Hangul-capable report font lacks."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_locator(LogLocator(base=10))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0e}" if v < 1e-2 or v >= 1e3 else f"{v:g}"))


def plot_curves(histories: Mapping[str, Sequence[Any]], outdir: Path, name: str, title: str,
                caption: str) -> FigureRef:
    """Validation loss vs step: the mean over seeds as a line, ±1 standard deviation as a band."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    frame = curves_frame(histories)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=frame, x="step", y="eval_loss", hue="variant", errorbar="sd", ax=ax,
                 marker="o", markersize=4)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation loss (nats/token)")
    return plotting.save(fig, outdir, name, title, caption)
