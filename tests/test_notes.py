"""The notes are quoted verbatim: every quote is text of the notes as shipped, and the shipped
copy is the notes themselves."""

from __future__ import annotations

import difflib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from whylab import claims
from whylab.report_notes import annotate_notes

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


# --------------------------------------------------------------------------- the parts' words

# a line of the notes' code blocks: a comment, an assignment or a call
CODE_LINE = re.compile(r"^#|\s=\s|[A-Za-z_]\w*\(")
CODE_LIKE = re.compile(r"=|_|bytes/|\w\.\w+\(|^#")


def claim_parts() -> dict[str, list[dict[str, Any]]]:
    """Each claim's ``parts`` as its claim.yaml writes them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((Path(__file__).resolve().parents[1] / "src/whylab/concepts").glob("*/claim.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        out[spec["claim"]] = list(spec.get("parts") or [])
    return out


def _looks_like_code(words: str, code_lines: list[str]) -> bool:
    stripped = [line.lstrip("#- ").strip() for line in code_lines]
    return bool(CODE_LIKE.search(words) or difflib.get_close_matches(words, stripped, n=1, cutoff=0.6))


def test_the_parts_words_are_the_notes_words() -> None:
    """Every part's words are verbatim in the notes, so the annotated notes can mark them. Words
    missing that look like a code line of the notes (a typo in claim.yaml) fail; others are
    reported as paraphrases."""
    notes = claims.notes_text()
    code_lines = [line for line in notes.split("\n") if CODE_LINE.search(line)]
    found, missing = [], []
    for cid, parts in claim_parts().items():
        for part in parts:
            (found if part["words"] in notes else missing).append((cid, part["id"], part["words"]))
    typos = [m for m in missing if _looks_like_code(m[2], code_lines)]
    assert not typos, f"parts' words that look like a code line of the notes but are not in them: {typos}"
    if missing:
        warnings.warn(
            f"parts' words not verbatim in the notes (paraphrases, left unmarked): {missing}", stacklevel=2
        )
    words = {w for _, _, w in found}
    for quote in ("AdaFactor: 2-4 bytes/파라미터", "대략 모델크기의 20-30%", "BERT_FP32 = 110M * 4 = 440MB"):
        assert any(quote in w for w in words), quote
    assert len(found) >= 60


def test_code_like_words_that_are_not_in_the_notes_are_caught() -> None:
    code_lines = [line for line in claims.notes_text().split("\n") if CODE_LINE.search(line)]
    assert "#- AdaFactor: 2-4 bytes/파라미터" in code_lines and "#- 대략 모델크기의 20-30%" in code_lines
    assert _looks_like_code("BERT_FP32 = 110M * 4 = 44OMB", code_lines)
    assert _looks_like_code("대략 모델 크기의 20-30%", code_lines)  # a space too many
    assert not _looks_like_code("문장 길이가 달라서 배치 정규화가 잘 안 된다", code_lines)


def test_every_found_part_is_marked_once_after_its_line() -> None:
    notes = claims.notes_text()
    parts = claim_parts()
    for claim_parts_ in parts.values():
        for part in claim_parts_:
            part["believe"] = {"label": "supported", "source": "this run"}
    lines = annotate_notes(notes, {}, parts)
    marked = [(p["claim"], p["id"]) for line in lines for p in line["parts"]]
    expected = [(cid, p["id"]) for cid, ps in parts.items() for p in ps if p["words"] in notes]
    assert sorted(marked) == sorted(expected)
    text = notes.split("\n")
    for i, line in enumerate(lines):
        for p in line["parts"]:
            assert p["words"] in text[i], (i, p)
    # the code lines: each badge after its own line, the code's text untouched
    ids = {text[i]: [p["id"] for p in line["parts"]] for i, line in enumerate(lines)}
    assert ids["#- AdaFactor: 2-4 bytes/파라미터"] == ["adafactor_no_beta1", "adafactor_beta1"]
    assert ids["#- 대략 모델크기의 20-30%"] == ["activation_band"]
    assert "int8" in ids["INT8 = 1"] and not ids["BERT_INT8 = 110M * 1 = 110MB"]
    assert "\n".join("".join(s["text"] for s in line["segments"]) for line in lines) == notes
