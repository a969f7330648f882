"""The report: self-contained, every claim listed, hostile corpus text escaped."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from whylab import claims, plotting, report
from whylab.concepts import run_concept
from whylab.results import Evidence, Table
from whylab.verdict import Label, Verdict

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


class HostileConcept:
    """A concept whose numbers and tables carry text straight from an attacker's corpus."""

    CLAIM_ID = "C01"

    @staticmethod
    def run(ctx):  # type: ignore[no-untyped-def]
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("x (units)")
        ax.set_ylabel("y (units)")
        ref = plotting.save(fig, ctx.outdir, "line", "A line", "A caption.")
        return Evidence(
            method="m",
            metrics={"token": HOSTILE},
            tables=[Table("t", "tokens", ["token"], [[HOSTILE]])],
            figures=[ref],
        )

    @staticmethod
    def verdict(metrics):  # type: ignore[no-untyped-def]
        return Verdict(Label.INCONCLUSIVE, f"reason with {metrics['token']}")


@pytest.fixture
def hostile_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import whylab.concepts as concepts

    monkeypatch.setattr(concepts, "load", lambda claim_id: HostileConcept)
    out = tmp_path / "C01" / "result.json"
    run_concept("C01", {"seeds": [0], "device": "cpu"}, {}, out)
    return out


def test_hostile_text_is_escaped_everywhere(hostile_result: Path) -> None:
    html = report.render({"C01": hostile_result}, config={"note": HOSTILE}, title=HOSTILE)
    assert "<script>" not in html
    assert "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")  # only as escaped text
    assert "&lt;script&gt;" in html


def test_report_lists_all_claims_and_marks_untested(hostile_result: Path) -> None:
    html = report.render({"C01": hostile_result}, config={}, title="t")
    for claim in claims.CLAIMS:
        assert claim.id in html
    assert html.count("not tested yet") >= len(claims.CLAIMS) - 1
    assert 'id="C01"' in html and 'id="C02"' not in html


def test_report_is_self_contained(hostile_result: Path) -> None:
    html = report.render({"C01": hostile_result}, config={}, title="t")
    srcs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html.replace("http-equiv", "") and "https://" not in html
    assert "default-src 'none'" in html


def test_rule_timings_reads_snakemake_benchmarks(tmp_path: Path) -> None:
    (tmp_path / "corpus.tsv").write_text("s\th:m:s\tmax_rss\n1.5\t0:00:01\t120.3\n", encoding="utf-8")
    assert report.rule_timings(tmp_path) == [{"rule": "corpus", "seconds": 1.5, "max_rss": 120.3}]


def test_plot_without_axis_labels_is_refused(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="axis labels"):
        plotting.save(fig, tmp_path, "bad", "t", "c")
