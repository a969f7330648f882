"""C01: the experiment runs on the tiny corpus, measures lightly, and each verdict rule can go every way."""

from __future__ import annotations

import json
from pathlib import Path

from catalogue_checks import assert_explained, assert_record_in_korean, evidence_places
from claim_packages import assert_measuring_is_light
from tokenization_claim_settings import tokenization_settings
from whylab.concepts import run_concept
from whylab.concepts.c01_tokenization import experiment as c01_experiment
from whylab.concepts.c01_tokenization import verdict as c01
from whylab.results import load_result
from whylab.verdict import Kind, Label


def test_c01_runs_and_writes_a_valid_result(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    claim = "C01"
    out = tmp_path / "concepts" / claim / "result.json"
    record = run_concept(
        claim, tokenization_settings(claim), {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus}, out
    )
    assert load_result(out) == json.loads(out.read_text(encoding="utf-8"))
    assert record["verdict"]["label"] in {str(label) for label in Label}
    for fig in record["figures"]:
        assert (out.parent / fig["path"]).stat().st_size > 1000
    assert not [p for p in out.parent.parent.iterdir() if p.name.startswith(".")], "no temp folder left"


def test_c01_measuring_imports_no_drawing_or_texts() -> None:
    assert_measuring_is_light("C01")


def test_c01_shows_the_notes_sentence_and_byte_bpe_is_lossless(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    record = run_concept(
        "C01",
        tokenization_settings("C01"),
        {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus},
        tmp_path / "C01" / "result.json",
    )
    assert record["metrics"]["by_algorithm"]["bpe"]["min_exact_round_trip"] == 1.0
    samples = record["tables"][0]["rows"]
    assert any("팀장님" in row[2] for row in samples)


def _algo(
    exact: float, squashed: float, unk: float, failed: int, unknown: int, spaces: int, pre: str
) -> dict:
    return {
        "min_exact_round_trip": exact,
        "min_round_trip_ignoring_spaces": squashed,
        "max_unk_rate": unk,
        "paragraphs": 100,
        "failed": failed,
        "failed_unknown_token": unknown,
        "failed_whitespace_only": spaces,
        "failed_normal_form_only": 0,
        "failed_other": failed - unknown - spaces,
        "normalizer": "NFC",
        "pre_tokenizer": pre,
        "decoder": pre,
        "byte_fallback": False,
        "has_unknown_token": pre != "ByteLevel",
    }


def c01_metrics(
    bpe: float = 1.0, wordpiece: float = 0.1, squashed: float = 0.95, in_range: bool = True
) -> dict:
    bpe_failed = round(100 * (1 - bpe))
    wp_failed = round(100 * (1 - wordpiece))
    return {
        "tokenizers": 2,
        "all_ids_in_range": in_range,
        "by_algorithm": {
            "bpe": _algo(bpe, max(bpe, squashed), 0.0, bpe_failed, 0, bpe_failed, "ByteLevel"),
            "wordpiece": _algo(wordpiece, squashed, 0.01, wp_failed, 2, wp_failed - 2, "BertPreTokenizer"),
        },
    }


def test_c01_verdict_every_way() -> None:
    v = c01.verdict(c01_metrics())
    assert v.label is Label.SUPPORTED and v.kind is Kind.DEFINITION and v.primary
    assert "bpe is reversible (byte-level" in v.reason and "wordpiece is not" in v.reason
    assert "decoder rejoins the pieces with single spaces (88 paragraphs" in v.reason
    assert "unknown token (2 paragraphs" in v.reason
    assert c01.verdict(c01_metrics(wordpiece=1.0)).label is Label.SUPPORTED
    partly = c01.verdict(c01_metrics(bpe=0.5, squashed=0.995))
    assert partly.label is Label.PARTLY and partly.correction
    assert c01.verdict(c01_metrics(bpe=0.5, squashed=0.6)).label is Label.NOT_SUPPORTED
    assert c01.verdict(c01_metrics(in_range=False)).label is Label.NOT_SUPPORTED


def test_c01_loss_causes() -> None:
    texts = ["a  b", "x y", "e\u0301", "z?"]  # the third in NFD: e + combining acute accent
    decoded = ["a b", "x y", "\u00e9", "<unk>"]
    ids = [[1, 2], [3, 4], [5], [0]]
    causes = c01_experiment.loss_causes(texts, decoded, ids, unk_id=0)
    assert causes == {
        "failed": 3,
        "unknown_token": 1,
        "whitespace_only": 1,
        "normal_form_only": 1,
        "other": 0,
    }


# --------------------------------------------------------------------------- the texts in Korean


def test_c01_every_branch_has_a_takeaway_and_renders_in_korean() -> None:
    cases = {
        Label.SUPPORTED: [c01_metrics(), c01_metrics(wordpiece=1.0)],
        Label.PARTLY: [c01_metrics(bpe=0.5, squashed=0.995)],
        Label.NOT_SUPPORTED: [c01_metrics(bpe=0.5, squashed=0.6), c01_metrics(in_range=False)],
    }
    for label, metrics in cases.items():
        for m in metrics:
            v = c01.verdict(m)
            assert v.label is label
            assert_explained(v, "C01")
    assert "bpe here" not in c01.verdict(c01_metrics()).takeaway
    assert "(byte-level BPE here)" in c01.verdict(c01_metrics()).takeaway


def test_c01_every_cause_of_loss_renders_in_korean() -> None:
    m = c01_metrics(bpe=0.5, squashed=0.6)
    m["by_algorithm"]["unigram"] = {
        **_algo(1.0, 1.0, 0.0, 0, 0, 0, "Metaspace"),
    }
    m["by_algorithm"]["other"] = {**_algo(1.0, 1.0, 0.0, 0, 0, 0, "Split")}
    m["by_algorithm"]["wordpiece"].update(
        byte_fallback=True, failed_normal_form_only=3, failed_other=4, pre_tokenizer="Split"
    )
    v = c01.verdict(m)
    assert v.label is Label.SUPPORTED
    for part in ("despite byte fallback", "Unicode normal form", "4 paragraphs differ otherwise", "▁"):
        assert part in v.reason
    assert "Split pre-tokenizer and Split decoder lost nothing" in v.reason
    assert "its Split pre-tokenizer and BertPreTokenizer decoder do not keep the spacing" in v.reason
    assert_explained(v, "C01")


def test_c01_result_texts_render_in_korean(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    record = run_concept(
        "C01",
        tokenization_settings("C01"),
        {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus},
        tmp_path / "C01" / "result.json",
    )
    assert_record_in_korean(record, required=evidence_places(record))


# --------------------------------------------------------------------------- parts


def test_c01_parts_follow_the_round_trips_and_the_published_vocabularies() -> None:
    from catalogue_checks import assert_in_korean

    def runs(m: dict) -> list[Label]:
        return [p.run for p in c01.verdict(m).parts]

    assert runs(c01_metrics()) == [Label.SUPPORTED, Label.SUPPORTED]
    assert runs(c01_metrics(bpe=0.5, squashed=0.995)) == [Label.SUPPORTED, Label.PARTLY]
    assert runs(c01_metrics(bpe=0.5, squashed=0.6)) == [Label.SUPPORTED, Label.NOT_SUPPORTED]
    assert runs(c01_metrics(in_range=False))[0] is Label.NOT_SUPPORTED
    ids, trip = c01.verdict(c01_metrics()).parts
    assert ids.field is not None and trip.field is not None
    assert ids.field.label is Label.SUPPORTED and "50257" in ids.field.reason
    assert trip.field.label is Label.SUPPORTED and "256 byte values" in trip.field.reason
    for m in (c01_metrics(), c01_metrics(in_range=False)):
        for p in c01.verdict(m).parts:
            assert_in_korean(p.reason)
            assert p.field is not None
            assert_in_korean(p.field.reason)
