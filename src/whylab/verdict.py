"""Verdicts: computed from measured numbers, never typed in.

Each concept module has a ``verdict(metrics) -> Verdict`` function; the
helpers here keep the statistics they share honest (mean and spread over
seeds, a difference counts only when it is clear of the noise).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum


class Label(StrEnum):
    SUPPORTED = "supported"
    PARTLY = "partly supported"
    NOT_SUPPORTED = "not supported"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Verdict:
    label: Label
    reason: str

    def to_dict(self) -> dict[str, str]:
        d = asdict(self)
        d["label"] = str(self.label)
        return d


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of one quantity over seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        vals = [float(v) for v in values]
        if not vals:
            raise ValueError("Spread.of needs at least one value")
        std = statistics.stdev(vals) if len(vals) > 1 else math.nan
        return cls(mean=statistics.fmean(vals), std=std, n=len(vals))

    @property
    def sem(self) -> float:
        return self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (n={self.n})"


def clearly_less(a: Sequence[float], b: Sequence[float], z: float = 2.0) -> bool:
    """True when mean(a) < mean(b) by more than ``z`` standard errors of the difference.

    A single run (n=1 on either side) has no spread and is never "clear".
    """
    sa, sb = Spread.of(a), Spread.of(b)
    if sa.n < 2 or sb.n < 2:
        return False
    se = math.sqrt(sa.sem**2 + sb.sem**2)
    if se == 0.0:
        return sa.mean < sb.mean
    return (sb.mean - sa.mean) > z * se


def relative_change(new: float, reference: float) -> float:
    """(new - reference) / |reference|; nan when the reference is zero."""
    if reference == 0:
        return math.nan
    return (new - reference) / abs(reference)
