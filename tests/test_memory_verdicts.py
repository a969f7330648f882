"""Each memory verdict (C17-C21) is driven to every label it can return, from synthetic metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from whylab.concepts import c17_model_memory as c17
from whylab.concepts import c18_training_memory as c18
from whylab.concepts import c19_checkpointing as c19
from whylab.concepts import c20_accumulation as c20
from whylab.concepts import c21_offloading as c21
from whylab.messages import MSG_TAG, Msg, english_runs
from whylab.verdict import Label

# --------------------------------------------------------------------------- C17


def _c17(**kw: Any) -> dict[str, Any]:
    m = {
        "counts_match_meta": True,
        "float_max_abs_dev": 1e-5,
        "notes_max_abs_rel_err_decimal": 0.005,
        "quant_layer_ratios": {"torchao_int8": 1.02, "bnb_nf4": 1.05},
        "tolerance_float": 0.01,
        "tolerance_quant": 0.10,
        "tolerance_notes": 0.02,
    }
    m.update(kw)
    return m


def test_c17_supported() -> None:
    assert c17.verdict(_c17()).label == Label.SUPPORTED


def test_c17_partly_when_a_format_carries_overhead() -> None:
    v = c17.verdict(_c17(quant_layer_ratios={"torchao_int8": 1.02, "bnb_int8": 1.35}))
    assert v.label == Label.PARTLY and "bnb_int8" in v.reason and "1.35" in v.reason


def test_c17_unpacked_int4_is_a_kernel_property_not_a_verdict() -> None:
    # issue 13 item 5: torchao's CPU int4 keeps one value per byte; NF4 is packed (4.13 bits per weight)
    v = c17.verdict(
        _c17(
            quant_layer_ratios={"torchao_int8": 1.02, "bnb_nf4": 1.03},
            unpacked_layer_ratios={"torchao_int4": 2.31},
            quant_bits_per_weight={"torchao_int8": 8.2, "bnb_nf4": 4.13, "torchao_int4": 9.24},
        )
    )
    assert v.label == Label.SUPPORTED and v.kind == "definition check"
    assert "bnb_nf4 4.13 bits/weight" in v.reason and "property of that kernel" in v.reason


def test_c17_partly_when_notes_numbers_drift() -> None:
    assert c17.verdict(_c17(notes_max_abs_rel_err_decimal=0.05)).label == Label.PARTLY


def test_c17_partly_without_quantized_formats() -> None:
    assert c17.verdict(_c17(quant_layer_ratios={})).label == Label.PARTLY


def test_c17_not_supported_when_float_bytes_differ() -> None:
    assert c17.verdict(_c17(float_max_abs_dev=0.3)).label == Label.NOT_SUPPORTED
    assert c17.verdict(_c17(notes_max_abs_rel_err_decimal=0.2)).label == Label.NOT_SUPPORTED


def test_c17_inconclusive() -> None:
    assert c17.verdict(_c17(float_max_abs_dev=None)).label == Label.INCONCLUSIVE
    assert c17.verdict(_c17(counts_match_meta=False)).label == Label.INCONCLUSIVE


# --------------------------------------------------------------------------- C18


def _c18(**kw: Any) -> dict[str, Any]:
    # numbers of the shape a default run produces (calculator validated on the small model,
    # formula and band judged on BERT-base / GPT-2 / Llama-2-7B points)
    m = {
        "tolerance": 0.05,
        "exact_max_abs_rel_err": 0.002,
        "adam_state_bytes_per_param": 8.0,
        "fp32_gradient_bytes_per_param": 4.0,
        "sgd_state_bytes_per_param": 0.0,
        "adafactor_state_bytes_per_param": 0.03,
        "mixed_model_state_bytes_per_param": 16.0,
        "notes_literal_median_rel_err": 0.08,
        "notes_additive_median_abs_rel_err": 0.34,
        "activation_fraction_min": 0.23,
        "activation_fraction_max": 19.0,
        "activation_fraction_share_in_notes_band": 0.14,
        "notes_points": 7,
        "small_notes_literal_median_rel_err": 1.88,
    }
    m.update(kw)
    return m


def test_c18_partly_when_factors_hold_but_formula_does_not() -> None:
    v = c18.verdict(_c18())
    assert v.label == Label.PARTLY and "+8%" in v.reason
    # the reason names what the formula omits and AdaFactor, and says which rows a statistic is over
    assert "master copy" in v.reason and "12" in v.reason and "16" in v.reason
    assert "AdaFactor keeps 0.030 B/param" in v.reason and "AdamW FP32 grid" in v.reason
    assert v.primary


def test_c18_supported_when_formula_and_band_hold() -> None:
    v = c18.verdict(_c18(notes_literal_median_rel_err=0.03, activation_fraction_share_in_notes_band=0.8))
    assert v.label == Label.SUPPORTED


def test_c18_not_supported_when_factors_are_wrong_too() -> None:
    assert c18.verdict(_c18(adam_state_bytes_per_param=12.0)).label == Label.NOT_SUPPORTED


def test_c18_inconclusive_when_accounting_misses_or_no_notes_model() -> None:
    assert c18.verdict(_c18(exact_max_abs_rel_err=0.2)).label == Label.INCONCLUSIVE
    assert c18.verdict(_c18(activation_fraction_share_in_notes_band=None)).label == Label.INCONCLUSIVE


# --------------------------------------------------------------------------- C19


def _c19(**kw: Any) -> dict[str, Any]:
    m = {
        "checked_modes": ["per_layer"],
        "min_saving": 0.38,
        "max_saving": 0.74,
        "share_points_saving": 1.0,
        "time_overhead_min": 0.12,
        "time_overhead_max": 0.6,
        "grad_rel_max_diff": 0.0,
        "min_saving_threshold": 0.1,
    }
    m.update(kw)
    return m


def test_c19_supported() -> None:
    v = c19.verdict(_c19())
    assert v.label == Label.SUPPORTED and "38–74%" in v.reason


def test_c19_partly_and_not_supported() -> None:
    assert c19.verdict(_c19(share_points_saving=0.5, min_saving=0.02)).label == Label.PARTLY
    assert (
        c19.verdict(_c19(share_points_saving=0.0, min_saving=-0.01, max_saving=0.05)).label
        == Label.NOT_SUPPORTED
    )


def test_c19_inconclusive() -> None:
    assert c19.verdict(_c19(grad_rel_max_diff=0.1)).label == Label.INCONCLUSIVE
    assert c19.verdict(_c19(checked_modes=[], min_saving=None)).label == Label.INCONCLUSIVE


# --------------------------------------------------------------------------- C20


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


def _c20_korean_ok(text: str) -> None:
    assert isinstance(text, Msg), f"not a catalogue message: {text!r}"
    ko = text.in_("ko")
    assert ko and english_runs(ko) == [], (text.key, ko)


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
    assert v.label == label and v.branch == f"C20.verdict.{branch}" and v.takeaway
    assert bool(v.correction) == (label in (Label.PARTLY, Label.NOT_SUPPORTED))
    for text in (v.reason, v.takeaway, v.primary, *v.limited, *([v.correction] if v.correction else [])):
        _c20_korean_ok(text)


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
    texts = list(_c20_messages(record))
    keys = {t.key for t in texts}
    assert {"C20.method", "C20.table.memory.caption", "C20.figure.gradient_difference.caption"} <= keys
    assert {"C20.literature.hf_fix.finding", "C20.literature.hf_fix.note", "C20.primary"} <= keys
    for t in texts:
        _c20_korean_ok(t)
    # the tracker's method is the words tracked_peak writes
    assert (
        c20.memory_method_text("MemTracker (dispatch-level live tensor bytes)").key
        == "C20.memory_method.tracker"
    )
    assert c20.memory_method_text("torch.cuda.max_memory_allocated") == "torch.cuda.max_memory_allocated"


def _c20_messages(value: Any) -> Any:
    if isinstance(value, dict):
        if MSG_TAG in value:
            yield Msg.from_dict(value)
            return
        for v in value.values():
            yield from _c20_messages(v)
    elif isinstance(value, list):
        for v in value:
            yield from _c20_messages(v)


# --------------------------------------------------------------------------- C21


def _c21(acc: dict[str, Any] | None, **eq: float) -> dict[str, Any]:
    equivalence = {
        "optimizer_offload_max_param_diff": 0.0,
        "optimizer_offload_diff_over_update": 0.0,
        "plain_rerun_diff_over_update": 0.0,
        "optimizer_offload_equivalent": True,
        "layer_offload_max_logit_diff": 0.0,
    }
    equivalence.update(eq)
    return {
        "equivalence": equivalence,
        "min_saving": 0.1,
        "accelerator": acc,
        "accelerator_source": "test",
        "computed": {
            "optimizer_state_leaving_accelerator_bytes": 8 * 2**20,
            "estimated_train_saving": 0.3,
            "transfer_per_step_bytes": 8 * 2**20,
            "offload_layers": 2,
        },
    }


def _acc(train: float, infer: float) -> dict[str, Any]:
    return {"train_saving": train, "infer_saving": infer, "train_time_ratio": 3.0, "infer_time_ratio": 2.0}


def test_c21_inconclusive_without_accelerator() -> None:
    v = c21.verdict(_c21(None))
    assert v.label == Label.INCONCLUSIVE and "No accelerator" in v.reason and "8.0 MiB" in v.reason


def test_c21_inconclusive_when_not_equivalent() -> None:
    v = c21.verdict(
        _c21(_acc(0.5, 0.5), optimizer_offload_max_param_diff=0.1, optimizer_offload_equivalent=False)
    )
    assert v.label == Label.INCONCLUSIVE
    assert c21.verdict(_c21(_acc(0.5, 0.5), layer_offload_max_logit_diff=0.1)).label == Label.INCONCLUSIVE


def test_c21_labels_from_accelerator_numbers() -> None:
    assert c21.verdict(_c21(_acc(0.4, 0.3))).label == Label.SUPPORTED
    assert c21.verdict(_c21(_acc(0.4, 0.01))).label == Label.PARTLY
    assert c21.verdict(_c21(_acc(0.02, -0.01))).label == Label.NOT_SUPPORTED


def test_c21_measured_saving_is_held_against_the_prediction() -> None:
    as_predicted = {**_acc(0.62, 0.3), "predicted_train_saving": 0.66}
    v = c21.verdict(_c21(as_predicted))
    assert v.label == Label.SUPPORTED and "predicted a 66%" in v.reason and "as predicted" in v.reason
    off = {**_acc(0.25, 0.3), "predicted_train_saving": 0.66}
    v = c21.verdict(_c21(off))
    assert (
        v.label == Label.PARTLY
        and "not as predicted" in v.reason
        and "not the one the calculator" in v.reason
    )
    assert v.primary and not v.limited
    assert c21.verdict(_c21(None)).limited
