"""The report's line "on another English text": the mechanism claims' labels recorded on the
default corpus and on a second English text (benchmarks/second_text.py writes the record,
benchmarks/recorded/second_text_labels.json), beside the label this page shows.

The record comes from two runs of one commit, not from this run: the line names that commit and
date, and says so when this page's label is not the recorded default's (the code or the config
changed since).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from whylab.files import read_json


def load(path: Path | None) -> dict[str, Any]:
    """The record (empty without one)."""
    return read_json(path) if path is not None and Path(path).is_file() else {}


def claim_view(record: Mapping[str, Any], claim_id: str, page_label: str | None) -> dict[str, Any] | None:
    """What the page shows for ``claim_id``: the two recorded labels, the parts whose labels
    moved (their run labels on each text), and whether this page's label is the recorded default's."""
    found = next((c for c in record.get("claims") or [] if c.get("claim") == claim_id), None)
    if found is None:
        return None
    default, second = found["default"], found["second_text"]
    moved = [
        {
            "id": pid,
            "default": (default["parts"].get(pid) or ["—"])[0],
            "second": (second["parts"].get(pid) or ["—"])[0],
        }
        for pid in found.get("parts_moved") or []
    ]
    return {
        "default": str(default["label"]),
        "second": str(second["label"]),
        "flips": bool(found.get("label_flips")),
        "moved": moved,
        "commit": str(record.get("commit", "")),
        "date": str(record.get("date", ""))[:10],
        "same_as_page": page_label is None or str(page_label) == str(default["label"]),
        "page": str(page_label or ""),
    }
