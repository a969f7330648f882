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


def test_korean_texts_do_not_use_an_alternative_the_glossary_lists() -> None:
    found = {
        key: [
            (term["ko"], hit.group())
            for term in glossary("ko")
            for p in term["avoid"]
            for hit in re.finditer(p, _prose(text))
        ]
        for key, text in catalogue("ko").items()
    }
    assert not any(found.values()), {key: hits for key, hits in found.items() if hits}


def test_the_glossary_is_not_a_catalogue() -> None:
    assert not any(key.startswith("glossary") for key in catalogue("ko"))
    assert glossary("en") == []
