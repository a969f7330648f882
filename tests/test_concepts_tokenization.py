"""C01 and C02: the experiments run on the tiny corpus, and each verdict rule can go every way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whylab.concepts import c01_tokenization as c01
from whylab.concepts import c02_subword as c02
from whylab.concepts import run_concept
from whylab.config import check_config
from whylab.results import load_result
from whylab.verdict import Label


def tokenization_settings(claim: str) -> dict:
    config = check_config({"tokenizers": {"vocab_sizes": [800]}})
    return {
        **config["concepts"][claim],
        "seeds": [0],
        "device": "cpu",
        "tokenizers": config["tokenizers"],
        "tokenizer_scopes": ["joint"],
        "languages": ["en", "ko"],
    }


@pytest.mark.parametrize("claim", ["C01", "C02"])
def test_concept_runs_and_writes_a_valid_result(
    claim: str, tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    out = tmp_path / "concepts" / claim / "result.json"
    record = run_concept(
        claim, tokenization_settings(claim), {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus}, out
    )
    assert load_result(out) == json.loads(out.read_text(encoding="utf-8"))
    assert record["verdict"]["label"] in {str(label) for label in Label}
    for fig in record["figures"]:
        assert (out.parent / fig["path"]).stat().st_size > 1000
    assert not [p for p in out.parent.parent.iterdir() if p.name.startswith(".")], "no temp folder left"


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


def c01_metrics(
    bpe: float = 1.0, wordpiece: float = 0.1, squashed: float = 0.95, in_range: bool = True
) -> dict:
    return {
        "tokenizers": 2,
        "all_ids_in_range": in_range,
        "by_algorithm": {
            "bpe": {
                "min_exact_round_trip": bpe,
                "min_round_trip_ignoring_spaces": max(bpe, squashed),
                "max_unk_rate": 0.0,
            },
            "wordpiece": {
                "min_exact_round_trip": wordpiece,
                "min_round_trip_ignoring_spaces": squashed,
                "max_unk_rate": 0.01,
            },
        },
    }


def test_c01_verdict_every_way() -> None:
    assert c01.verdict(c01_metrics()).label is Label.SUPPORTED
    assert c01.verdict(c01_metrics(wordpiece=1.0)).label is Label.SUPPORTED
    assert c01.verdict(c01_metrics(bpe=0.5, squashed=0.995)).label is Label.PARTLY
    assert c01.verdict(c01_metrics(bpe=0.5, squashed=0.6)).label is Label.NOT_SUPPORTED
    assert c01.verdict(c01_metrics(in_range=False)).label is Label.NOT_SUPPORTED


def c02_metrics(
    monotone: float = 1.0, holds: float = 1.0, bands: int = 5, ko_monotone: float | None = None
) -> dict:
    def lang(m: float) -> dict:
        return {
            "share_monotone": m,
            "share_holds": holds,
            "min_usable_bands": bands,
            "top_band": "100+",
            "mean_share_whole_top_band": 0.9,
            "mean_share_whole_rarest_band": 0.05,
        }

    return {
        "per_language": {"en": lang(monotone), "ko": lang(monotone if ko_monotone is None else ko_monotone)},
        "notes_examples": {"우리": {"tokenizers": 3, "kept_whole": 2}},
        "thresholds": {"holds_share": 0.75, "min_words_per_band": 5, "min_usable_bands": 3},
    }


def test_c02_verdict_every_way() -> None:
    assert c02.verdict(c02_metrics()).label is Label.SUPPORTED
    assert c02.verdict(c02_metrics(holds=0.3)).label is Label.PARTLY
    assert c02.verdict(c02_metrics(holds=0.3, monotone=0.1, ko_monotone=0.9)).label is Label.PARTLY
    assert c02.verdict(c02_metrics(holds=0.0, monotone=0.2)).label is Label.NOT_SUPPORTED
    assert c02.verdict(c02_metrics(bands=2)).label is Label.INCONCLUSIVE
    assert "우리 kept whole by 2/3" in c02.verdict(c02_metrics()).reason


def test_c02_helpers() -> None:
    assert c02.band_labels([1, 2, 5, 20]) == ["1", "2–4", "5–19", "20+"]
    assert [c02.band_of(c, [1, 2, 5]) for c in (1, 2, 4, 5, 99)] == [0, 1, 1, 2, 2]
    assert c02.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert c02.words("(우리는) the, end.") == ["우리는", "the", "end"]
