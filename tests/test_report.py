"""The report: self-contained, every claim listed, hostile corpus text escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from fake_decisions import decide_fake
from whylab import claims, plotting, report
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict

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
    out = tmp_path / "C01" / "result.json"
    return decide_fake(monkeypatch, "C01", out, HostileConcept.run, HostileConcept.verdict)


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


def _with_verdict(result: Path, tmp_path: Path, claim_id: str, **verdict: Any) -> Path:
    """A copy of ``result`` as claim ``claim_id`` with these verdict fields (figures copied too)."""
    record = json.loads(result.read_text(encoding="utf-8"))
    record["claim_id"] = claim_id
    record["verdict"] = {**record["verdict"], **verdict}
    out = tmp_path / claim_id / "result.json"
    (out.parent / "figures").mkdir(parents=True)
    for fig in record["figures"]:
        (out.parent / fig["path"]).write_bytes((result.parent / fig["path"]).read_bytes())
    out.write_text(json.dumps(record), encoding="utf-8")
    return out


def test_kind_primary_limited_takeaway_and_correction_are_shown(hostile_result: Path, tmp_path: Path) -> None:
    partly = _with_verdict(
        hostile_result,
        tmp_path,
        "C05",
        label="partly supported",
        reason="the reason with numbers",
        kind="experiment",
        primary="√d_k vs no scaling at d_k = 64, 5 seeds, paired",
        limited=["saturation at d_k = 512 was not trained"],
        takeaway="Scaling keeps softmax from saturating.",
        correction="divide by √d_k, the per-head dimension, not the embedding dimension",
    )
    supported = _with_verdict(
        hostile_result,
        tmp_path,
        "C14",
        label="supported",
        reason="r",
        kind="definition check",
        correction="a correction a supported claim must not show",
    )
    html = report.render({"C05": partly, "C14": supported}, config={}, title="t")
    section = html[html.index('<section id="C05">') : html.index('<section id="C14">')]
    assert section.index("experiment") < section.index("Primary comparison") < section.index("<h3>Method")
    assert "√d_k vs no scaling at d_k = 64, 5 seeds, paired" in section
    assert "Limited by this run" in section and "saturation at d_k = 512 was not trained" in section
    assert "Scaling keeps softmax from saturating." in section
    assert "Corrected:</strong> divide by √d_k" in section
    assert "definition check" in html[html.index('<section id="C14">') :]
    assert "a correction a supported claim must not show" not in html
    # the summary's Why column: the takeaway in plain words, flagged as limited
    summary = html[html.index('id="summary"') : html.index("<main>")]
    assert "Scaling keeps softmax from saturating." in summary and "limited by this run" in summary


def test_results_written_before_the_new_fields_still_render(hostile_result: Path, tmp_path: Path) -> None:
    record = json.loads(hostile_result.read_text(encoding="utf-8"))
    record["verdict"] = {"label": "supported", "reason": "an old result"}
    hostile_result.write_text(json.dumps(record), encoding="utf-8")
    html = report.render({"C01": hostile_result}, config={}, title="t")
    assert "an old result" in html and "Limited by this run" not in html
    assert report.verdict_view(record["verdict"])["kind"] == str(Kind.EXPERIMENT)


def test_the_notes_are_annotated_with_badges_and_corrections(hostile_result: Path, tmp_path: Path) -> None:
    c05 = _with_verdict(
        hostile_result, tmp_path, "C05", label="partly supported", reason="r", correction="divide by √d_k"
    )
    html = report.render({"C05": c05}, config={}, title="t")
    notes = html[html.index('<section id="notes">') : html.index('id="summary"')]
    # the notes' own text, verbatim (escaped), each claim's quote marked
    for claim in claims.CLAIMS:
        for quote in claim.quotes:
            assert _escaped(quote) in notes, quote
    assert notes.count('href="#C05"') == 1 and 'class="badge partly-supported"' in notes
    assert notes.count("not tested yet") == len(claims.CLAIMS) - 1
    assert "C05, corrected:</strong> divide by √d_k" in notes
    # the correction sits beneath C05's last quote, the code line of the notes
    assert notes.index("math.sqrt(d_k)") < notes.index("C05, corrected") < notes.index("# 3. softmax")


def test_annotate_notes_marks_every_quote_once() -> None:
    lines = report.annotate_notes(claims.notes_text(), {"C02": "supported"})
    marked = [(seg["claim"], seg["text"]) for line in lines for seg in line["segments"] if seg["claim"]]
    expected = [(c.id, q) for c in claims.CLAIMS for q in c.quotes]
    assert sorted(marked) == sorted(expected)
    badges = [seg["claim"] for line in lines for seg in line["segments"] if seg["badge"]]
    assert sorted(badges) == sorted(claims.BY_ID)
    assert "".join(seg["text"] for seg in lines[3]["segments"]).startswith("서브위드 토큰화")
    assert "\n".join("".join(s["text"] for s in line["segments"]) for line in lines) == claims.notes_text()


def test_quotes_are_verbatim_with_misspellings_named(hostile_result: Path, tmp_path: Path) -> None:
    c02 = _with_verdict(hostile_result, tmp_path, "C02", label="supported", reason="r")
    html = report.render({"C02": c02}, config={}, title="t")
    section = html[html.index('<section id="C02">') :]
    assert "서브위드 토큰화 : 고빈도" in section and "서브워드 토큰화" not in section
    assert re.search(r"The notes write 서브위드 \(sic\) for 서브워드", section)


def test_every_badge_class_has_a_style(hostile_result: Path) -> None:
    html = report.render({"C01": hostile_result}, config={}, title="t")
    css = (Path(report.__file__).parent / "templates" / "report.css").read_text(encoding="utf-8")
    styled = set(re.findall(r"\.([a-z][a-z-]*)\s*[{,]", css))
    used = {c for attr in re.findall(r'class="badge ([^"]+)"', html) for c in attr.split()}
    assert "untested" in used and used <= styled, used - styled


def test_scale_banner_and_glance_figure(hostile_result: Path, tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    split = {"train": 1, "valid": 1}
    ko = {"chars": {"train": 29000, "valid": 3000}, "paragraphs": split, "words": split}
    stats.write_text(
        json.dumps({"languages": {"ko": {**ko, "distinct_chars": 900, "sources": {"kolaw": 1}}}}),
        encoding="utf-8",
    )
    lm = tmp_path / "lm.json"
    lm.write_text(
        json.dumps({"params_total": 1_100_000, "steps": 150, "device": "cpu", "threads": 1}), encoding="utf-8"
    )
    config = {
        "seeds": [0, 1, 2],
        "mechanisms": {
            "tokenizer": {"vocab_size": 1000},
            "model": {"d_model": 64, "n_heads": 4, "n_layers": 2},
            "train": {"steps": 200, "batch_size": 16, "seq_len": 64},
        },
    }
    html = report.render(
        {"C01": hostile_result}, config=config, title="t", corpus_stats=stats, extras={"lm_train_metrics": lm}
    )
    banner = html[html.index('<div class="scale"') : html.index('class="lede"')]
    assert "1.1M parameters; 150 steps" in banner and "1 thread" in banner
    assert "ko 29k characters to train" in banner and "3 seeds" in banner
    assert re.search(r"\d+(\.\d+)?k parameters: 2 layers, width 64, 4 heads; 200 training steps", banner)
    assert html.index('<div class="scale"') < html.index('id="glance"') < html.index('id="notes"')
    assert re.search(r'<section id="glance">.*?<img src="data:image/png;base64,', html, re.S)


def test_glance_figure_passes_the_layout_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plotting.STRICT_ENV, "1")
    labels = {c.id: str(list(Label)[i % 4]) for i, c in enumerate(claims.CLAIMS) if i % 5}
    kinds = {cid: ("definition check" if i % 3 == 0 else "experiment") for i, cid in enumerate(labels)}
    assert report.glance_figure(labels, kinds).startswith("data:image/png;base64,")


def _escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


class CataloguedConcept:
    """A concept whose every text is a catalogue message (the real claims' texts are checked in
    their own tests; these keys are the catalogue's shared ones)."""

    CLAIM_ID = "C05"

    @staticmethod
    def run(ctx):  # type: ignore[no-untyped-def]
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1], label="model")
        ax.set_xlabel("training step (optimizer updates)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.legend(loc="upper left")
        ref = plotting.save(fig, ctx.outdir, "line", Msg("report.glance.title"), Msg("report.glance.caption"))
        return Evidence(
            method=Msg("report.scale.intro"),
            metrics={"token": "sqrt_dk"},
            tables=[
                Table(
                    "t",
                    Msg("report.run.rule_times"),
                    ["variant", "model", "d_k"],
                    [["ort-int8-dynamic", "not measured", 64], ["fp32", Msg("report.claim.cannot_say"), 8]],
                )
            ],
            figures=[ref],
            literature=[
                LiteratureCheck(
                    "Vaswani et al. 2017",
                    Msg("report.notes.intro"),
                    True,
                    Msg("report.lede", notes_title="x"),
                )
            ],
            skipped=[Msg("report.summary.untested")],
        )

    @staticmethod
    def verdict(metrics):  # type: ignore[no-untyped-def]
        return Verdict(
            Label.PARTLY,
            Msg("common.list", parts=[Msg("common.paired.too_few", n=1), Msg("report.summary.untested")]),
            Kind.EXPERIMENT,
            Msg("report.scale.intro"),
            (Msg("report.claim.cannot_say"),),
            Msg("report.glance.caption"),
            Msg("report.notes.intro"),
        )


@pytest.fixture
def pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Both languages' pages of one catalogued result, written as the report rule writes them
    (every figure text must have its Korean translation)."""
    monkeypatch.setenv(plotting.STRICT_TRANSLATIONS_ENV, "1")
    result = decide_fake(
        monkeypatch, "C05", tmp_path / "C05" / "result.json", CataloguedConcept.run, CataloguedConcept.verdict
    )
    out = {"en": tmp_path / "reports" / "index.html", "ko": tmp_path / "reports" / "index.ko.html"}
    report.run_step(
        {"config": {"report": {"languages": ["en", "ko"]}}},
        {"C05": result},
        {f"html_{lang}": path for lang, path in out.items()},
        1,
    )
    return {lang: path.read_text(encoding="utf-8") for lang, path in out.items()}


def test_each_language_has_its_page_and_they_link_to_each_other(pages: dict[str, str]) -> None:
    assert '<html lang="en">' in pages["en"] and '<html lang="ko">' in pages["ko"]
    assert 'href="index.ko.html" hreflang="ko"' in pages["en"]
    assert 'href="index.html" hreflang="en"' in pages["ko"]
    assert "whylab: LLM 공부 노트를 실험으로 검증하다" in pages["ko"]  # the default title, translated


def test_the_korean_page_has_no_english_sentence_outside_code_and_data(pages: dict[str, str]) -> None:
    from page_text import fixed_text
    from whylab.messages import english_runs

    assert english_runs(fixed_text(pages["ko"], data_tables=True)) == []
    assert english_runs(fixed_text(pages["en"]))  # the check does find English where it is
    ko = pages["ko"]
    for key in (
        "report.summary.untested",
        "report.notes.intro",
        "report.glance.caption",
        "report.claim.cannot_say",
    ):
        assert Msg(key).in_("ko") in ko, key
    assert "부분적으로 지지됨" in ko and "고친 문장:" in ko


def test_the_korean_page_draws_its_figures_and_tables_in_korean(
    pages: dict[str, str], tmp_path: Path
) -> None:
    """Table headers and cells outside code, and the texts each figure was drawn with, are
    Korean (or numbers, symbols and names); the Korean page embeds the Korean figure."""
    import base64

    from page_text import data_table_texts
    from whylab.drawn_texts import reads_english

    ko, en = pages["ko"], pages["en"]
    cells = data_table_texts(ko)
    assert [c for c in cells if reads_english(c, "ko")] == [], cells
    assert {"변형", "모델", "측정하지 않음", Msg("report.claim.cannot_say").in_("ko")} <= set(cells)
    assert "<code>ort-int8-dynamic</code>" in ko  # a name stays as code
    assert "not measured" in [c for c in data_table_texts(en) if reads_english(c, "ko")]  # it finds English
    record = json.loads((tmp_path / "C05" / "result.json").read_text(encoding="utf-8"))
    (fig,) = record["figures"]
    drawn = fig["translations"]["ko"]
    assert drawn["missing"] == [] and [t for t in drawn["texts"] if reads_english(t, "ko")] == []
    assert {"학습 스텝 (옵티마이저 업데이트 횟수)", "검증 손실 (nats/토큰)", "모델"} <= set(drawn["texts"])
    assert Msg("report.glance.title").in_("ko") in drawn["texts"]
    png = {
        lang: (tmp_path / "C05" / p).read_bytes() for lang, p in (("en", fig["path"]), ("ko", drawn["path"]))
    }
    assert png["en"] != png["ko"]
    assert base64.b64encode(png["ko"]).decode() in ko and base64.b64encode(png["en"]).decode() in en
    assert 'class="note untranslated"' not in ko


def test_the_korean_page_ends_with_its_glossary(pages: dict[str, str]) -> None:
    assert '<section id="glossary">' in pages["ko"] and "<td>투영</td>" in pages["ko"]
    assert '<section id="glossary">' not in pages["en"]  # the English page has no glossary


def test_the_hangul_font_is_embedded_with_every_glyph_the_page_uses(pages: dict[str, str]) -> None:
    import base64
    import io

    from fontTools.ttLib import TTFont

    for lang, html in pages.items():
        assert "font-src data:" in html
        found = re.search(
            r'font-family: "WhylabHangul";.*?url\(data:font/woff;base64,([A-Za-z0-9+/=]+)\)', html
        )
        assert found, lang
        cmap = TTFont(io.BytesIO(base64.b64decode(found[1]))).getBestCmap()
        hangul = {c for c in html if "\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e"}
        assert hangul and not {c for c in hangul if ord(c) not in cmap}, lang
        assert len(found[1]) < 600_000, "the font is subset to the page's glyphs"


def test_the_report_renders_without_torch(hostile_result: Path, tmp_path: Path) -> None:
    """The report rule runs in the torch-free environment (workflow/envs/data.yaml) under --sdm
    conda: rendering both pages must not need torch (the banner then leaves out the bench model's
    parameter count)."""
    import subprocess
    import sys

    out = tmp_path / "index.ko.html"
    script = (
        "import sys; sys.modules['torch'] = None\n"  # import torch now raises ImportError
        "from pathlib import Path\n"
        "from whylab import report\n"
        f"html = report.render({{'C01': Path({str(hostile_result)!r})}}, "
        "config={'mechanisms': {'model': {'d_model': 32}, 'tokenizer': {'vocab_size': 100}}}, "
        "title='t', lang='ko')\n"
        f"Path({str(out)!r}).write_text(html, encoding='utf-8')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WhylabHangul" in out.read_text(encoding="utf-8")


def test_the_report_environment_has_what_the_report_imports() -> None:
    import yaml

    env = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/envs/data.yaml").read_text("utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = [d for d in env["dependencies"] if isinstance(d, str)]  # conda-forge's builds, name=version
    names = {p.split("==")[0] for p in pip} | {d.split("=")[0] for d in conda}
    assert {"jinja2", "pyyaml", "jsonschema", "matplotlib", "seaborn", "koreanize-matplotlib"} <= names


def test_the_second_text_record_is_shown_beside_the_page_label(hostile_result: Path, tmp_path: Path) -> None:
    """A claim in benchmarks/second_text.py's record gets its line; a record whose default label
    is not this page's says so."""
    label = json.loads(hostile_result.read_text(encoding="utf-8"))["verdict"]["label"]
    other = "partly supported" if label != "partly supported" else "supported"
    entry = {
        "claim": "C01",
        "default": {"label": other, "believe": other, "parts": {}},
        "second_text": {"label": label, "believe": label, "parts": {}},
        "label_flips": True,
        "believe_flips": True,
        "parts_moved": [],
    }
    path = tmp_path / "labels.json"
    path.write_text(
        json.dumps({"commit": "abc1234", "date": "2026-12-07", "claims": [entry]}), encoding="utf-8"
    )
    html = report.render({"C01": hostile_result}, config={}, title="t", second_text=path)
    assert '<p class="robustness">' in html and "abc1234" in html
    assert "depends on the text" in html and "have changed since" in html
    ko = report.render({"C01": hostile_result}, config={}, title="t", second_text=path, lang="ko")
    assert "다른 영어 텍스트에서" in ko and "바뀌었다" in ko
    assert '<p class="robustness">' not in report.render({"C01": hostile_result}, config={}, title="t")
