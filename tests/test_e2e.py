"""The whole DAG on config/test.yaml in a fresh folder, the report it makes, and bad input stopping it.

This is the slowest file (a few minutes): it runs every rule the Snakefile has.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whylab import claims
from whylab.concepts import REGISTRY
from workflow_copy import workflow_copy

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
pytestmark = pytest.mark.e2e


def snakemake(cwd: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [*SNAKEMAKE, "--cores", "2", "--configfile", "config/test.yaml", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def pipeline(test_dag_run: Path) -> Path:
    """The uninterrupted run of config/test.yaml (conftest.py; test_resume.py compares with it too)."""
    return test_dag_run


def test_report_has_every_claim_and_the_tested_ones(pipeline: Path) -> None:
    html = (pipeline / "reports" / "index.html").read_text(encoding="utf-8")
    for claim in claims.CLAIMS:
        assert f">{claim.id}<" in html
    tested = sorted(p.parent.name for p in (pipeline / "results" / "concepts").glob("C*/result.json"))
    assert {"C01", "C02"} <= set(tested)
    assert set(tested) == set(REGISTRY), "every registered concept runs in the DAG"
    for claim_id in tested:
        assert f'id="{claim_id}"' in html
    assert html.count("not tested yet") == len(claims.CLAIMS) - len(tested) + 1  # + the counts badge
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) >= 2 * len(tested)


def test_rerun_with_nothing_changed_does_nothing(pipeline: Path) -> None:
    proc = snakemake(pipeline, "--dry-run")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_snakemake_report_builds(pipeline: Path) -> None:
    proc = snakemake(pipeline, "--report", "reports/snakemake.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (pipeline / "reports" / "snakemake.html").read_text(encoding="utf-8")
    # captions are reStructuredText: no docutils message (e.g. C16's |value| read as a substitution)
    for message in ("System Message", "Undefined substitution", "docutils.utils"):
        assert message not in proc.stdout + proc.stderr and message not in report, message
    assert len(report) > 10000
    # every figure of every claim is registered (category Claims, its claim as subcategory)
    for result in sorted((pipeline / "results" / "concepts").glob("C*/result.json")):
        figures = json.loads(result.read_text(encoding="utf-8"))["figures"]
        for fig in figures:
            assert Path(fig["path"]).name in report, (result.parent.name, fig["path"])
        assert not figures or result.parent.name in report


def test_lint_is_clean() -> None:
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Lints for" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-4000:]


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [
        (
            "tokenizers: {vocab_sizes: [0]}\n",
            "whylab: config error: tokenizers.vocab_sizes[0]: 0 is less than the minimum of 300",
        ),
        (
            "corpus: {sources: [{path: 'missing/*.txt'}]}\n",
            "whylab: config error: corpus.sources[0].path: the glob 'missing/*.txt' matches no file",
        ),
        ("colour: blue\n", "whylab: config error: (top level): unknown key 'colour'"),
        ("device: tpu\n", "whylab: config error: device: 'tpu' is not one of 'auto', 'cpu', 'cuda'"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path: Path, overlay: str, expected: str) -> None:
    work = workflow_copy(tmp_path)
    (work / "bad.yaml").write_text(overlay, encoding="utf-8")
    proc = snakemake(work, "--configfile", "config/test.yaml", "bad.yaml", timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(expected)
    # before it at most Snakemake's own note that the config file is extended
    assert len(lines) <= 2 and "Traceback" not in proc.stderr
    assert not (work / "results").exists() and not (work / "reports").exists()


def test_bad_corpus_file_fails_the_first_rule_and_leaves_nothing(tmp_path: Path) -> None:
    work = workflow_copy(tmp_path)
    (work / "latin1.txt").write_bytes("caf\xe9 crème brûlée, a paragraph long enough".encode("latin-1"))
    proc = snakemake(
        work,
        "--config",
        "corpus={'sources': [{'path': 'latin1.txt', 'lang': 'en'}, {'builtin': 'konlpy-kolaw', 'lang': 'ko'}]}",
        "--",
        "results/corpus/stats.json",
        timeout=300,
    )
    assert proc.returncode != 0
    assert "latin1.txt is not valid UTF-8 (byte 0xe9 at offset 3)" in proc.stdout + proc.stderr
    assert (
        not list((work / "results" / "corpus").rglob("*.txt"))
        if (work / "results" / "corpus").exists()
        else True
    )
    assert not (work / "results" / "corpus" / "stats.json").exists()


@pytest.mark.browser
def test_report_opens_offline_in_a_real_browser(pipeline: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("WHYLAB_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (WHYLAB_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        page.on("request", lambda req: requests.append(req.url))
        page.goto((pipeline / "reports" / "index.html").as_uri(), wait_until="load")
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        title = page.title()
        page.screenshot(path=str(pipeline / "reports" / "screenshot.png"), full_page=False)
        browser.close()
    assert images and all(done and width > 0 for done, width in images), images
    assert title.startswith("whylab")
    outside = [u for u in requests if not u.startswith(("file://", "data:"))]
    assert not outside, f"the report asked the network for {outside}"


@pytest.mark.browser
def test_every_figure_renders_and_passed_the_layout_check(pipeline: Path, tmp_path: Path) -> None:
    """Each figure of the test run screenshotted in headless Chromium: it loads, is drawn and is
    not blank, and the layout check (no legend over data, no overlapping labels) passed it."""
    from browser import figure_shots

    shots = figure_shots(pipeline / "reports" / "index.html", tmp_path)
    tested = list((pipeline / "results" / "concepts").glob("C*/result.json"))
    assert len(shots) >= 2 * len(tested) + 1  # + the claims-at-a-glance figure
    for shot in shots:
        assert shot.loaded and shot.shown_width > 100 and shot.distinct_colours > 16, shot
    assert not [f"{s.alt}: {s.layout_warning}" for s in shots if s.layout_warning]


def test_the_korean_page_is_complete_and_linked(pipeline: Path) -> None:
    """reports/index.ko.html: every fixed text in Korean, every claim's computed takeaway (and its
    correction where partly or not supported), and the two pages link to each other."""
    from markupsafe import escape

    from page_text import fixed_text
    from whylab.messages import english_runs
    from whylab.report import verdict_view

    en = (pipeline / "reports" / "index.html").read_text(encoding="utf-8")
    ko = (pipeline / "reports" / "index.ko.html").read_text(encoding="utf-8")
    assert 'href="index.ko.html"' in en and 'href="index.html"' in ko
    assert english_runs(fixed_text(ko, data_tables=True)) == []
    for path in sorted((pipeline / "results" / "concepts").glob("C*/result.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        verdict = verdict_view(record["verdict"], "ko")
        shown = {k: str(escape(v)) for k, v in verdict.items() if isinstance(v, str)}  # as the page has it
        assert verdict["takeaway"] and shown["takeaway"] in ko, path.parent.name
        assert shown["reason"] in ko, path.parent.name
        if verdict["label"] in ("partly supported", "not supported"):
            assert verdict["correction"] and shown["correction"] in ko, path.parent.name


def test_every_drawn_text_and_table_word_of_the_real_claims_has_its_korean(pipeline: Path) -> None:
    """Every text the claims' figures drew, every table header and word cell: an entry in
    messages/ko/drawn/ (what `python -m whylab.drawn_texts missing` lists is empty)."""
    from whylab.drawn_missing import report

    lines, missing = report(pipeline / "results", "ko")
    assert missing == 0, "\n".join(lines)


@pytest.mark.browser
def test_hangul_renders_in_headless_chromium(pipeline: Path) -> None:
    """The embedded NanumGothic is what draws the Hangul (this machine may have no Korean font):
    the face loads, and distinct syllables give distinct pictures, not the same empty box."""
    from browser import hangul_check

    page = pipeline / "reports" / "index.ko.html"
    html = page.read_text(encoding="utf-8")
    chars = "".join(dict.fromkeys(c for c in html if "\uac00" <= c <= "\ud7a3"))[:8]
    assert len(chars) == 8
    check = hangul_check(page, chars)
    assert check.embedded_face_status and all(s == "loaded" for s in check.embedded_face_status), check
    assert len(set(check.glyph_shots.values())) == len(chars), "two Hangul syllables drew the same picture"
