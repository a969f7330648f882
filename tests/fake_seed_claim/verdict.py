"""The scaled mean of the draws per seed, and a verdict on their overall mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.verdict import Label, Verdict


def summarize(measured: Measured) -> dict[str, Any]:
    means = [s["mean"] * s["scale"] for s in measured.per_seed]
    return {
        "means": means,
        "seeds_seen": [s["seed"] for s in measured.per_seed],
        "overall": sum(means) / len(means),
    }


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    if abs(metrics["overall"]) < 1.0:
        return Verdict(Label.SUPPORTED, "the mean of the draws is within 1 of 0")
    return Verdict(Label.NOT_SUPPORTED, "the mean of the draws is 1 or more away from 0")
