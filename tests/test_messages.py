"""The message catalogues: same keys and parameters in every language, every verdict branch with a
takeaway, Korean texts in Korean, and messages that survive a result file."""

from __future__ import annotations

import json
import pickle
import re

import pytest

from whylab.messages import LANGUAGES, Msg, catalogue, english_runs, from_record, placeholders, to_record

OTHERS = [lang for lang in LANGUAGES if lang != "en"]
BRANCH = re.compile(r"^(C\d\d)\.verdict\.([A-Za-z0-9_]+)\.(reason|takeaway|correction)$")


@pytest.mark.parametrize("lang", OTHERS)
def test_every_language_has_the_same_keys(lang: str) -> None:
    en, other = set(catalogue("en")), set(catalogue(lang))
    assert not en - other, f"in en, missing in {lang}: {sorted(en - other)}"
    assert not other - en, f"in {lang}, missing in en: {sorted(other - en)}"


@pytest.mark.parametrize("lang", OTHERS)
def test_every_key_has_the_same_parameters_in_every_language(lang: str) -> None:
    en, other = catalogue("en"), catalogue(lang)
    differ = {
        key: (sorted(placeholders(en[key])), sorted(placeholders(other[key])))
        for key in en.keys() & other.keys()
        if placeholders(en[key]) != placeholders(other[key])
    }
    assert not differ, differ


def test_every_verdict_branch_has_a_reason_and_a_takeaway() -> None:
    parts: dict[str, set[str]] = {}
    for key in catalogue("en"):
        found = BRANCH.match(key)
        if found:
            parts.setdefault(f"{found[1]}.verdict.{found[2]}", set()).add(found[3])
    from whylab import claims

    assert {branch.split(".")[0] for branch in parts} == set(claims.BY_ID), "a claim without verdict branches"
    lacking = {branch: sorted({"reason", "takeaway"} - got) for branch, got in parts.items()}
    assert not any(lacking.values()), {b: m for b, m in lacking.items() if m}


def _without_placeholders(template: str) -> str:
    return re.sub(r"\{[^{}]*(\{[^{}]*\}[^{}]*)*\}", " 0 ", template)


def test_korean_texts_are_korean() -> None:
    """No English phrase in any Korean text (names, code, units and citations may stay as they are)."""
    english = {
        key: english_runs(_without_placeholders(value))
        for key, value in catalogue("ko").items()
        if key != "report.language_name"
    }
    assert not any(english.values()), {k: v for k, v in english.items() if v}


def test_english_runs_finds_prose_not_names() -> None:
    assert english_runs("스케일링 없이 Pre-LN LayerNorm 이다") == []
    assert english_runs("BERT, GPT, LLaMA 모델과 W_q the d_k") == []
    assert english_runs("판단: too few to test 이다") == ["too few to test"]


def test_a_message_is_its_english_text_and_renders_in_every_language() -> None:
    inner = Msg("common.paired.too_few", n=1)
    outer = Msg("report.notes.corrected", claim="C05")
    assert inner == "n = 1 paired seeds, too few to test" and isinstance(inner, str)
    assert outer.in_("ko") == "C05 고친 문장:"
    listed = Msg("common.list", parts=[inner, Msg("common.paired.too_few", n=2)])
    assert listed == "n = 1 paired seeds, too few to test; n = 2 paired seeds, too few to test"
    assert "짝지은 시드 n = 2개" in listed.in_("ko")


def test_a_message_survives_a_result_file_and_a_pickle() -> None:
    msg = Msg("common.list", parts=[Msg("common.paired.too_few", n=3), "plain"])
    kept = json.loads(json.dumps(to_record(msg)))
    assert from_record(kept, "en") == str(msg) and from_record(kept, "ko") == msg.in_("ko")
    assert json.dumps(msg) == json.dumps(str(msg))  # a result file's plain field holds the English
    again = pickle.loads(pickle.dumps(msg))
    assert again.key == msg.key and again.in_("ko") == msg.in_("ko")
    assert from_record("a plain text", "ko") == "a plain text"


def test_a_missing_key_or_parameter_is_named() -> None:
    with pytest.raises(KeyError, match=r"no\.such\.key"):
        Msg("no.such.key")
    with pytest.raises(ValueError, match=r"common\.paired\.too_few"):
        Msg("common.paired.too_few")
    with pytest.raises(ValueError, match="no message catalogue"):
        catalogue("fr")
