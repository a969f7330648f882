"""The report's "on another English text" line: the record benchmarks/second_text.py writes, read
beside the page's own label."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from whylab import report_robustness

REPO = Path(__file__).resolve().parents[1]


def second_text_script() -> Any:
    spec = importlib.util.spec_from_file_location("second_text", REPO / "benchmarks/second_text.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["second_text"] = module
    spec.loader.exec_module(module)
    return module


def labels(label: str, **parts: str) -> dict[str, Any]:
    return {"label": label, "believe": label, "parts": {pid: [run, run] for pid, run in parts.items()}}


def record(**claims: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    st = second_text_script()
    return {
        "commit": "abc1234",
        "date": "2026-12-07T03:00+00:00",
        "claims": [{"claim": cid, **st.compare(a, b)} for cid, (a, b) in claims.items()],
    }


def test_compare_names_the_parts_whose_labels_moved() -> None:
    st = second_text_script()
    moved = st.compare(
        labels("supported", lm="supported", task="supported"),
        labels("inconclusive", lm="inconclusive", task="supported"),
    )
    assert moved["label_flips"] and moved["parts_moved"] == ["lm"]
    same = st.compare(labels("supported", lm="supported"), labels("supported", lm="supported"))
    assert not same["label_flips"] and same["parts_moved"] == []


def test_claim_view_flags_a_flip_and_a_page_that_no_longer_matches_the_record() -> None:
    rec = record(C04=(labels("supported", lm="supported"), labels("inconclusive", lm="inconclusive")))
    view = report_robustness.claim_view(rec, "C04", "supported")
    assert view is not None and view["flips"] and view["same_as_page"]
    assert view["moved"] == [{"id": "lm", "default": "supported", "second": "inconclusive"}]
    assert view["commit"] == "abc1234" and view["date"] == "2026-12-07"
    assert not report_robustness.claim_view(rec, "C04", "partly supported")["same_as_page"]
    assert report_robustness.claim_view(rec, "C05", "supported") is None
