"""C20 (gradient accumulation): the verdict driven to every label from synthetic metrics, and a
tiny run whose every text is a message that renders in Korean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalogue_checks import assert_explained, assert_in_korean, record_messages
from claim_packages import assert_measuring_is_light
from whylab.concepts.c20_accumulation import figures as c20_figures
from whylab.concepts.c20_accumulation import verdict as c20
from whylab.verdict import Label


def _c20(**kw: Any) -> dict[str, Any]:
    m = {
        "equal_tolerance": 1e-5,
        "equal_max_rel": 2e-7,
        "padded_mean_of_means_max_rel": 0.8,
        "padded_token_sum_max_rel": 2e-7,
        "peak_reduction": 0.5,
        "micro_smallest": 1,
        "micro_largest": 8,
    }
    m.update(kw)
    return m


def test_c20_supported() -> None:
    v = c20.verdict(_c20())
    assert v.label == Label.SUPPORTED and "0.80" in v.reason


def test_c20_partly() -> None:
    assert c20.verdict(_c20(peak_reduction=0.01)).label == Label.PARTLY
    assert c20.verdict(_c20(padded_token_sum_max_rel=0.1)).label == Label.PARTLY


def test_c20_not_supported_and_inconclusive() -> None:
    assert c20.verdict(_c20(equal_max_rel=0.01)).label == Label.NOT_SUPPORTED
    assert c20.verdict(_c20(micro_smallest=8)).label == Label.INCONCLUSIVE


@pytest.mark.parametrize(
    ("change", "label", "branch"),
    [
        ({}, Label.SUPPORTED, "split"),
        ({"peak_reduction": 0.01}, Label.PARTLY, "no_memory_saving"),
        ({"padded_token_sum_max_rel": 0.1}, Label.PARTLY, "padded_differs"),
        ({"equal_max_rel": 0.01}, Label.NOT_SUPPORTED, "not_equal"),
        ({"micro_smallest": 8}, Label.INCONCLUSIVE, "one_micro"),
    ],
)
def test_c20_every_branch_has_a_takeaway_a_correction_where_due_and_korean_texts(
    change: dict[str, Any], label: Label, branch: str
) -> None:
    v = c20.verdict(_c20(**change))
    assert v.label == label
    assert_explained(v, "C20", branch)


def test_c20_corrections_quote_the_measured_numbers() -> None:
    v = c20.verdict(_c20(peak_reduction=0.012))
    assert "micro-batch 1 peaked only 1.2% below micro-batch 8" in v.correction
    v = c20.verdict(_c20(padded_token_sum_max_rel=0.1))
    assert "50% less peak memory" in v.correction and "differed by 1.0e-01" in v.correction
    v = c20.verdict(_c20(equal_max_rel=0.01))
    assert "differs from the large batch's by 1.0e-02 (relative), above the tolerance 1e-05" in v.correction
    # the English reasons are as before the catalogue
    assert c20.verdict(_c20()).reason == (
        "Accumulated gradients equal the large batch's to 2.0e-07 (relative) and micro-batches of 1 cut "
        "peak memory by 50% vs 8; with padding, averaging micro-batch means instead of token sums is off "
        "by up to 0.80."
    )


def test_c20_run_writes_every_text_as_a_message_that_renders_in_korean(tmp_path: Path) -> None:
    from whylab.concepts import run_concept
    from whylab.results import validate_result

    settings = {
        "seeds": [0],
        "device": "cpu",
        "model": {
            "vocab_size": 64,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_layers": 1,
            "num_heads": 2,
        },
        "repeats": 2,
        "batch_size": 4,
        "seq_len": 8,
        "min_len": 2,
        "micro_batch_sizes": [1, 4],
        "equal_tolerance": 1e-5,
    }
    record = run_concept("C20", settings, {}, tmp_path / "C20" / "result.json")
    validate_result(record)
    texts = list(record_messages(record))
    keys = {t.key for t in texts}
    assert {"C20.method", "C20.table.memory.caption", "C20.figure.gradient_difference.caption"} <= keys
    assert {"C20.literature.hf_fix.finding", "C20.literature.hf_fix.note", "C20.primary"} <= keys
    for t in texts:
        assert_in_korean(t)
    # the tracker's method is the words tracked_peak writes
    assert (
        c20_figures.memory_method_text("MemTracker (dispatch-level live tensor bytes)").key
        == "C20.memory_method.tracker"
    )
    assert (
        c20_figures.memory_method_text("torch.cuda.max_memory_allocated") == "torch.cuda.max_memory_allocated"
    )


def test_measuring_imports_no_plotting_texts_or_verdicts() -> None:
    assert_measuring_is_light("C20")


def test_c20_parts_follow_the_gradients_the_memory_and_goyal() -> None:
    from catalogue_checks import assert_in_korean

    def runs(**kw: Any) -> list[Label]:
        return [p.run for p in c20.verdict(_c20(equal_rel_sd=1e-7, equal_seeds=3, **kw)).parts]

    assert runs() == [Label.SUPPORTED, Label.SUPPORTED]
    assert runs(padded_token_sum_max_rel=0.1) == [Label.PARTLY, Label.SUPPORTED]
    assert runs(equal_max_rel=0.01) == [Label.NOT_SUPPORTED, Label.SUPPORTED]
    assert runs(peak_reduction=0.01) == [Label.SUPPORTED, Label.NOT_SUPPORTED]
    assert runs(micro_smallest=8) == [Label.INCONCLUSIVE, Label.INCONCLUSIVE]
    noisy = c20.verdict(_c20(equal_max_rel=0.01, equal_rel_sd=0.1, equal_seeds=3)).parts[0]
    assert noisy.power is not None and noisy.power.limited and noisy.run is Label.INCONCLUSIVE
    grad = c20.verdict(_c20(equal_rel_sd=1e-7, equal_seeds=3)).parts[0]
    assert grad.field is not None and grad.field.label is Label.SUPPORTED and "8192" in grad.field.reason
    for p in c20.verdict(_c20()).parts:
        assert_in_korean(p.reason)
    assert_in_korean(grad.reason)
    assert_in_korean(grad.field.reason)
