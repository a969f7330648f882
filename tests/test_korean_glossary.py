"""The Korean texts use the glossary's one term per concept (whylab/messages/glossary.ko.yaml)."""

from __future__ import annotations

import re

from whylab.messages import catalogue, glossary


def _prose(text: str) -> str:
    return re.sub(r"\{[^{}]*(\{[^{}]*\}[^{}]*)*\}", "{}", text)  # placeholders are code, not terms


def test_the_glossary_has_one_korean_term_per_english_term() -> None:
    terms = glossary("ko")
    assert terms, "no Korean glossary"
    for term in terms:
        assert {"en", "ko", "avoid", "note"} <= term.keys(), term
        for pattern in term["avoid"]:
            assert not re.search(pattern, term["ko"]), (term["ko"], pattern)
    english = [term["en"] for term in terms]
    assert len(english) == len(set(english)), "an English term listed twice"


def _korean_texts() -> dict[str, str]:
    """The catalogue's texts and the drawn texts' translations (figures and tables,
    messages/ko/drawn/), the latter keyed by their English."""
    from whylab.drawn_texts import translations

    return {**catalogue("ko"), **{f"drawn: {en}": ko for en, ko in translations("ko").items()}}


def test_korean_texts_do_not_use_an_alternative_the_glossary_lists() -> None:
    found = {
        key: [
            (term["ko"], hit.group())
            for term in glossary("ko")
            for p in term["avoid"]
            for hit in re.finditer(p, _prose(text))
        ]
        for key, text in _korean_texts().items()
    }
    assert not any(found.values()), {key: hits for key, hits in found.items() if hits}


def test_the_glossary_is_not_a_catalogue() -> None:
    assert not any(key.startswith("glossary") for key in catalogue("ko"))
    assert glossary("en") == []


def _texts_without_placeholders() -> dict[str, str]:
    return {key: _prose(text) for key, text in catalogue("ko").items()}


def test_korean_texts_are_sentences_not_semicolon_chains() -> None:
    chained = {key: text for key, text in _texts_without_placeholders().items() if ";" in text}
    assert not chained, chained


def test_no_korean_text_ends_a_question_with_a_full_stop() -> None:
    assert not {key: text for key, text in _texts_without_placeholders().items() if "?." in text}


def test_a_figure_title_ending_in_a_question_mark_gets_no_full_stop() -> None:
    from whylab.report import _env

    caption = _env("ko").from_string(
        '<strong>{{ title }}{% if title[-1:] not in "?!." %}.{% endif %}</strong>'
    )
    template = _env("ko").loader.get_source(_env("ko"), "report.html")[0]  # type: ignore[union-attr]
    assert '{{ fig.title }}{% if fig.title[-1:] not in "?!." %}.{% endif %}' in template
    assert caption.render(title="Pre-LN은 어디서 이기는가?") == "<strong>Pre-LN은 어디서 이기는가?</strong>"
    assert caption.render(title="손실") == "<strong>손실.</strong>"


def test_a_language_code_reads_as_the_language_in_korean_and_stays_a_code_in_english() -> None:
    from whylab.messages import Msg, language_name

    method = Msg("C14.skipped.not_new_language", lang=language_name("en"))
    assert method.in_("ko").startswith("미학습 언어 확인: 영어는") and "en" in str(method)
    assert language_name("xx") == "xx"
