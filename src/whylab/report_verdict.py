"""A claim's verdict block as the report shows it (the notes' sentence part by part: this run with
what it could detect, the literature with its numbers, what to believe) and the page's bottom
line, computed from the verdicts (never typed in)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from whylab.claims import Claim
from whylab.drawn_texts import translate
from whylab.messages import Msg
from whylab.parts import Source
from whylab.report_labels import _label_key, localized
from whylab.report_reading import cited
from whylab.verdict import Label

SOURCE_KEYS = {
    str(Source.BOTH): "both",
    str(Source.RUN): "run",
    str(Source.LITERATURE): "literature",
    str(Source.DISAGREE): "disagree",
    str(Source.NEITHER): "neither",
}


def power_text(power: Mapping[str, Any] | None, lang: str) -> str:
    """What a part's run could detect, in words: the smallest effect it would have found beside the
    effect predicted, or why it could not find any ("" for a definition check)."""
    if not power:
        return ""
    n, unit = power.get("n", 0), str(power.get("unit") or "")
    unit = translate(unit, lang) or unit  # a unit in words ("share of held-out answers") has its entry
    unit = f" {unit}" if unit else ""
    if power.get("zero_spread"):
        return Msg("report.power.zero_spread", n=n).in_(lang)
    detectable = power.get("detectable")
    if detectable is None:
        return Msg("report.power.too_few", n=n).in_(lang)
    predicted = power.get("predicted")
    text = Msg("report.power.detects", detectable=float(detectable), unit=unit, n=n).in_(lang)
    if predicted is not None:
        key = "report.power.limited" if power.get("limited") else "report.power.predicted"
        text += Msg(key, predicted=abs(float(predicted)), unit=unit).in_(lang)
    return text


def _published(pub: Mapping[str, Any]) -> dict[str, Any]:
    known = cited(str(pub.get("source", "")))
    return {
        "source": str(pub.get("source", "")),
        "where": str(pub.get("where", "")),
        "value": pub.get("value"),
        "unit": str(pub.get("unit") or ""),
        "url": str(pub.get("url") or (known[0]["url"] if known else "")),
        "unverified": pub.get("verified") is False,
    }


def part_view(part: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """One part of a result's ``verdict.parts`` with its texts in ``lang``."""
    p = localized(part, lang)
    run = dict(part.get("run") or {})
    lit = part.get("literature")
    literature = None
    if lit:
        shown = localized(lit, lang)
        literature = {
            "label": str(lit["label"]),
            "reason": str(shown.get("reason") or ""),
            "published": [_published(pub) for pub in lit.get("published") or []],
        }
    believe = part.get("believe") or {}
    return {
        "id": str(part.get("id", "")),
        "words": str(part.get("words", "")),
        "kind": str(part.get("kind") or "experiment"),
        "run": {
            "label": str(run.get("label") or Label.INCONCLUSIVE),
            "reason": str(p.get("reason") or run.get("reason") or ""),
            "power": power_text(run.get("power"), lang),
        },
        "literature": literature,
        "believe": {
            "label": str(believe.get("label") or Label.INCONCLUSIVE),
            "source": _source_text(believe.get("source"), lang),
        },
    }


def _source_text(source: Any, lang: str) -> str:
    key = SOURCE_KEYS.get(str(source))
    return Msg(f"report.source.{key}").in_(lang) if key else ""


def parts_view(verdict: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """The fields the verdict block adds to :func:`~whylab.report_labels.verdict_view`: the parts,
    and the claim's badge, which is its "what to believe" label where it has parts (marked when it
    comes from the literature) and its label otherwise."""
    parts = [part_view(p, lang) for p in verdict.get("parts") or []]
    believe = (verdict.get("believe") or {}) if parts else {}
    return {
        "parts": parts,
        "badge": str(believe.get("label") or verdict["label"]),
        "from_literature": str(believe.get("source")) == str(Source.LITERATURE),
    }


GROUPS = (
    (str(Label.SUPPORTED), "holds"),
    (str(Label.PARTLY), "corrected"),
    (str(Label.NOT_SUPPORTED), "wrong"),
    (str(Label.INCONCLUSIVE), "undecided"),
)


def bottom_line(rows: Sequence[tuple[Claim, Mapping[str, Any] | None]], lang: str) -> list[str]:
    """A few sentences grouping the claims by their badge: holds, holds once corrected, wrong, not
    decided by this run (those whose badge the literature gives, with what it says), not tested;
    each names its claims (id and topic). ``rows``: each claim with its verdict view, or None."""
    groups: dict[str, list[Msg]] = {name: [] for _, name in GROUPS}
    groups |= {"field": [], "untested": []}
    for claim, view in rows:
        item = Msg("report.bottom.claim", id=claim.id, topic=claim.topic)
        if view is None:
            groups["untested"].append(item)
        elif view.get("from_literature"):
            label = Msg(_label_key(view["badge"]))
            groups["field"].append(Msg("report.bottom.field_claim", claim=item, label=label))
        else:
            groups[dict(GROUPS).get(view["badge"], "undecided")].append(item)
    return [
        Msg(f"report.bottom.{name}", n=len(items), claims=items).in_(lang)
        for name, items in groups.items()
        if items
    ]
