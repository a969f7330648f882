"""Verdicts: computed from measured numbers, never typed in.

Each concept module has a ``verdict(metrics) -> Verdict`` function; the helpers here keep the
statistics they share honest (``../shared/VALIDITY.md``):

- ``paired_test`` compares two arms on per-seed differences (the same seed gives both arms the
  same initial weights and batches), ``effect`` counts a difference only when it clears both the
  noise (p < alpha) and a minimum size that matters, ``equivalent`` says the difference is smaller
  than that size with 95% confidence (a legitimate outcome too);
- ``holm`` controls the family error when a verdict scans several cells.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from whylab.messages import Msg

if TYPE_CHECKING:
    from whylab.parts import PartVerdict


class Label(StrEnum):
    SUPPORTED = "supported"
    PARTLY = "partly supported"
    NOT_SUPPORTED = "not supported"
    INCONCLUSIVE = "inconclusive"


class Kind(StrEnum):
    """What kind of check a verdict rests on (VALIDITY.md, rule 1)."""

    EXPERIMENT = "experiment"  # the outcome depends on data or training; it could come out either way
    DEFINITION = "definition check"  # what a thing *is*, checked on implementations others wrote


@dataclass(frozen=True)
class Verdict:
    """A label and why, plus what the decision rested on.

    ``primary`` names the one pre-registered primary comparison in plain words; ``limited`` lists
    the parts of the claim this run could not judge (inconclusive parts: they never lower a label);
    ``takeaway`` is one plain sentence for a learner and ``correction`` the corrected statement
    where the notes are partly or not supported. Each text is a catalogue message
    (:class:`whylab.messages.Msg`, a ``str`` holding its English), so the report can show it in
    every language; ``branch`` names the catalogue entry of the verdict branch that chose the label.
    ``parts`` judges the notes' sentence assertion by assertion (:mod:`whylab.parts`): each with
    this run's label and power, the literature's label, and what to believe.
    """

    label: Label
    reason: str
    kind: Kind = Kind.EXPERIMENT
    primary: str = ""
    limited: tuple[str, ...] = field(default_factory=tuple)
    takeaway: str = ""
    correction: str = ""
    branch: str = ""
    parts: tuple[PartVerdict, ...] = ()

    TEXTS = ("reason", "primary", "limited", "takeaway", "correction")

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "label": str(self.label),
            "reason": str(self.reason),
            "kind": str(self.kind),
            "primary": str(self.primary),
            "limited": [str(x) for x in self.limited],
            "takeaway": str(self.takeaway),
            "correction": str(self.correction),
        }
        if self.branch:
            out["branch"] = self.branch
        if self.parts:
            from whylab.parts import believed

            belief = believed(self.parts)
            out["parts"] = [part.to_dict() for part in self.parts]
            out["believe"] = {"label": str(belief.label), "source": str(belief.source)}
        from whylab.results import with_messages

        return out | with_messages(**{name: getattr(self, name) for name in self.TEXTS})


@dataclass
class VerdictOf:
    """Builds a claim's verdicts with its kind and primary comparison fixed, and the parts this run
    could not judge read from ``limited`` when a verdict is made (a branch may append to it first)."""

    kind: Kind
    primary: str
    limited: list[str] = field(default_factory=list)
    parts: list[PartVerdict] = field(default_factory=list)

    def branch(self, label: Label, key: str, /, **params: Any) -> Verdict:
        """The verdict of the catalogue's branch ``key`` (e.g. ``C05.verdict.scaled``): its
        ``reason`` and ``takeaway`` and, for a partly or not supported label, its ``correction``,
        each formatted with ``params``. A branch missing one of these raises ``KeyError``, so a
        test that reaches a branch checks that it yields them."""
        correction = (
            Msg(f"{key}.correction", **params) if label in (Label.PARTLY, Label.NOT_SUPPORTED) else ""
        )
        return Verdict(
            label,
            Msg(f"{key}.reason", **params),
            self.kind,
            self.primary,
            tuple(self.limited),
            Msg(f"{key}.takeaway", **params),
            correction,
            branch=key,
            parts=tuple(self.parts),
        )


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


# --- paired comparisons -------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_critical(df: int, alpha: float = 0.05) -> float:
    """The t with two-sided p = alpha (bisection on ``t_two_sided_p``)."""
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > alpha:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_two_sided_p(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class PairedTest:
    """Paired Student t-test on per-seed differences a_i - b_i (two-sided) and the 95% CI of
    their mean. With fewer than two pairs there is no spread: p and the CI are nan."""

    n: int
    mean_diff: float
    sd_diff: float
    t: float
    p: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "mean_diff": self.mean_diff,
            "sd_diff": self.sd_diff,
            "t": self.t,
            "p": self.p,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Compare arm ``a`` with arm ``b`` seed by seed (``a[i]`` and ``b[i]`` share seed i)."""
    if len(a) != len(b):
        raise ValueError(f"paired_test needs one value per seed in each arm, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("paired_test needs at least one pair")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return PairedTest(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan)
    sd = statistics.stdev(diffs)
    se = sd / math.sqrt(n)
    if se == 0.0:
        # every seed moved by exactly the same amount: no noise at all
        t = math.copysign(math.inf, mean) if mean != 0.0 else 0.0
        p = 0.0 if mean != 0.0 else 1.0
        return PairedTest(n, mean, sd, t, p, mean, mean)
    t = mean / se
    half = t_critical(n - 1) * se
    return PairedTest(n, mean, sd, t, t_two_sided_p(t, n - 1), mean - half, mean + half)


def effect(test: PairedTest, min_effect: float, alpha: float = 0.05) -> int:
    """+1 when a - b is above ``+min_effect`` and clear of the noise (p < alpha), -1 when it is
    below ``-min_effect`` and clear, 0 when the data do not show a difference that matters."""
    if min_effect < 0:
        raise ValueError("min_effect is a size: it must be >= 0")
    if not (test.p < alpha):  # nan (one seed) is never clear
        return 0
    if test.mean_diff > min_effect:
        return 1
    if test.mean_diff < -min_effect:
        return -1
    return 0


def equivalent(test: PairedTest, min_effect: float) -> bool:
    """The 95% CI of the mean difference lies inside (-min_effect, +min_effect): any difference
    is smaller than the size that matters, with 95% confidence."""
    return bool(-min_effect < test.ci_low and test.ci_high < min_effect)


def holm(pvalues: Mapping[str, float], alpha: float = 0.05) -> dict[str, bool]:
    """Holm-Bonferroni: which of the named hypotheses are rejected at family-wise level ``alpha``.
    A nan p-value is never rejected (and stops the step-down, as a p of 1 would)."""
    order = sorted(pvalues, key=lambda k: math.inf if math.isnan(pvalues[k]) else pvalues[k])
    m = len(order)
    rejected = dict.fromkeys(pvalues, False)
    for i, key in enumerate(order):
        p = pvalues[key]
        if math.isnan(p) or p > alpha / (m - i):
            break
        rejected[key] = True
    return rejected
