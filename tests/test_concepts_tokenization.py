"""C01 and C02: the experiments run on the tiny corpus, and each verdict rule can go every way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogue_checks import assert_explained, assert_record_in_korean, evidence_places
from whylab.concepts import c02_subword as c02
from whylab.concepts import run_concept
from whylab.concepts.c01_tokenization import experiment as c01_experiment
from whylab.concepts.c01_tokenization import verdict as c01
from whylab.config import check_config
from whylab.results import load_result
from whylab.verdict import Kind, Label


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


def c02_metrics(
    monotone: float = 1.0,
    holds: float = 1.0,
    bands: int = 5,
    ko_monotone: float | None = None,
    ko_judged: int = 6,
    en_judged: int = 9,
) -> dict:
    def lang(m: float, judged: int) -> dict:
        return {
            "configs": 9,
            "vacuous_configs": 9 - judged,
            "judged_configs": judged,
            "share_monotone": m if judged else None,
            "share_holds": holds if judged else None,
            "min_usable_bands": bands if judged else 0,
            "top_band": "100+",
            "rarest_band": "0",
            "mean_share_whole_top_band": 0.9,
            "mean_share_whole_rarest_band": 0.03,
        }

    return {
        "per_language": {
            "en": lang(monotone, en_judged),
            "ko": lang(monotone if ko_monotone is None else ko_monotone, ko_judged),
        },
        "notes_examples": {
            "우리": {"train_count": 15, "expected": "whole", "tokenizers": 18, "kept_whole": 12},
            "가족": {"train_count": 0, "expected": "split", "tokenizers": 18, "kept_whole": 0},
        },
        "thresholds": {"holds_share": 0.75, "min_words_per_band": 5, "min_usable_bands": 3},
    }


def test_c02_verdict_every_way() -> None:
    v = c02.verdict(c02_metrics())
    assert v.label is Label.SUPPORTED and v.kind is Kind.EXPERIMENT and v.primary
    assert c02.verdict(c02_metrics(holds=0.3)).label is Label.PARTLY
    split = c02_metrics(holds=0.3)
    split["per_language"]["ko"].update(
        mean_share_whole_top_band_own=0.79, mean_share_whole_top_band_joint=0.59
    )
    assert "in ko the most frequent band is 79% whole with own-language tokenizers and 59%" in (
        c02.verdict(split).reason
    )
    assert c02.verdict(c02_metrics(holds=0.3, monotone=0.1, ko_monotone=0.9)).label is Label.PARTLY
    assert c02.verdict(c02_metrics(holds=0.0, monotone=0.2)).label is Label.NOT_SUPPORTED
    assert c02.verdict(c02_metrics(bands=2)).label is Label.INCONCLUSIVE
    assert c02.verdict(c02_metrics(ko_judged=0, en_judged=0)).label is Label.INCONCLUSIVE


def test_c02_vocabulary_as_large_as_the_word_types_is_left_out() -> None:
    v = c02.verdict(c02_metrics(ko_judged=0))  # every Korean vocabulary could hold every word
    assert v.label is Label.SUPPORTED and len(v.limited) == 1 and v.limited[0].startswith("ko:")
    assert "3 configuration(s) left out" in c02.verdict(c02_metrics(ko_judged=6)).reason


def test_c02_judges_the_notes_examples_by_their_own_frequency() -> None:
    reason = c02.verdict(c02_metrics()).reason
    assert "우리 occurs 15 times in the training split (whole expected): kept whole by 12/18" in reason
    assert "가족 never occurs in the training split, so splitting it is what the claim predicts" in reason
    assert c02.expectation(15, 10) == "whole" and c02.expectation(0, 10) == "split"
    assert c02.expectation(1, 10) == "split" and c02.expectation(5, 10) == "no firm prediction"


def test_c02_shows_the_korean_examples_first_and_bands_held_out_words(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    record = run_concept(
        "C02",
        tokenization_settings("C02"),
        {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus},
        tmp_path / "C02" / "result.json",
    )
    first = record["tables"][0]
    assert first["name"] == "notes_examples" and 0 < len(first["rows"]) <= 40
    word = first["columns"].index("word")
    assert {row[word] for row in first["rows"]} <= {"우리", "가족"}
    examples = record["tables"][1]
    lang = examples["columns"].index("language")
    assert examples["rows"][0][lang] == "ko"
    configs = record["metrics"]["configs"]
    assert all("vocab_covers_word_types" in c and c["trained_word_types"] > 0 for c in configs)
    assert {c["rarest_band"] for c in configs if c["rarest_band"]} <= {"0", "1"}  # unseen words are held out


def test_c02_helpers() -> None:
    assert c02.band_labels([1, 2, 5, 20]) == ["1", "2–4", "5–19", "20+"]
    assert c02.band_labels([0, 1, 2]) == ["0", "1", "2+"]
    assert [c02.band_of(c, [1, 2, 5]) for c in (1, 2, 4, 5, 99)] == [0, 1, 1, 2, 2]
    assert c02.band_of(0, [1, 2]) == -1 and c02.band_of(0, [0, 1]) == 0
    assert c02.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert c02.words("(우리는) the, end.") == ["우리는", "the", "end"]


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


def test_c02_every_branch_has_a_takeaway_and_renders_in_korean() -> None:
    split = c02_metrics(holds=0.3)
    split["per_language"]["ko"].update(
        mean_share_whole_top_band_own=0.79, mean_share_whole_top_band_joint=0.59
    )
    no_firm = c02_metrics()
    no_firm["notes_examples"]["우리"].update(train_count=5, expected="no firm prediction")
    cases = [
        (c02_metrics(), Label.SUPPORTED, "C02.verdict.holds"),
        (c02_metrics(ko_judged=0), Label.SUPPORTED, "C02.verdict.holds"),  # with a limit
        (no_firm, Label.SUPPORTED, "C02.verdict.holds"),
        (split, Label.PARTLY, "C02.verdict.trend_only"),
        (c02_metrics(holds=0.0, monotone=0.2), Label.NOT_SUPPORTED, "C02.verdict.no_trend"),
        (c02_metrics(bands=2), Label.INCONCLUSIVE, "C02.verdict.few_bands"),
        (c02_metrics(ko_judged=0, en_judged=0), Label.INCONCLUSIVE, "C02.verdict.vacuous"),
    ]
    for m, label, branch in cases:
        v = c02.verdict(m)
        assert v.label is label and v.branch == branch
        assert_explained(v, "C02")
    assert (
        "우리 occurs 5 times in the training split (no firm prediction expected)"
        in c02.verdict(no_firm).reason
    )
    bare = c02_metrics(holds=0.0, monotone=0.2)
    bare["notes_examples"] = {}
    assert c02.verdict(bare).reason.endswith(
        "whole; 3 configuration(s) left out: vocabulary at least as large as "
        "the word types they were trained on)."
    )


def test_c02_result_texts_render_in_korean(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    record = run_concept(
        "C02",
        tokenization_settings("C02"),
        {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus},
        tmp_path / "C02" / "result.json",
    )
    assert_record_in_korean(record, required=evidence_places(record))
    assert record["literature"] and record["figures"]
