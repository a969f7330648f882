"""The Korean of the texts C12-C21 draw in their figures and show in their tables
(``messages/ko/drawn/C12.yaml`` ... ``C21.yaml``): each file a flat mapping from the English text as
drawn, every number written ``{}``, to its Korean, with the same ``{}`` in the same count; a value is
Korean (it has Hangul) or the text itself (an identifier: a variant, model or format name); one
English text has one Korean text across the files.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

import pytest

from whylab.files import parse_yaml

CLAIMS = [f"C{n}" for n in range(12, 22)]
HANGUL = re.compile("[\uac00-\ud7a3]")
HOLE = "{}"
# what a number is in a drawn text (the rule of every drawn file, C01-C21): digits not inside a name
# ("fp32", "torchao_int4", "W8A8", "model.layers.1" keep theirs), with a sign where one stands
# before them, a decimal part, an exponent and a percent sign ("batch 8", "12.5%", "α=0.5", "-1",
# "1e-3", "GPT-2", "110M")
NUMBER = re.compile(r"(?<![A-Za-z_\d.])(?:(?<![A-Za-z\d])[-+−])?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?")


def drawn(claim: str) -> Any:
    entry = files("whylab").joinpath("messages", "ko", "drawn", f"{claim}.yaml")
    return parse_yaml(entry.read_text("utf-8"))


@pytest.mark.parametrize("claim", CLAIMS)
def test_each_file_is_a_flat_mapping_of_texts(claim: str) -> None:
    data = drawn(claim)
    assert isinstance(data, dict) and data, f"{claim}: not a mapping, or empty"
    wrong = {k: v for k, v in data.items() if not isinstance(k, str) or not isinstance(v, str)}
    assert not wrong, f"{claim}: keys and values must be texts: {wrong}"


@pytest.mark.parametrize("claim", CLAIMS)
def test_the_korean_keeps_every_number_hole(claim: str) -> None:
    wrong = {k: v for k, v in drawn(claim).items() if k.count(HOLE) != v.count(HOLE)}
    assert not wrong, f"{claim}: the {{}} counts of key and value differ: {wrong}"


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_key_writes_its_numbers_as_holes(claim: str) -> None:
    """A key is the drawn text with its numbers as ``{}``: a number left standing would never match."""
    wrong = [k for k in drawn(claim) if NUMBER.search(k)]
    assert not wrong, f"{claim}: numbers left in keys: {wrong}"


@pytest.mark.parametrize("claim", CLAIMS)
def test_each_value_is_korean_or_the_identifier_itself(claim: str) -> None:
    wrong = {k: v for k, v in drawn(claim).items() if not HANGUL.search(v) and v != k}
    assert not wrong, f"{claim}: values neither Korean nor the key itself: {wrong}"


def test_one_english_text_has_one_korean_text() -> None:
    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for claim in CLAIMS:
        for key, value in drawn(claim).items():
            if key in seen and seen[key][1] != value:
                clashes.append(f"{key!r}: {seen[key][0]} {seen[key][1]!r}, {claim} {value!r}")
            seen.setdefault(key, (claim, value))
    assert not clashes, "\n".join(clashes)


def test_the_sentences_built_in_code_are_catalogue_messages() -> None:
    """The cells that were English f-strings (C12/C13 part evidence, the real-scale fast-path cell,
    C15's library cross-checks) are messages, so the Korean page has their Korean."""
    from whylab.concepts.c15_gptq.figures import library_rows
    from whylab.messages import Msg
    from whylab.quant.report import fast_path_cell

    cell = fast_path_cell({"exists": True, "why": "x", "why_msg": Msg("quant.fast_path.vnni").to_dict()})
    assert isinstance(cell, Msg) and HANGUL.search(cell.in_("ko"))
    rows = library_rows(
        {"ignores_hessian": True, "max_diff_real_vs_identity_hessian": 0.0, "max_diff_vs_rtn": 0.0},
        {"ran": False, "why_not": "torchao is not installed"},
    )
    assert all(isinstance(r["what was checked"], Msg) for r in rows)
    assert all(HANGUL.search(r["what was checked"].in_("ko")) for r in rows)
