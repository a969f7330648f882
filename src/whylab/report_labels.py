"""Verdicts as the report shows them: the labels (with "not tested yet"), their badge classes
and colours, and a result's verdict and texts rendered in one language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.messages import from_record
from whylab.verdict import Label

UNTESTED = "not tested yet"
# the badge colours of report.css, so the at-a-glance figure and the page agree
VERDICT_COLOURS = {
    str(Label.SUPPORTED): "#52b788",
    str(Label.PARTLY): "#ffd43b",
    str(Label.NOT_SUPPORTED): "#f0616d",
    str(Label.INCONCLUSIVE): "#adb5bd",
    UNTESTED: "#ffffff",
}
KINDS = ("experiment", "definition check")
CORRECTED_LABELS = (str(Label.PARTLY), str(Label.NOT_SUPPORTED))


def _css_class(label: str) -> str:
    """The CSS class of a verdict badge (report.css has one rule per class)."""
    label = str(label)
    return "untested" if label == UNTESTED else label.replace(" ", "-")


def verdict_view(verdict: Mapping[str, Any], lang: str = "en") -> dict[str, Any]:
    """A result's verdict with every field the page shows, in ``lang``; results written before a
    field existed render with its default (an experiment, no primary comparison, nothing limited)."""
    v = localized(verdict, lang)
    limited = v.get("limited") or []
    return {
        "label": str(verdict["label"]),
        "reason": str(v["reason"]),
        "kind": str(verdict.get("kind") or "experiment"),
        "primary": str(v.get("primary") or ""),
        "limited": [str(x) for x in ([limited] if isinstance(limited, str) else limited)],
        "takeaway": str(v.get("takeaway") or ""),
        "correction": str(v.get("correction") or ""),
    }


def localized(obj: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """A result object (the record, its verdict, a figure, a table, a literature check) with each
    text that its ``messages`` keeps as a catalogue key rendered in ``lang``; plain texts as they are."""
    out = dict(obj)
    for name, kept in (obj.get("messages") or {}).items():
        out[name] = from_record(kept, lang)
    return out


def _label_key(label: str) -> str:
    return f"report.label.{_css_class(label).replace('-', '_')}"
