"""C01's figure and tables, drawn from the measurements."""

from __future__ import annotations

from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from whylab import plotting
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.results import Evidence, Table


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    rows: list[dict[str, Any]] = measured.whole["rows"]
    fig, ax = plt.subplots(figsize=(8, 4))
    long = pd.DataFrame(rows).melt(
        id_vars=["algorithm", "language"],
        value_vars=["exact_round_trip", "round_trip_ignoring_spaces"],
        var_name="check",
        value_name="share",
    )
    sns.barplot(long, x="algorithm", y="share", hue="check", errorbar=("pi", 100), ax=ax)
    ax.set_xlabel("tokenization algorithm")
    ax.set_ylabel("share of validation paragraphs (fraction)")
    ax.set_ylim(0, 1.05)
    figure = plotting.save_figure(fig, ctx.outdir, "C01.figure.round_trip")
    return Evidence(
        method=Msg("C01.method"),
        metrics=metrics,
        tables=[
            Table.from_records("samples", Msg("C01.table.samples.caption"), measured.whole["samples"]),
            Table.from_records("round_trip", Msg("C01.table.round_trip.caption"), rows),
        ],
        figures=[figure],
    )
