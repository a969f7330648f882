"""The shape of the gradient norm across blocks at initialisation, compared with Xiong et al.'s
Figure 3 (Post-LN: the norm grows towards the output; Pre-LN: about the same in every block).

Pure: numbers in. A difference of two log ratios cannot say whether either placement has the
paper's shape (a Pre-LN norm falling fourfold and a U-shaped Post-LN one give a positive
difference too), so each placement's shape is judged on its own, per seed, and then compared with
the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts import _bench_stats as stats

# Xiong et al. 2020, Figure 3 (the shapes; claim.yaml records them with the source)
PAPER_SHAPE = {"post": "increasing", "pre": "flat"}


def dip(norms: Sequence[float]) -> float | None:
    """log(min(first, last) / the smallest inner block's norm): > 0 when the profile sags in the
    middle (a U), None without an inner block or with a zero norm."""
    if len(norms) < 3 or min(norms) <= 0:
        return None
    return math.log(min(norms[0], norms[-1]) / min(norms[1:-1]))


def shape_of(trend: Mapping[str, Any], sag: Mapping[str, Any]) -> str:
    """One placement's shape from its per-seed log(last/first) tested against 0 (``trend``) and
    its per-seed dip tested against 0 (``sag``), both with the floor ``min_grad_log_ratio``:
    U-shaped (a clear dip), increasing / decreasing (a clear trend), flat (the trend shown inside
    ±floor), unclear (none of these clear of the seed noise)."""
    if sag.get("effect") == 1:
        return "U-shaped"
    if trend.get("effect") == 1:
        return "increasing"
    if trend.get("effect") == -1:
        return "decreasing"
    if trend.get("equivalent"):
        return "flat"
    return "unclear"


def grad_shapes(
    trends: Mapping[str, list[float | None]], per_seed: list[dict[str, Any]], depth: str, floor: float
) -> dict[str, Any]:
    """Per placement: the per-seed trend and dip tested against zero, the shape, and the paper's."""
    out: dict[str, Any] = {}
    for pos, vals in trends.items():
        dips = [dip(r["grad_norms_at_init"][pos][depth]) for r in per_seed]
        trend = stats.paired(vals, [0.0] * len(vals), floor)
        sag = stats.paired(dips, [0.0] * len(dips), floor)
        first_last = [
            r["grad_norms_at_init"][pos][depth][-1] / r["grad_norms_at_init"][pos][depth][0]
            for r in per_seed
            if r["grad_norms_at_init"][pos][depth][0] > 0
        ]
        out[pos] = {
            "trend": trend,
            "dip": sag,
            "last_over_first": stats.summary(first_last),
            "shape": shape_of(trend, sag),
            "paper": PAPER_SHAPE[pos],
        }
    return out


def xiong_agreement(shapes: Mapping[str, Any]) -> str:
    """'agrees' (both placements have the paper's shape), 'partly' (one has), 'disagrees' (both
    judged, neither has it), 'unclear' (a placement's shape is not clear and none matches)."""
    matches = [s["shape"] == s["paper"] for s in shapes.values()]
    unclear = any(s["shape"] == "unclear" for s in shapes.values())
    if all(matches):
        return "agrees"
    if any(matches):
        return "partly"
    return "unclear" if unclear else "disagrees"
