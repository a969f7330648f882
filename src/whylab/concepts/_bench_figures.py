"""The figures the bench-model claims share: training curves with a seed band, and the query's
attention rows as a heatmap. Drawn from stored measurements (see :func:`curve`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from whylab.results import FigureRef


@dataclass
class Curve:
    """A stored evaluation curve, shaped like a TrainHistory for :func:`plot_curves`."""

    eval_steps: list[int]
    eval_loss: list[float]


def curve(d: Mapping[str, Any]) -> Curve:
    return Curve(list(d["eval_steps"]), [math.nan if v is None else float(v) for v in d["eval_loss"]])


def curves_frame(histories: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Long table (variant, run, step, validation loss) from TrainHistory objects per variant;
    non-finite losses (a run that blew up) are left out."""
    rows = []
    for variant, runs in histories.items():
        for i, hist in enumerate(runs):
            for step, loss in zip(hist.eval_steps, hist.eval_loss, strict=True):
                if math.isfinite(loss):
                    rows.append({"variant": variant, "run": i, "step": step, "eval_loss": float(loss)})
    return pd.DataFrame(rows, columns=["variant", "run", "step", "eval_loss"])


def plot_curves(
    histories: Mapping[str, Sequence[Any]], outdir: Path, name: str, title: str, caption: str
) -> FigureRef:
    """Validation loss vs step: the mean over seeds as a line, ±1 standard deviation as a band."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    frame = curves_frame(histories)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(
        data=frame, x="step", y="eval_loss", hue="variant", errorbar="sd", ax=ax, marker="o", markersize=4
    )
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation loss (nats/token)")
    return plotting.save(fig, outdir, name, title, caption)


def attention_rows_figure(
    panels: Mapping[str, tuple[Any, Sequence[int]]],
    outdir: Path,
    name: str,
    title: str,
    caption: str,
    xlabel: str,
) -> FigureRef:
    """One heatmap per panel (titled by its key when there are several): row i is example i's
    query attention over key positions, with a red box on the position it should find."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    n_rows = max(len(rows) for rows, _ in panels.values())
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 0.45 * n_rows + 1.8), squeeze=False, layout="constrained"
    )
    for k, (ax, (label, (rows, positions))) in enumerate(zip(axes[0], panels.items(), strict=True)):
        sns.heatmap(
            rows,
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="viridis",
            cbar=k == len(panels) - 1,
            cbar_kws={"label": "attention weight (probability)"},
        )
        for i, p in enumerate(positions):
            ax.add_patch(plt.Rectangle((p, i), 1, 1, fill=False, edgecolor="red", linewidth=2))
        if len(panels) > 1:
            ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("example sequence (index)")
    return plotting.save(fig, outdir, name, title, caption)


__all__ = ["Curve", "attention_rows_figure", "curve", "curves_frame", "plot_curves"]
