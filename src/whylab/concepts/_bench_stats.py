"""The statistics the bench-model claims share: mean ± spread over seeds, paired comparisons of
two arms by seed (with a minimum effect), part statuses, Holm across parts. Pure: numbers in."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from whylab.files import finite
from whylab.messages import Msg
from whylab.verdict import Spread


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and the per-seed values, as JSON-able numbers for the
    metrics. A non-finite value (a run that blew up) is kept as None and left out of mean and std."""
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "values": [None] * len(vals)}
    s = Spread.of(finite)
    return {
        "mean": s.mean,
        "std": None if math.isnan(s.std) else s.std,
        "values": [v if math.isfinite(v) else None for v in vals],
    }


def values(entry: Mapping[str, Any]) -> list[float]:
    """The per-seed values of a :func:`summary` (None, i.e. a failed run, dropped)."""
    return [float(v) for v in entry.get("values", []) if v is not None]


def fmt(spread: Mapping[str, Any] | Sequence[float], digits: int = 3, notation: str = "g") -> str:
    """'mean ± std' for a table cell or a reason, of a :func:`summary` or of raw per-seed values
    (summarised first); 'n/a' when no run finished. ``notation`` is the format type: "g" counts
    significant digits, "f" digits after the point."""
    entry = spread if isinstance(spread, Mapping) else summary(spread)
    if entry.get("mean") is None:
        return "n/a"
    if entry.get("std") is None:
        return f"{entry['mean']:.{digits}{notation}}"
    return f"{entry['mean']:.{digits}{notation}} ± {entry['std']:.{digits}{notation}}"


def paired(a: Sequence[float | None], b: Sequence[float | None], min_effect: float) -> dict[str, Any]:
    """Paired test of a − b over seeds (only seeds where both are finite), with the effect
    decision at ``min_effect`` (+1 a clearly above b, −1 clearly below, 0 not clear) and whether
    the 95% CI of the difference lies inside ±min_effect (no difference that matters)."""
    from whylab.verdict import effect, equivalent, paired_test

    both = [(finite(x), finite(y)) for x, y in zip(a, b, strict=True)]
    pairs = [(x, y) for x, y in both if x is not None and y is not None]
    out: dict[str, Any] = {"n": len(pairs), "min_effect": float(min_effect)}
    if len(pairs) < 2:
        out.update(effect=0, equivalent=False, test=None)
        return out
    test = paired_test([p[0] for p in pairs], [p[1] for p in pairs])
    out.update(
        test=jsonable_test(test.to_dict()),
        effect=effect(test, min_effect),
        equivalent=equivalent(test, min_effect),
    )
    return out


def jsonable_test(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def describe(p: Mapping[str, Any], unit: str, digits: int = 3) -> Msg:
    """'Δ = +0.123 unit (95% CI +0.05 to +0.2, p = 0.01, n = 5)' for a :func:`paired` entry."""
    t = p.get("test")
    if not t:
        return Msg("common.paired.too_few", n=p.get("n", 0))
    return Msg(
        "common.paired.delta",
        mean=t["mean_diff"],
        low=t["ci_low"],
        high=t["ci_high"],
        p=t["p"],
        n=t["n"],
        digits=digits,
        unit=f" {unit}" if unit else "",
    )


def part_status(p: Mapping[str, Any], rejected: bool) -> str:
    """A verdict part from a :func:`paired` comparison a − b whose Holm decision is ``rejected``:
    'confirmed' (a clearly above b past the floor), 'contradicted' (clearly below, or a 95% CI
    inside ±floor: no difference that matters) or 'limited' (neither: this run cannot judge it;
    a limited part never lowers a label, VALIDITY.md)."""
    t = p.get("test")
    if t and rejected and t["mean_diff"] > p["min_effect"]:
        return "confirmed"
    if (t and rejected and t["mean_diff"] < -p["min_effect"]) or p.get("equivalent"):
        return "contradicted"
    return "limited"


def label_of(statuses: Sequence[str]) -> str:
    """The label from the judged parts: all confirmed → supported; all contradicted → not
    supported; a mix → partly; nothing judged → inconclusive (as the Label's value)."""
    judged = [s for s in statuses if s != "limited"]
    if not judged:
        return "inconclusive"
    if all(s == "confirmed" for s in judged):
        return "supported"
    if all(s == "contradicted" for s in judged):
        return "not supported"
    return "partly supported"


def holm_of(comparisons: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
    """Holm over the named :func:`paired` comparisons (a missing test counts as p = nan)."""
    from whylab.verdict import holm

    return holm({k: _p(c) for k, c in comparisons.items()})


def _p(c: Mapping[str, Any]) -> float:
    t = c.get("test")
    return float(t["p"]) if t and t.get("p") is not None else math.nan


__all__ = [
    "_p",
    "describe",
    "finite",
    "fmt",
    "holm_of",
    "jsonable_test",
    "label_of",
    "paired",
    "part_status",
    "summary",
    "values",
]
