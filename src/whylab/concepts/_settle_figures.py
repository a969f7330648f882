"""Drawing the "train until the comparison stops moving" record (``_settle``): the mean paired
difference per evaluation step with the window the stability rule read, and the learning-rate
grid every arm was tuned on. Shared by C06 and C07; the texts are the claim's catalogue keys."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.messages import Msg
from whylab.results import FigureRef, Table

STEP_AXIS = "training step (optimizer updates)"


def difference_figure(
    outdir: Path,
    key: str,
    curves: Mapping[str, Mapping[str, Any]],
    settles: Mapping[str, Mapping[str, Any]],
    ylabel: str,
    **params: object,
) -> FigureRef:
    """One line per comparison (display name -> ``difference_curve``), zero marked, the window
    each stability rule read shaded; title and caption from ``<key>.title`` / ``<key>.caption``."""
    rows = [
        {"compared arms": name, STEP_AXIS: step, ylabel: value}
        for name, c in curves.items()
        for step, value in zip(c["steps"], c["mean"], strict=True)
    ]
    fig, ax = plt.subplots(figsize=(6.8, 4.2), layout="constrained")
    if rows:
        sns.lineplot(data=pd.DataFrame(rows), x=STEP_AXIS, y=ylabel, hue="compared arms", marker="o", ax=ax)
        sns.move_legend(ax, "best", title="compared arms")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    for s in settles.values():
        if s.get("from_step") is not None:
            ax.axvspan(s["from_step"], s["to_step"], color="grey", alpha=0.12, linewidth=0)
    ax.set_xlabel(STEP_AXIS)
    ax.set_ylabel(ylabel)
    return plotting.save_figure(fig, outdir, key, **params)


def tuning_table(
    table_id: str, caption: Msg, tuning: Mapping[str, Mapping[str, Any]], names: Mapping[str, str]
) -> Table:
    """Every arm at every rate of the grid: its loss on the tuning split, the chosen rate ticked."""
    records = []
    for arm, t in tuning.items():
        for lr, loss in zip(t["grid"], t["tune_loss"], strict=True):
            records.append(
                {
                    "arm": names.get(arm, arm),
                    "peak learning rate": f"{lr:g}",
                    "tuning-split loss (nats/token)": "—" if loss is None else f"{loss:.4f}",
                    "chosen": "✓" if t["lr"] is not None and float(lr) == float(t["lr"]) else "",
                }
            )
    return Table.from_records(table_id, caption, records)
