"""The report answers "is my sentence true?": a verdict block per claim (its parts with three
marks each), a bottom line computed from the verdicts, the evidence folded, every paper a link."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from report_pages import all_claims
from setting_names import setting_names_in
from whylab import claims, report
from whylab.report_reading import ARXIV, PAPERS, cited, linked


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield all_claims(tmp_path_factory.mktemp("all"), monkeypatch)


@pytest.fixture(scope="module")
def pages(results: dict[str, Path]) -> dict[str, str]:
    return {lang: report.render(results, config={}, title="t", lang=lang) for lang in ("en", "ko")}


def _section(html: str, claim_id: str) -> str:
    start = html.index(f'<section id="{claim_id}">')
    return html[start : html.index("</section>", start)]


def test_a_claim_with_parts_shows_each_part_with_three_marks(pages: dict[str, str]) -> None:
    c01 = _section(pages["en"], "C01")  # case 0: run and literature agree
    block = c01[c01.index('class="verdict-block"') : c01.index("<details")]
    assert "“임베딩 차원”" in block
    assert "What to believe" in block and "this run and the literature agree" in block
    assert re.search(r"could detect an effect of 0\.0\d+ nats or more with 5 seeds, enough to see", block)
    assert '<a href="https://arxiv.org/abs/2002.04745" rel="noreferrer">Xiong et al. 2020</a>' in block
    assert "0.4 nats" in block and "Figure 3" in block
    assert "This claim&#39;s run: 3 seeds, 200 training steps, a model of 2 layers, width 32." in block
    # a run too small for the predicted effect says so, beside the literature that decides
    c02 = _section(pages["en"], "C02")
    assert "not the 0.1 nats predicted: too small a run to see it" in c02
    assert 'href="https://arxiv.org/abs/1706.03762"' in c02  # VASWANI has no url: the table gives it


def test_the_badge_is_what_to_believe_and_says_when_it_comes_from_the_literature(
    pages: dict[str, str],
) -> None:
    c02 = _section(pages["en"], "C02")  # run limited, literature: not supported
    verdict = c02[c02.index('<p class="verdict">') :]
    assert verdict.startswith(
        '<p class="verdict"><span class="badge not-supported">not supported — from the literature'
    )
    assert "— 문헌 기준" in _section(pages["ko"], "C02")
    summary = pages["en"][pages["en"].index('id="summary"') : pages["en"].index("<main>")]
    assert "not supported — from the literature" in summary
    # a claim without parts keeps today's badge (its label) and its reason beside it
    c06 = _section(pages["en"], "C06")  # case 5: no parts, partly supported
    assert '<p class="verdict"><span class="badge partly-supported">partly supported</span>' in c06
    assert '<table class="parts">' not in c06
    assert "Corrected:</strong>" in c06


def test_the_bottom_line_groups_the_claims_by_their_verdicts(pages: dict[str, str]) -> None:
    html = pages["en"]
    bottom = html[html.index('id="bottom-line"') : html.index('id="glance"')]
    items = re.findall(r"<li>(.*?)</li>", bottom, re.S)
    groups = {item.split(" (")[0]: item for item in items}
    assert set(groups) == {
        "Holds as the notes say it",
        "Holds once corrected",
        "Wrong as the notes say it",
        "Not decided by this run",
        "Not decided by this run but decided by the literature",
    }
    topic = claims.BY_ID["C01"].topic.in_("en")
    assert f"C01 ({topic})" in groups["Holds as the notes say it"]
    assert "C02 (" in groups["Not decided by this run but decided by the literature"]
    assert "— not supported" in groups["Not decided by this run but decided by the literature"]
    assert "C03 (" in groups["Holds once corrected"] and "C06 (" in groups["Holds once corrected"]
    assert "C04 (" in groups["Not decided by this run"] and "C07 (" in groups["Wrong as the notes say it"]
    named = re.findall(r"\bC\d\d\b", bottom)
    assert sorted(named) == sorted(claims.BY_ID)  # each claim in exactly one group
    assert html.index('id="bottom-line"') < html.index('id="notes"')


def test_a_claim_not_tested_is_in_the_bottom_line(results: dict[str, Path]) -> None:
    html = report.render({"C01": results["C01"]}, config={}, title="t")
    bottom = html[html.index('id="bottom-line"') : html.index('id="glance"')]
    assert "Not tested yet (20): C02 (" in bottom


def test_the_evidence_is_folded_and_the_first_figure_shown(pages: dict[str, str]) -> None:
    for claim in claims.CLAIMS:
        section = _section(pages["en"], claim.id)
        head, evidence = section.split('<details class="evidence">', 1)
        assert head.count("<figure>") == 1 and "The first figure" in head, claim.id
        assert "The second figure" in evidence and "<h3>Method" in evidence, claim.id
        assert '<table class="data">' in evidence and "</details>" in evidence
    opened = re.findall(r"<details[^>]*\bopen\b", pages["en"])
    assert not opened


def test_every_paper_is_a_plain_link_and_nothing_is_fetched(pages: dict[str, str]) -> None:
    for html in pages.values():
        assert "default-src 'none'" in html and "<link" not in html
        assert all(s.startswith("data:") for s in re.findall(r'\bsrc="([^"]+)"', html))
        away = re.findall(r'<a href="(https?://[^"]+)"', html)
        assert away and all(h.startswith(ARXIV) for h in away)
        assert len(re.findall(r'href="https?://', html)) == len(away)  # only on <a>
    reading = pages["en"][pages["en"].index('<section id="reading">') :]
    reading = reading[: reading.index("</section>")]
    for name in ("Vaswani et al. 2017", "Xiong et al. 2020", "Sennrich et al. 2016", "Kudo 2018"):
        assert f'rel="noreferrer">{name}</a>' in reading, name
    topics = re.findall(r"<h3>(.*?)</h3>", reading)
    assert topics == [section.in_("en") for section, _ in claims.SECTIONS]


def test_citations_are_found_as_the_catalogues_spell_them() -> None:
    assert [p["name"] for p in cited("Sennrich et al. 2016; Kudo 2018")] == [
        "Sennrich et al. 2016",
        "Kudo 2018",
    ]
    assert cited("Rajbhandari et al. 2020 (ZeRO), §3.1")[0]["url"] == ARXIV + "1910.02054"
    assert cited("Hugging Face, 'Fixing Gradient Accumulation' (2024)") == []
    pieces = linked("Frantar et al. 2023; Lin et al. 2024 (group size ablations)")
    assert [p["text"] for p in pieces] == [
        "Frantar et al. 2023",
        "; ",
        "Lin et al. 2024",
        " (group size ablations)",
    ]
    assert len({arxiv for _, arxiv in PAPERS}) == len(PAPERS)


def test_no_setting_name_in_the_rendered_prose(pages: dict[str, str]) -> None:
    from page_text import fixed_text

    found = setting_names_in("raise min_loss_gain or memory.C18.notes_models")
    assert {"memory.C18.notes_models", "min_loss_gain"} <= set(found)
    assert setting_names_in("the loss gain at d = 64") == []
    for lang, html in pages.items():
        # the notes are quoted verbatim, code lines and all: the page's own prose is the rest
        notes = html.index('<section id="notes">')
        prose = html[:notes] + html[html.index("</section>", notes) :]
        assert setting_names_in(fixed_text(prose)) == [], lang


def test_the_korean_verdict_blocks_and_bottom_line_are_korean(pages: dict[str, str]) -> None:
    from page_text import fixed_text
    from whylab.messages import english_runs

    ko = pages["ko"]
    blocks = re.findall(r'<div class="verdict-block">.*?\n  </div>', ko, re.S)
    bottom = ko[ko.index('id="bottom-line"') : ko.index('id="glance"')]
    assert blocks and english_runs(fixed_text("".join(blocks) + bottom)) == []
    assert "이 실행과 문헌이 일치한다" in ko and "노트대로 성립한다 (6개): C01 (" in bottom
    assert re.search(r"시드 5개로 0\.0\d+ nats 이상의 효과를 찾아낼 수 있었다", ko)


SCREENS = 20  # the folded page's length, in screens of 1280 × 900


@pytest.mark.browser
@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_folded_page_fits_in_twenty_screens(results: dict[str, Path], tmp_path: Path, lang: str) -> None:
    """All 21 claims, everything folded, in headless Chromium at 1280 px wide: at most 20 screens
    of 900 px; the first screen is saved beside the page for a look."""
    from browser import folded_height

    page = tmp_path / f"index.{lang}.html"
    page.write_text(report.render(results, config={}, title="t", lang=lang), encoding="utf-8")
    height, opened = folded_height(page, tmp_path / f"first-screen.{lang}.png")
    assert (tmp_path / f"first-screen.{lang}.png").stat().st_size > 0
    assert opened == 0
    assert height <= SCREENS * 900, f"{height:.0f} px is {height / 900:.1f} screens"


def test_each_checked_line_of_the_notes_links_to_its_part(results: dict[str, Path]) -> None:
    record = json.loads(results["C18"].read_text(encoding="utf-8"))
    believe = {"label": "supported", "source": "this run"}
    record["verdict"]["parts"] = [
        {
            "id": pid,
            "words": words,
            "kind": "definition check",
            "run": {"label": "supported", "reason": "r", "power": None},
            "literature": None,
            "believe": believe,
        }
        for pid, words in (
            ("adafactor_beta1", "AdaFactor: 2-4 bytes/파라미터"),
            ("bert", "BERT_FP32 = 110M * 4 = 440MB (모델만)"),
            ("paraphrase", "not words of the notes"),
        )
    ]
    path = results["C18"].parent / "with_parts.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    html = report.render({"C18": path}, config={}, title="t")
    notes = html[html.index('<section id="notes">') : html.index('id="summary"')]
    for pid in ("adafactor_beta1", "bert"):
        assert f'<tr id="C18-{pid}">' in _section(html, "C18")
        assert notes.count(f'href="#C18-{pid}"') == 1
    line = next(x for x in notes.split('<div class="line">') if "#- AdaFactor" in x)
    assert line.startswith('#- AdaFactor: 2-4 bytes/파라미터 <a class="badge part supported"')
    assert "<code>adafactor_beta1</code> · supported</a></div>" in line
    assert 'href="#C18-paraphrase"' not in notes and '<tr id="C18-paraphrase">' in html
