"""C19's table, figures and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts.c19_checkpointing.verdict import chen_check
from whylab.concepts.context import ConceptContext, Measured
from whylab.memory import calculator as calc
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table

# how the peak was measured (measure.Peak.method), in words of the catalogue
MEASURE_METHODS = {
    "MemTracker (dispatch-level live tensor bytes)": "C19.measure_method.memtracker",
    "torch.cuda.max_memory_allocated": "C19.measure_method.cuda",
}


def measure_method(method: str) -> str:
    """The measuring method's name as a catalogue message (an unknown one as it is)."""
    key = MEASURE_METHODS.get(method)
    return Msg(key) if key else method


def _num(x: float | None) -> float:
    """A number of the metrics; a spread of one value (None through JSON) as NaN again."""
    return math.nan if x is None else x


def _table(rows: list[dict[str, Any]], batch: int, repeats: int) -> Table:
    return Table.from_records(
        "checkpointing",
        Msg(
            "C19.table.checkpointing.caption",
            batch=batch,
            method=measure_method(rows[0]["method"]),
            repeats=repeats,
        ),
        [
            {
                "mode": r["mode"],
                "depth": r["depth"],
                "seq": r["seq"],
                "segment (layers)": r["segment"],
                "peak (MiB)": round(r["peak_bytes"] / calc.MiB, 3),
                "above weights (MiB)": round(r["working_bytes"] / calc.MiB, 3),
                "saving (%)": round(100 * r["saving"], 1),
                "activation saving predicted (%)": round(100 * r["predicted_activation_saving"], 1),
                "activation estimate (MiB)": round(r["activation_estimate"] / calc.MiB, 3),
                "step time (ms)": f"{1e3 * _num(r['step_time_mean_s']):.1f} ± {1e3 * _num(r['step_time_std_s']):.1f}",
                "time vs none": f"{_num(r['time_ratio_mean']):.2f} ± {_num(r['time_ratio_std']):.2f}",
                "grad max rel diff": f"{r['grad_rel_max_diff']:.1e}",
            }
            for r in sorted(rows, key=lambda r: (r["depth"], r["seq"], r["mode"]))
        ],
    )


def _figures(ctx: ConceptContext, rows: list[dict[str, Any]]) -> list[Any]:
    frame = pd.DataFrame(
        [
            {
                "mode": r["mode"],
                "depth": r["depth"],
                "seq": r["seq"],
                "MiB": r["working_bytes"] / calc.MiB,
                "ms": 1e3 * t,
                "depth sweep": r["in_depth_sweep"],
                "seq sweep": r["in_seq_sweep"],
            }
            for r in rows
            for t in r["step_times_s"]
        ]
    )
    out = []
    for metric, ylabel, name, title, caption in (
        (
            "MiB",
            "peak memory above the weights (MiB)",
            "memory",
            Msg("C19.figure.checkpointing_memory.title"),
            Msg("C19.figure.checkpointing_memory.caption"),
        ),
        (
            "ms",
            "forward + backward time (ms)",
            "time",
            Msg("C19.figure.checkpointing_time.title"),
            Msg("C19.figure.checkpointing_time.caption"),
        ),
    ):
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4))
        sns.lineplot(
            frame[frame["depth sweep"]],
            x="depth",
            y=metric,
            hue="mode",
            marker="o",
            ax=axes[0],
            errorbar="sd",
        )
        axes[0].set_xlabel("decoder layers (count)")
        axes[0].set_ylabel(ylabel)
        sns.lineplot(
            frame[frame["seq sweep"]], x="seq", y=metric, hue="mode", marker="o", ax=axes[1], errorbar="sd"
        )
        if axes[0].get_legend() is not None:
            axes[0].get_legend().remove()  # one legend for both panels, outside the data
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
        fig.subplots_adjust(right=0.85, wspace=0.3)
        axes[1].set_xlabel("sequence length (tokens)")
        axes[1].set_ylabel(ylabel)
        out.append(plotting.save(fig, ctx.outdir, f"checkpointing_{name}", title, caption))
    return out


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    s = measured.settings
    rows: list[dict[str, Any]] = metrics["rows"]
    _chen, note = chen_check(rows, sorted(s["depths"]))
    literature = [
        LiteratureCheck(
            "Chen et al. 2016, 'Training Deep Nets with Sublinear Memory Cost'",
            Msg("C19.literature.chen.finding"),
            metrics["chen_agrees"],
            note,
        )
    ]
    return Evidence(
        method=Msg("C19.method"),
        metrics=metrics,
        seeds=measured.seeds[:1],
        tables=[_table(rows, s["batch_size"], int(s["repeats"]))],
        figures=_figures(ctx, rows),
        literature=literature,
    )
