"""Texts drawn in code, in Korean: the lookup of whylab.drawn_texts (numbers as {}), which texts
need a translation, the translation files, and a figure saved in Korean by plotting.save.

The Korean page's tables and recorded figure texts are checked in tests/test_report.py
(test_the_korean_page_draws_its_figures_and_tables_in_korean)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from whylab import drawn_texts, plotting
from whylab.drawn_texts import DrawnTextsError, keys_of, lookup, merged, needs_translation, translate
from whylab.messages import Msg


def test_a_key_writes_each_number_as_a_place() -> None:
    table = {
        "d_k = {}": "d_k = {}",
        "width {}": "폭 {}(으)로",
        "lr {} at {} of the steps": "스텝의 {}에서 학습률 {}",
        "int8 weights": "int8 가중치",
        "W{}A{} naive": "W{}A{} 단순",
    }
    assert lookup("d_k = 64", table) == "d_k = 64"
    assert lookup("width 512", table) == "폭 512로"  # the particle after the number, by its sound
    assert lookup("width 3.26", table) == "폭 3.26으로"
    assert lookup("lr -1e-3 at 95% of the steps", table) == "스텝의 -1e-3에서 학습률 95%"  # in order
    assert lookup("int8 weights", table) == "int8 가중치"  # a number glued to letters, as written
    assert lookup("W8A8 naive", table) == "W8A8 단순"  # ... or as a place
    assert lookup("width", table) is None
    assert ("notes: {}–{}", ["0.20", "0.30"]) in keys_of("notes: 0.20–0.30")
    assert ("x-{}", ["1"]) in keys_of("x-1")  # a hyphen after a letter is no sign
    assert ("${}^{{}}$ (log)", ["10", "-3"]) in keys_of("$10^{-3}$ (log)")  # math as written or placed
    assert drawn_texts.as_key("$10^{-3}$ at 5") == "$10^{-3}$ at {}"  # the key the missing list writes
    with pytest.raises(DrawnTextsError, match="number places"):
        drawn_texts.fill("폭", ["512"], "width {}")


def test_which_texts_need_a_translation() -> None:
    for text in ("seed", "validation loss (nats/token)", "GPTQ", "int8", "$\\sqrt{d}$ scaling"):
        assert needs_translation(text), text
    for text in ("0.25", "-1e-3", "95%", "d_k", "W_v", "$\\log_{10} x$", "x", "‖Δg‖/‖g‖", "", "검증 손실"):
        assert not needs_translation(text), text
    assert translate("d_k = 64", "ko") == "d_k = 64"  # no words: as it is
    assert translate("no entry for these words at all", "ko") is None
    assert translate("seed", "en") == "seed"
    assert translate("seed", "ko") == "시드"  # common.yaml


def test_translation_files_merge_and_disagreeing_files_fail() -> None:
    a = ("messages/ko/drawn/C01.yaml", '"seed": "시드"\n"step": "스텝"\n')
    same = ("messages/ko/drawn/C02.yaml", '"seed": "시드"\n')
    other = ("messages/ko/drawn/C03.yaml", '"seed": "씨앗"\n')
    assert merged([a, same]) == {"seed": "시드", "step": "스텝"}
    with pytest.raises(DrawnTextsError, match=r"C03\.yaml.*'seed'.*C01\.yaml"):
        merged([a, other])
    with pytest.raises(DrawnTextsError, match="quote yes"):
        merged([("x.yaml", "yes: 예\n")])  # YAML reads an unquoted yes as true
    with pytest.raises(DrawnTextsError, match="number places"):
        merged([("x.yaml", '"d_k = {}": "d_k"\n')])
    with pytest.raises(DrawnTextsError, match="mapping"):
        merged([("x.yaml", "- seed\n")])


def test_the_shipped_translation_files_merge_and_are_not_catalogue_files() -> None:
    from whylab.messages import catalogue

    drawn_texts.translations.cache_clear()
    table = drawn_texts.translations("ko")  # raises on two files that disagree
    assert table["seed"] == "시드"
    assert not [k for k in catalogue("ko") if k.startswith("drawn.")]  # the catalogue skips drawn/
    assert set(catalogue("ko")) == set(catalogue("en"))


def _every_kind_of_artist() -> plt.Figure:
    """One word on each kind of text a figure draws: axis labels, an axes title, legend entries
    and title, an annotation, a figure text, a colorbar label and category tick labels."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.plot([0, 1, 2], [3.0, 2.0, 1.5], label="model")
    left.plot([0, 1, 2], [3.2, 2.6, 2.4], label="variant")
    left.legend(title="language", loc="upper right")
    left.set_xlabel("training step (optimizer updates)")
    left.set_ylabel("validation loss (nats/token)")
    left.set_title("workload")
    left.annotate("notes: 0.20–0.30", (1, 2.0), xytext=(0.2, 1.6))
    right.bar(["yes", "no"], [1.0, 2.0])  # a categorical axis: its tick labels are made at each draw
    right.set_xlabel("micro-batch size (sequences)")
    right.set_ylabel("head dimension d_k (components)")
    fig.colorbar(plt.cm.ScalarMappable(cmap="viridis"), ax=right).set_label("seed")
    fig.text(0.01, 0.01, "CPU: n/a", fontsize=8)
    return fig


KOREAN = {
    "학습 스텝 (옵티마이저 업데이트 횟수)",
    "검증 손실 (nats/토큰)",
    "작업",
    "모델",
    "변형",
    "언어",
    "노트: 0.20–0.30",
    "예",
    "아니요",
    "마이크로배치 크기 (시퀀스 수)",
    "헤드 차원 d_k (성분 수)",
    "시드",
    "CPU: 해당 없음",
}


def test_a_figure_is_saved_in_korean_with_every_text_translated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.setenv(plotting.STRICT_TRANSLATIONS_ENV, "1")
    title = Msg("report.glance.title")
    ref = plotting.save(_every_kind_of_artist(), tmp_path, "kinds", title, Msg("report.glance.caption"))
    drawn = ref.translations["ko"]
    assert drawn["path"] == "figures/ko/kinds.png" and ref.path == "figures/kinds.png"
    assert drawn["missing"] == [] and drawn["texts"][0] == title.in_("ko")
    assert set(drawn["texts"]) >= KOREAN, KOREAN - set(drawn["texts"])
    english = [t for t in drawn["texts"] if drawn_texts.reads_english(t, "ko")]
    assert english == [], english
    en, ko = (np.asarray(Image.open(tmp_path / p).convert("L")) for p in (ref.path, drawn["path"]))
    assert en.shape[1] > 100 and ko.shape[1] > 100 and (en.shape != ko.shape or (en != ko).any())
    assert "translations" in ref.to_dict() and json.dumps(ref.to_dict(), ensure_ascii=False)


def test_a_missing_translation_fails_in_strict_mode_and_stays_english_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def figure() -> plt.Figure:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("an axis nobody translated (units)")
        ax.set_ylabel("seed")
        return fig

    monkeypatch.setenv(plotting.STRICT_TRANSLATIONS_ENV, "1")
    with pytest.raises(plotting.MissingTranslationError, match="'A plain title', 'an axis nobody translated"):
        plotting.save(figure(), tmp_path, "gap", "A plain title", "A caption.")
    monkeypatch.setenv(plotting.STRICT_TRANSLATIONS_ENV, "0")
    ref = plotting.save(figure(), tmp_path, "gap", "A plain title", "A caption.")
    assert (
        "no ko translation of 'A plain title', 'an axis nobody translated (units)'" in capsys.readouterr().err
    )
    drawn = ref.translations["ko"]
    assert drawn["missing"] == ["A plain title", "an axis nobody translated (units)"]
    assert "an axis nobody translated (units)" in drawn["texts"] and "시드" in drawn["texts"]
    assert (tmp_path / drawn["path"]).is_file()


def test_the_missing_list_names_the_texts_with_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whylab.results import Table

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("an axis nobody translated at d = 64")
    ax.set_ylabel("seed")
    ref = plotting.save(fig, tmp_path, "gap", Msg("report.glance.title"), Msg("report.glance.caption"))
    table = Table("t", "c", ["variant", "share_whole"], [["ort-int8-dynamic", "a sentence with no entry"]])
    record = {"claim_id": "C05", "figures": [ref.to_dict()], "tables": [table.to_dict()]}
    (tmp_path / "C05").mkdir()
    (tmp_path / "C05" / "result.json").write_text(json.dumps(record), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "whylab.drawn_texts", "missing", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert '"an axis nobody translated at d = {}": ""  # figure gap' in out
    assert '"share_whole": ""  # table t header' in out and '"a sentence with no entry": ""' in out
    assert "ort-int8-dynamic" not in out and '"variant"' not in out and '"seed"' not in out
