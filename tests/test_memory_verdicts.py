"""Each memory verdict (C17-C21) is driven to every label it can return, from synthetic metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalogue_checks import assert_explained
from whylab.concepts import ConceptContext
from whylab.concepts import c17_model_memory as c17
from whylab.concepts import c18_training_memory as c18
from whylab.concepts import c19_checkpointing as c19
from whylab.concepts import c21_offloading as c21
from whylab.messages import Msg, catalogue, english_runs
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


# C17/C18 texts: every branch has its takeaway (and correction when partly / not supported), and
# every text renders in Korean without English prose


def _c17_c18_branches(claim: str) -> set[str]:
    prefix = f"{claim}.verdict."
    return {
        k.removesuffix(".reason") for k in catalogue("en") if k.startswith(prefix) and k.endswith(".reason")
    }


C17_CASES: dict[str, dict[str, Any]] = {
    "C17.verdict.unmeasured": {"float_max_abs_dev": None},
    "C17.verdict.float_bytes_differ": {"float_max_abs_dev": 0.3},
    "C17.verdict.notes_numbers_off": {"notes_max_abs_rel_err_decimal": 0.2},
    "C17.verdict.notes_drift": {"notes_max_abs_rel_err_decimal": 0.05},
    "C17.verdict.no_quantized": {"quant_layer_ratios": {}},
    "C17.verdict.quant_overhead": {"quant_layer_ratios": {"torchao_int8": 1.02, "bnb_int8": 1.35}},
    "C17.verdict.supported": {
        "unpacked_layer_ratios": {"torchao_int4": 2.31},
        "quant_bits_per_weight": {"torchao_int8": 8.2, "bnb_nf4": 4.13, "torchao_int4": 9.24},
    },
}


@pytest.mark.parametrize("branch", sorted(C17_CASES))
def test_c17_branch_texts_takeaway_correction_and_korean(branch: str) -> None:
    v = c17.verdict(_c17(**C17_CASES[branch]))
    assert v.branch == branch and v.kind == "definition check"
    assert_explained(v, "C17")


def test_c17_cases_reach_every_catalogue_branch() -> None:
    assert set(C17_CASES) == _c17_c18_branches("C17")


def test_c17_corrections_say_what_to_write_instead() -> None:
    v = c17.verdict(_c17(quant_layer_ratios={"torchao_int8": 1.02, "bnb_int8": 1.35}))
    assert "bnb_int8: 1.35× the nominal bytes" in v.correction and "scales and zero points" in v.correction
    v = c17.verdict(_c17(notes_max_abs_rel_err_decimal=0.05))
    assert "exact parameter counts" in v.correction and "5.0%" in v.correction
    v = c17.verdict(_c17(quant_layer_ratios={}))
    assert v.limited == (Msg("C17.limited.no_quantized"),)


def test_c17_evidence_texts_render_in_korean(tmp_path: Path) -> None:
    counts = [
        {
            "model": "bert-base",
            "family": "bert",
            "analytic": 109482240,
            "meta": 109482240,
            "match": True,
            "quoted": 110e6,
            "quoted_rel_err": 110e6 / 109482240 - 1,
            "source": "Devlin et al. 2019",
        }
    ]
    nrows = c17.notes_rows(counts)
    fmt = {
        "library": "torch",
        "description": "FP32",
        "nominal": "fp32",
        "layer_bytes_per_value": 4.0,
        "nominal_bytes_per_value": 4,
        "layer_ratio": 1.0,
        "model_bytes": 400,
        "model_nominal_bytes": 400,
        "params": 100,
        "model_ratio": 1.0,
        "rss_resident_mean": float("nan"),
        "rss_resident_std": float("nan"),
        "rss_n": 0,
    }
    ctx = ConceptContext("C17", {}, {}, tmp_path, 1, "cpu")
    texts: list[str] = [Msg("C17.method")]
    texts += [t.caption for t in c17._tables(counts, nrows, {"fp32": fmt}, 3)]
    for lit in c17._literature(counts):
        texts += [lit.finding, lit.note]
        assert lit.agrees is True or lit.agrees is None
    for fig in (c17._figure_models(ctx, counts, nrows), c17._figure_formats(ctx, {"fp32": fmt})):
        texts += [fig.title, fig.caption]
    texts += [
        Msg("C17.skipped.missing_examples", missing=["gpt3-175b"]),
        Msg("C17.skipped.format_failed", name="bnb_nf4", library="bitsandbytes", error="ImportError"),
    ]
    for t in texts:
        assert isinstance(t, Msg), t
        assert english_runs(t.in_("ko")) == [], (t.key, t.in_("ko"))
    assert "(agreement means within 1%)" in c17._literature(counts)[0].note


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


C18_CASES: dict[str, dict[str, Any]] = {
    "C18.verdict.calculator_off": {"exact_max_abs_rel_err": 0.2},
    "C18.verdict.no_notes_models": {"activation_fraction_share_in_notes_band": None},
    "C18.verdict.supported": {
        "notes_literal_median_rel_err": 0.03,
        "activation_fraction_share_in_notes_band": 0.8,
    },
    "C18.verdict.factors_hold": {},
    "C18.verdict.factors_wrong": {"adam_state_bytes_per_param": 12.0},
}


@pytest.mark.parametrize("branch", sorted(C18_CASES))
def test_c18_branch_texts_takeaway_correction_and_korean(branch: str) -> None:
    v = c18.verdict(_c18(**C18_CASES[branch]))
    assert v.branch == branch
    assert_explained(v, "C18")


def test_c18_cases_reach_every_catalogue_branch() -> None:
    assert set(C18_CASES) == _c17_c18_branches("C18")


def test_c18_texts_without_optional_measurements() -> None:
    # AdaFactor, the mixed-precision run and the small-model grid statistic missing: other fragments
    v = c18.verdict(
        _c18(
            adafactor_state_bytes_per_param=None,
            mixed_model_state_bytes_per_param=None,
            small_notes_literal_median_rel_err=None,
        )
    )
    assert v.label == Label.PARTLY and "AdaFactor was not measured" in v.reason
    assert_explained(v, "C18")
    v = c18.verdict(_c18(adam_state_bytes_per_param=None, sgd_state_bytes_per_param=None))
    assert v.label == Label.NOT_SUPPORTED and "Adam state not measured" in v.correction
    assert_explained(v, "C18")
    assert c18.verdict(_c18(activation_fraction_share_in_notes_band=None)).limited == (
        Msg("C18.limited.notes_models"),
    )


def test_c18_corrections_say_what_to_write_instead() -> None:
    v = c18.verdict(_c18())
    assert v.correction.startswith("Training memory ≈ weights + FP32 master copy")
    assert "16 bytes/param for mixed-precision Adam" in v.correction
    v = c18.verdict(_c18(adam_state_bytes_per_param=12.0))
    assert "Adam state 12.00 B/param" in v.correction


def _c18_step_row(optimizer: str) -> dict[str, Any]:
    return {
        "optimizer": optimizer,
        "precision": "fp32",
        "batch": 2,
        "seq": 16,
        "measured_peak": 3 * 2**20,
        "estimate": {"phase_peak": 3 * 2**20, "sum_of_terms": 4 * 2**20},
        "allocator_overhead": 0,
        "exact_rel_err": 0.0,
        "reserved_peak": None,
        "cuda_context": None,
        "notes_literal": 2**20,
        "notes_literal_rel_err": -0.6,
        "notes_additive": 2**21,
        "notes_additive_rel_err": -0.3,
        "saved_activations": 2**19,
        "activation_over_model": 0.5,
        "optimizer_bytes_per_param": 8.0,
        "gradient_bytes_per_param": 4.0,
        "model_state_bytes_per_param": 16.0,
        "tokens": 32,
        "params": 1000,
        "gradient_bytes": 4000,
        "optimizer_state_bytes": 8000,
    }


def test_c18_evidence_texts_render_in_korean(tmp_path: Path) -> None:
    notes, skipped = c18.notes_model_rows(
        [{"model": "gpt2", "batch": 2, "seq": 128}, {"model": "gpt2", "batch": 1, "seq": 100000}]
    )
    assert len(notes) == 1 and len(skipped) == 1 and isinstance(skipped[0], Msg)
    plans = c18.plan_rows([{"model": "gpt2"}])
    grid = [_c18_step_row("adamw")]
    rss = [{"batch": 2, "seq": 16, "rss_peak_delta_mean": 2**20, "rss_peak_delta_std": 0.0, "n": 2,
            "tracked_step_delta": 2**20, "rss_over_tracked": 1.0}]  # fmt: skip
    metrics = {
        "mixed_model_state_bytes_per_param": 16.0,
        "korthikanti_fit": {"c0": 30.0, "c1": 5.0, "max_residual": 0.002},
    }
    ctx = ConceptContext("C18", {}, {}, tmp_path, 1, "cpu")
    texts: list[str] = [
        Msg("C18.method", measured_by=c18._measured_by("MemTracker (dispatch-level live tensor bytes)")),
        Msg("C18.method", measured_by=c18._measured_by("torch.cuda.max_memory_allocated")),
        Msg("C18.skipped.rss_cpu_only"),
        Msg("C18.skipped.notes_model", name="gpt2", batch=1, seq=100000, error="(an exception)"),
    ]
    texts += [t.caption for t in c18._tables(grid, grid, rss, [0, 4096]) + c18._notes_tables(notes, plans)]
    for lit in c18._literature(metrics) + c18._literature(
        {**metrics, "mixed_model_state_bytes_per_param": None}
    ):
        texts += [lit.finding, lit.note]
    figures = [
        c18._figure_grid(ctx, grid),
        c18._figure_breakdown(ctx, grid),
        c18._figure_fraction(ctx, grid),
        c18._figure_notes_models(ctx, notes),
        c18._figure_plan(ctx, plans),
    ]
    for fig in figures:
        texts += [fig.title, fig.caption]
    for t in texts:
        assert isinstance(t, Msg), t
        assert english_runs(t.in_("ko")) == [], (t.key, t.in_("ko"))
    assert "0, 4096 bytes" in c18._tables(grid, grid, rss, [0, 4096])[2].caption
    assert "MemTracker (dispatch-level live tensor bytes)" in texts[0]


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


def test_c19_every_branch_has_a_takeaway_and_renders_in_korean() -> None:
    for m, label in (
        (_c19(), Label.SUPPORTED),
        (
            _c19(prediction_max_abs_gap=0.04, predicted_saving_min=0.4, predicted_saving_max=0.7),
            Label.SUPPORTED,
        ),
        (_c19(share_points_saving=0.5, min_saving=0.02), Label.PARTLY),
        (_c19(share_points_saving=0.0, min_saving=-0.01, max_saving=0.05), Label.NOT_SUPPORTED),
        (_c19(grad_rel_max_diff=0.1), Label.INCONCLUSIVE),
        (_c19(checked_modes=[], min_saving=None), Label.INCONCLUSIVE),
    ):
        v = c19.verdict(m)
        assert v.label == label
        assert_explained(v, "C19")
    v = c19.verdict(_c19(prediction_max_abs_gap=0.04, predicted_saving_min=0.4, predicted_saving_max=0.7))
    assert "predicted a 40–70% activation saving, within 4 points" in v.reason
    assert "each step takes +12% to +60% longer" in v.reason
    assert "10%" in c19.verdict(_c19(share_points_saving=0.0, max_saving=0.05)).correction


def test_c19_evidence_texts_render_in_korean() -> None:
    from whylab.messages import Msg, english_runs

    texts = [
        Msg("C19.method"),
        *(
            Msg("C19.table.checkpointing.caption", batch=2, method=c19.measure_method(m), repeats=3)
            for m in c19.MEASURE_METHODS
        ),
        Msg("C19.literature.chen.finding"),
        Msg("C19.literature.chen.note", lo=10, hi=40, none_growth=3.9, sqrt_growth=2.1, first=2, last=8),
        Msg("C19.literature.chen.no_run"),
        *(Msg(f"C19.figure.checkpointing_{n}.{p}") for n in ("memory", "time") for p in ("title", "caption")),
    ]
    assert "MemTracker (dispatch-level live tensor bytes)" in texts[1]
    for t in texts:
        assert t and english_runs(t.in_("ko")) == [], t.in_("ko")
    assert c19.measure_method("something else") == "something else"


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


def _c21_branches() -> dict[str, tuple[Label, dict[str, Any]]]:
    """Hand-made metrics that reach each C21 verdict branch."""
    return {
        "not_equivalent": (Label.INCONCLUSIVE, _c21(_acc(0.5, 0.5), optimizer_offload_equivalent=False)),
        "no_accelerator": (Label.INCONCLUSIVE, _c21(None)),
        "supported": (Label.SUPPORTED, _c21({**_acc(0.62, 0.3), "predicted_train_saving": 0.66})),
        "off_prediction": (Label.PARTLY, _c21({**_acc(0.25, 0.3), "predicted_train_saving": 0.66})),
        "only_training": (Label.PARTLY, _c21(_acc(0.4, 0.01))),
        "only_layers": (Label.PARTLY, _c21(_acc(0.01, 0.4))),
        "neither": (Label.NOT_SUPPORTED, _c21(_acc(0.02, -0.01))),
    }


def test_c21_every_branch_has_a_takeaway_and_renders_in_korean() -> None:

    for branch, (label, metrics) in _c21_branches().items():
        v = c21.verdict(metrics)
        assert v.label is label and v.branch == f"C21.verdict.{branch}"
        assert_explained(v, "C21", branch, differs_from_english=True)


def test_c21_corrections_name_what_did_not_save() -> None:
    branches = _c21_branches()
    only_training = c21.verdict(branches["only_training"][1]).correction
    assert (
        "optimizer state" in only_training and "2 decoder layers" in only_training and "10%" in only_training
    )
    off = c21.verdict(branches["off_prediction"][1]).correction
    assert "saved 25%" in off and "predicted 66%" in off
    assert "decoder layers" in c21.verdict(branches["neither"][1]).correction
