"""The notes are quoted verbatim: every quote is text of the notes as shipped, and the shipped
copy is the notes themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from whylab import claims

SEED = Path(__file__).resolve().parents[1] / ".." / "shared" / "seed" / "llm-notes.ko.md"


def test_every_quote_is_text_of_the_notes() -> None:
    notes = claims.notes_text()
    for claim in claims.CLAIMS:
        assert claim.quotes, f"{claim.id} quotes nothing of the notes"
        for quote in claim.quotes:
            assert quote in notes, f"{claim.id} quotes {quote!r}, which is not in the notes"


def test_quotes_are_unique_in_the_notes() -> None:
    """So the annotated notes mark the sentence the claim is about, and no other."""
    notes = claims.notes_text()
    for claim in claims.CLAIMS:
        for quote in claim.quotes:
            assert notes.count(quote) == 1, f"{claim.id}: {quote!r} occurs {notes.count(quote)} times"


def test_misspellings_are_named_only_where_quoted() -> None:
    for claim in claims.CLAIMS:
        for written, meant in claim.misspelled:
            assert any(written in q for q in claim.quotes), f"{claim.id}: {written!r} is not in its quotes"
            assert written != meant
    assert ("서브위드", "서브워드") in claims.BY_ID["C02"].misspelled


def test_the_shipped_notes_are_the_seed_notes() -> None:
    if not SEED.is_file():
        pytest.skip(f"{SEED} is not beside this checkout")
    assert claims.notes_text() == SEED.read_text(encoding="utf-8")


def test_sections_cover_every_claim_once() -> None:
    ids = [cid for _, members in claims.SECTIONS for cid in members]
    assert sorted(ids) == sorted(claims.BY_ID) and len(ids) == len(set(ids))
    assert claims.BY_ID["C14"].section == "Quantization"
