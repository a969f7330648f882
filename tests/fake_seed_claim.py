"""A small claim module in the per-seed form, for the runner's and the DAG's tests.

The tests register it under a real claim id (the runner needs the claim's text): in-process
by patching ``whylab.concepts.REGISTRY``, in a workflow copy by writing it over that claim's
module file. ``run_seed`` draws from torch's seeded generator, so each seed gives its own,
repeatable numbers; ``combine`` draws one figure; ``verdict`` decides from the metrics alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from matplotlib import pyplot as plt

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.results import Evidence
from whylab.verdict import Label, Verdict

CLAIM_ID = "C08"


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    draw = torch.randn(4)
    return {
        "seed": seed,
        "draw": draw.tolist(),
        "mean": float(draw.mean()),
        "scale": float(ctx.settings.get("scale", 1.0)),
    }


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    means = [s["mean"] * s["scale"] for s in per_seed]
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([s["seed"] for s in per_seed], means, marker="o")
    ax.set(xlabel="seed", ylabel="scaled mean (unitless)")
    figure = plotting.save(fig, ctx.outdir, "means", "Per-seed means", "Mean of four draws per seed.")
    return Evidence(
        method="four standard-normal draws per seed",
        metrics={
            "means": means,
            "seeds_seen": [s["seed"] for s in per_seed],
            "overall": sum(means) / len(means),
        },
        seeds=[s["seed"] for s in per_seed],
        figures=[figure],
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    if abs(metrics["overall"]) < 1.0:
        return Verdict(Label.SUPPORTED, "the mean of the draws is within 1 of 0")
    return Verdict(Label.NOT_SUPPORTED, "the mean of the draws is 1 or more away from 0")
