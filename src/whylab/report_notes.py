"""The study notes as the report shows them: line by line, each claim's quotes marked with the
claim's id and its verdict, and each checked part's words (claim.yaml ``parts[].words``, code
lines included) marked by a badge after their line, linked to the part's row on the page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from whylab import claims
from whylab.report_labels import UNTESTED


def annotate_notes(
    notes: str,
    labels: Mapping[str, str],
    parts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """The notes line by line, each claim's quotes marked with the claim's id.

    Returns one dict per line: ``segments`` (text with the claim id it belongs to, or None,
    and ``badge`` on a claim's first quote, where the page puts its verdict badge) and
    ``ends`` (the claims whose last quote is on this line: their corrections go beneath it).
    ``labels`` maps a claim id to its verdict label (a claim without one is not tested yet).
    ``parts`` maps a claim id to its parts' views (``id``, ``words``, ``believe``): each line
    also gets ``parts``, the parts whose words end on it (see :func:`place_parts`).
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
        out.append({"segments": segments, "ends": ends, "parts": []})
        pos = end + 1
    for row in out:
        for seg in row["segments"]:
            if seg["claim"]:
                seg["label"] = labels.get(seg["claim"], UNTESTED)
    for end, part in place_parts(notes, spans, parts or {}):
        out[notes.count("\n", 0, end)]["parts"].append(part)
    return out


def place_parts(
    notes: str,
    spans: Sequence[tuple[int, int, str]],
    parts: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[tuple[int, dict[str, Any]]]:
    """Where each part's words are in the notes, as (the offset of their last character, the
    badge's fields: ``claim``, ``id``, ``words``, ``label``, ``source``), in the notes' order.

    Words that are not verbatim in the notes are left out. Where they occur more than once, the
    occurrence inside the claim's own quotes wins, then one not glued to a letter or digit (so
    "INT8 = 1" is the line ``INT8 = 1``, not the start of ``BERT_INT8 = 110M``), then the first.
    """
    placed: list[tuple[int, dict[str, Any]]] = []
    for cid, claim_parts in parts.items():
        own = [(a, b) for a, b, c in spans if c == cid]
        for part in claim_parts:
            words = str(part.get("words") or "")
            starts = _occurrences(notes, words)
            if not starts:
                continue
            start = min(starts, key=lambda at: _rank(notes, words, own, at))
            believe = part.get("believe") or {}
            placed.append(
                (
                    start + len(words) - 1,
                    {
                        "claim": cid,
                        "id": str(part.get("id") or ""),
                        "words": words,
                        "label": str(believe.get("label") or UNTESTED),
                        "source": str(believe.get("source") or ""),
                    },
                )
            )
    placed.sort(key=lambda item: item[0])
    return placed


def _rank(notes: str, words: str, own: Sequence[tuple[int, int]], start: int) -> tuple[bool, bool, int]:
    """The order in which :func:`place_parts` prefers an occurrence of ``words`` (lowest first)."""
    end = start + len(words)
    inside = any(a <= start and end <= b for a, b in own)
    glued = (start > 0 and notes[start - 1].isalnum()) or (end < len(notes) and notes[end].isalnum())
    return (not inside, glued, start)


def _occurrences(notes: str, words: str) -> list[int]:
    if not words:
        return []
    found: list[int] = []
    start = notes.find(words)
    while start >= 0:
        found.append(start)
        start = notes.find(words, start + 1)
    return found
