"""C02: the experiment runs on the tiny corpus, measures lightly, and each verdict rule can go every way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogue_checks import assert_explained, assert_in_korean, assert_record_in_korean, evidence_places
from claim_packages import assert_measuring_is_light
from tokenization_claim_settings import tokenization_settings
from whylab.concepts import run_concept
from whylab.concepts.c02_subword import experiment as c02_experiment
from whylab.concepts.c02_subword import verdict as c02
from whylab.concepts.deciding import run_decide
from whylab.concepts.measuring import run_measure
from whylab.concepts.spec import decision_settings, measure_settings
from whylab.results import load_result
from whylab.verdict import Kind, Label


def test_c02_runs_and_writes_a_valid_result(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    claim = "C02"
    out = tmp_path / "concepts" / claim / "result.json"
    record = run_concept(
        claim, tokenization_settings(claim), {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus}, out
    )
    assert load_result(out) == json.loads(out.read_text(encoding="utf-8"))
    assert record["verdict"]["label"] in {str(label) for label in Label}
    for fig in record["figures"]:
        assert (out.parent / fig["path"]).stat().st_size > 1000
    assert not [p for p in out.parent.parent.iterdir() if p.name.startswith(".")], "no temp folder left"


def test_c02_measuring_imports_no_drawing_or_texts() -> None:
    assert_measuring_is_light("C02")


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
    assert c02_experiment.band_labels([1, 2, 5, 20]) == ["1", "2–4", "5–19", "20+"]
    assert c02_experiment.band_labels([0, 1, 2]) == ["0", "1", "2+"]
    assert [c02_experiment.band_of(c, [1, 2, 5]) for c in (1, 2, 4, 5, 99)] == [0, 1, 1, 2, 2]
    assert c02_experiment.band_of(0, [1, 2]) == -1 and c02_experiment.band_of(0, [0, 1]) == 0
    assert c02.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert c02_experiment.words("(우리는) the, end.") == ["우리는", "the", "end"]


def test_c02_decision_settings_are_decided_from_the_same_measurements(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    """The measure job gets the settings less claim.yaml's decision_settings; the decide job
    reads them (and its result matches the one-process run)."""
    settings = tokenization_settings("C02")
    inputs = {"tokenizers": tiny_tokenizers, "corpus": tiny_corpus}
    measured = tmp_path / "measurements.json"
    run_measure("C02", measure_settings("C02", settings), inputs, measured)
    assert not set(decision_settings("C02")) & set(json.loads(measured.read_text(encoding="utf-8"))["config"])
    one_process = run_concept("C02", settings, inputs, tmp_path / "one" / "C02" / "result.json")
    split = run_decide(
        "C02", settings, {"measurements": measured}, tmp_path / "split" / "C02" / "result.json"
    )
    for key in ("metrics", "verdict", "tables", "method"):
        assert split[key] == one_process[key]
    stricter = {**settings, "whole_share_frequent": 0.99, "example_frequent_min": 2}
    again = run_decide(
        "C02", stricter, {"measurements": measured}, tmp_path / "again" / "C02" / "result.json"
    )
    assert again["metrics"]["thresholds"]["whole_share_frequent"] == 0.99
    assert again["metrics"]["thresholds"]["example_frequent_min"] == 2


# --------------------------------------------------------------------------- the texts in Korean


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


def test_c02_parts_and_the_korean_limit() -> None:
    m = c02_metrics(holds=0.4)
    for v in m["per_language"].values():
        v.update(share_frequent_whole=0.4, share_rare_split=1.0)
    m["per_language"]["en"].update(share_frequent_whole=0.89)
    m["per_language"]["ko"].update(top_band="20–99")
    parts = {p.id: p for p in c02.verdict(m).parts}
    # English holds; the Korean top band (20–99) is too rare to show it: limited, never lower
    assert parts["frequent_whole"].run is Label.SUPPORTED
    assert "below 100" in str(parts["frequent_whole"].reason)
    assert parts["rare_split"].run is Label.SUPPORTED
    m["per_language"]["ko"].update(top_band="100+")
    assert {p.id: p.run for p in c02.verdict(m).parts}["frequent_whole"] is Label.PARTLY
    for v in m["per_language"].values():
        v.update(share_frequent_whole=0.1, share_rare_split=0.1)
    runs = {p.id: p.run for p in c02.verdict(m).parts}
    assert runs == {"frequent_whole": Label.NOT_SUPPORTED, "rare_split": Label.NOT_SUPPORTED}
    for p in c02.verdict(m).parts:
        assert_in_korean(p.reason)
