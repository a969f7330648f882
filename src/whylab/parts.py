"""The notes' sentence judged part by part: this run's answer with its power, the field's answer,
and what to believe (``../shared/VALIDITY.md`` sections 7-9).

A sentence of the notes often asserts several things (C05: divide by the square root of the
*embedding* dimension, *because* large variance makes gradients vanish). Each assertion is a
:class:`PartVerdict`:

- ``run``: what this run found for it (a :class:`~whylab.verdict.Label`), with its reason and,
  for an experiment, its :class:`Power` (the smallest effect the run could have detected, beside
  the effect the claim or the literature predicts). A run that could not have seen the effect is
  *limited* (its label is inconclusive), never a lower label.
- ``field``: what the published numbers say (:class:`FieldAnswer`), computed from numbers the
  claim records with their source (:class:`Published`), never a typed label.
- ``believe``: by the rule of :func:`what_to_believe`: where both are decisive and agree, that
  label; where the run is limited, the literature's, marked as coming from it; where both are
  decisive and disagree, the run's, with the disagreement named.

The claim's overall "what to believe" label combines its parts by :func:`combine`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from whylab.messages import Msg
from whylab.verdict import Kind, Label, t_critical

DECISIVE = (Label.SUPPORTED, Label.PARTLY, Label.NOT_SUPPORTED)


class Source(StrEnum):
    """Where a part's "what to believe" label comes from."""

    BOTH = "run and literature agree"
    RUN = "this run"  # no published number to hold it against
    LITERATURE = "the literature"  # this run was limited
    DISAGREE = "this run, against the literature"  # both decisive, and they differ
    NEITHER = "neither"  # the run was limited and no published number decides it


@dataclass(frozen=True)
class Power:
    """What an experiment part could have detected.

    ``detectable`` is the smallest true effect (in ``unit``) that a two-sided paired test at
    alpha = 0.05 over ``n`` seeds would find with 80% power, ``(t_0.975 + t_0.8) * sd / sqrt(n)``
    with ``n - 1`` degrees of freedom; ``predicted`` the effect the claim or the literature
    predicts, in the same unit (None where nobody predicts a size). Zero spread (every seed the
    same, e.g. a ceiling) is a limit, not certainty.
    """

    detectable: float
    unit: str
    n: int
    sd: float
    predicted: float | None = None

    @classmethod
    def paired(cls, sd: float, n: int, unit: str, predicted: float | None = None) -> Power:
        """The detectable effect of a paired comparison whose per-seed differences have ``sd``."""
        if n < 2 or not math.isfinite(sd) or sd == 0.0:
            return cls(math.inf, unit, n, sd, predicted)
        df = n - 1
        detectable = (t_critical(df, 0.05) + t_critical(df, 0.4)) * sd / math.sqrt(n)
        return cls(detectable, unit, n, sd, predicted)

    @property
    def zero_spread(self) -> bool:
        return self.n >= 2 and self.sd == 0.0

    @property
    def limited(self) -> bool:
        """The run could not have shown the effect: too few seeds, no spread to judge by, or a
        detectable effect larger than the one predicted."""
        if self.n < 2 or self.zero_spread or not math.isfinite(self.detectable):
            return True
        return self.predicted is not None and self.detectable > abs(self.predicted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detectable": None if not math.isfinite(self.detectable) else self.detectable,
            "unit": self.unit,
            "n": self.n,
            "sd": None if not math.isfinite(self.sd) else self.sd,
            "predicted": self.predicted,
            "zero_spread": self.zero_spread,
            "limited": self.limited,
        }


@dataclass(frozen=True)
class Published:
    """A number a paper reports: the source, where in it, the value with its unit, and a link."""

    source: str  # "Xiong et al. 2020"
    where: str  # "Figure 3", "Table 4"
    value: float | str
    unit: str
    url: str  # arXiv or DOI: plain link, nothing fetched
    # False where the number or its place could not be checked against the paper's text
    # (benchmarks/recorded/published_checks.tsv); the report says so beside it
    verified: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "where": self.where,
            "value": self.value,
            "unit": self.unit,
            "url": self.url,
            **({} if self.verified else {"verified": False}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Published:
        return cls(
            str(data["source"]),
            str(data["where"]),
            data["value"],
            str(data.get("unit", "")),
            str(data["url"]),
            data.get("verified", True) is not False,
        )


@dataclass(frozen=True)
class FieldAnswer:
    """The literature's verdict on one part, computed from :class:`Published` numbers."""

    label: Label
    reason: str  # a catalogue message naming the numbers
    published: tuple[Published, ...]

    def to_dict(self) -> dict[str, Any]:
        from whylab.results import with_messages

        return {
            "label": str(self.label),
            "reason": str(self.reason),
            "published": [p.to_dict() for p in self.published],
            **with_messages(reason=self.reason),
        }


@dataclass(frozen=True)
class Belief:
    label: Label
    source: Source


def what_to_believe(run: Label, field: FieldAnswer | None) -> Belief:
    """VALIDITY section 9: agree -> that label; run limited -> the literature's; disagree -> the
    run's, named as disagreeing; no literature -> the run's."""
    if run in DECISIVE:
        if field is None or field.label not in DECISIVE:
            return Belief(run, Source.RUN)
        return Belief(run, Source.BOTH if field.label == run else Source.DISAGREE)
    if field is not None and field.label in DECISIVE:
        return Belief(field.label, Source.LITERATURE)
    return Belief(Label.INCONCLUSIVE, Source.NEITHER)


@dataclass(frozen=True)
class PartVerdict:
    """One assertion of the notes' sentence, judged (see the module docstring)."""

    id: str
    words: str  # the notes' own words for this assertion (claim.yaml)
    kind: Kind
    run: Label
    reason: str  # a catalogue message: what this run found for this part
    power: Power | None = None  # experiments; None for a definition check
    field: FieldAnswer | None = None

    @property
    def believe(self) -> Belief:
        return what_to_believe(self.run, self.field)

    def to_dict(self) -> dict[str, Any]:
        from whylab.results import with_messages

        belief = self.believe
        return {
            "id": self.id,
            "words": self.words,
            "kind": str(self.kind),
            "run": {
                "label": str(self.run),
                "reason": str(self.reason),
                "power": None if self.power is None else self.power.to_dict(),
            },
            "literature": None if self.field is None else self.field.to_dict(),
            "believe": {"label": str(belief.label), "source": str(belief.source)},
            **with_messages(reason=self.reason),
        }


def run_label(decided: Label, power: Power | None, found: bool = False) -> Label:
    """A part's run label: ``decided`` unless the run could not have shown the effect (limited),
    which makes it inconclusive, never lower. ``found``: the decision rests on an effect the run
    detected (clear past the floor after correction); it stands, since low power limits what a
    run can miss, not what it finds."""
    if power is not None and power.limited and decided is not Label.SUPPORTED and not found:
        return Label.INCONCLUSIVE
    return decided


def combine(labels: Sequence[Label]) -> Label:
    """The claim's label from its parts' labels: only decisive parts count (a limited part never
    lowers it); all supported -> supported, all not supported -> not supported, any other mix of
    decisive parts -> partly supported; no decisive part -> inconclusive."""
    decisive = [label for label in labels if label in DECISIVE]
    if not decisive:
        return Label.INCONCLUSIVE
    if all(label is Label.SUPPORTED for label in decisive):
        return Label.SUPPORTED
    if all(label is Label.NOT_SUPPORTED for label in decisive):
        return Label.NOT_SUPPORTED
    return Label.PARTLY


def believed(parts: Sequence[PartVerdict]) -> Belief:
    """The claim's "what to believe": its parts' beliefs combined, with the source that carried it
    (the literature only when every decisive part rests on it)."""
    beliefs = [p.believe for p in parts]
    label = combine([b.label for b in beliefs])
    sources = {b.source for b in beliefs if b.label in DECISIVE}
    if not sources:
        return Belief(label, Source.NEITHER)
    if sources == {Source.LITERATURE}:
        return Belief(label, Source.LITERATURE)
    if Source.DISAGREE in sources:
        return Belief(label, Source.DISAGREE)
    if Source.LITERATURE in sources:
        return Belief(label, Source.BOTH)
    return Belief(label, Source.BOTH if sources == {Source.BOTH} else Source.RUN)


def part_reason(key: str, /, **params: Any) -> Msg:
    """A part's reason: the catalogue message ``key`` (e.g. ``C05.part.dimension.run.kept``)."""
    return Msg(key, **params)


def published_numbers(part: Any) -> tuple[Published, ...]:
    """A claim.yaml part's recorded ``literature`` (:class:`whylab.concepts.spec.Part`) as
    :class:`Published` records."""
    return tuple(Published.from_dict(d) for d in part.literature)
