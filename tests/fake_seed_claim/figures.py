"""One figure: the scaled mean per seed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib import pyplot as plt

from whylab import plotting
from whylab.concepts.context import ConceptContext, Measured
from whylab.results import Evidence


def draw(ctx: ConceptContext, measured: Measured, metrics: Mapping[str, Any]) -> Evidence:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(metrics["seeds_seen"], metrics["means"], marker="o")
    ax.set(xlabel="seed", ylabel="scaled mean (unitless)")
    figure = plotting.save(fig, ctx.outdir, "means", "Per-seed means", "Mean of four draws per seed.")
    return Evidence(
        method="four standard-normal draws per seed",
        metrics=dict(metrics),
        seeds=list(measured.seeds),
        figures=[figure],
    )
