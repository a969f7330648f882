"""The study notes as the report shows them: line by line, each claim's quotes marked with the
claim's id and its verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab import claims
from whylab.report_labels import UNTESTED


def annotate_notes(notes: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The notes line by line, each claim's quotes marked with the claim's id.

    Returns one dict per line: ``segments`` (text with the claim id it belongs to, or None,
    and ``badge`` on a claim's first quote, where the page puts its verdict badge) and
    ``ends`` (the claims whose last quote is on this line: their corrections go beneath it).
    ``labels`` maps a claim id to its verdict label (a claim without one is not tested yet).
    """
    spans: list[tuple[int, int, str]] = []
    for claim in claims.CLAIMS:
        for quote in claim.quotes:
            start = notes.find(quote)
            while start >= 0 and any(a < start + len(quote) and start < b for a, b, _ in spans):
                start = notes.find(quote, start + 1)
            if start < 0:
                raise ValueError(f"{claim.id}: the quote {quote!r} is not in the notes")
            spans.append((start, start + len(quote), claim.id))
    spans.sort()
    last = {cid: a for a, _, cid in spans}  # sorted, so the last one wins
    first = {cid: a for a, _, cid in reversed(spans)}
    out: list[dict[str, Any]] = []
    pos = 0
    for line in notes.split("\n"):
        end = pos + len(line)
        segments: list[dict[str, Any]] = []
        ends: list[str] = []
        cursor = pos
        for a, b, cid in spans:
            if a < pos or a >= end:
                continue
            b = min(b, end)
            if a > cursor:
                segments.append({"text": notes[cursor:a], "claim": None, "badge": False})
            segments.append({"text": notes[a:b], "claim": cid, "badge": first[cid] == a})
            if last[cid] == a:
                ends.append(cid)
            cursor = b
        if cursor < end:
            segments.append({"text": notes[cursor:end], "claim": None, "badge": False})
        out.append({"segments": segments, "ends": ends})
        pos = end + 1
    for row in out:
        for seg in row["segments"]:
            if seg["claim"]:
                seg["label"] = labels.get(seg["claim"], UNTESTED)
    return out
