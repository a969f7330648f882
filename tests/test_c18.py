"""C18's verdict driven to every label it can return from synthetic metrics; its texts render in Korean; its measuring step stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalogue_checks import assert_explained
from claim_packages import assert_measuring_is_light
from whylab.concepts import ConceptContext
from whylab.concepts.c18_training_memory import figures as c18_figures
from whylab.concepts.c18_training_memory import verdict as c18
from whylab.messages import Msg, catalogue, english_runs
from whylab.verdict import Label


def test_c18_measuring_is_light() -> None:
    assert_measuring_is_light("C18")


# --------------------------------------------------------------------------- C18


def _catalogue_branches(claim: str) -> set[str]:
    prefix = f"{claim}.verdict."
    return {
        k.removesuffix(".reason") for k in catalogue("en") if k.startswith(prefix) and k.endswith(".reason")
    }


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
    assert set(C18_CASES) == _catalogue_branches("C18")


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
        Msg(
            "C18.method",
            measured_by=c18_figures._measured_by("MemTracker (dispatch-level live tensor bytes)"),
        ),
        Msg("C18.method", measured_by=c18_figures._measured_by("torch.cuda.max_memory_allocated")),
        Msg("C18.skipped.rss_cpu_only"),
        Msg("C18.skipped.notes_model", name="gpt2", batch=1, seq=100000, error="(an exception)"),
    ]
    texts += [
        t.caption
        for t in c18_figures._tables(grid, grid, rss, [0, 4096]) + c18_figures._notes_tables(notes, plans)
    ]
    for lit in c18_figures._literature(metrics) + c18_figures._literature(
        {**metrics, "mixed_model_state_bytes_per_param": None}
    ):
        texts += [lit.finding, lit.note]
    figures = [
        c18_figures._figure_grid(ctx, grid),
        c18_figures._figure_breakdown(ctx, grid),
        c18_figures._figure_fraction(ctx, grid),
        c18_figures._figure_notes_models(ctx, notes),
        c18_figures._figure_plan(ctx, plans),
    ]
    for fig in figures:
        texts += [fig.title, fig.caption]
    for t in texts:
        assert isinstance(t, Msg), t
        assert english_runs(t.in_("ko")) == [], (t.key, t.in_("ko"))
    assert "0, 4096 bytes" in c18_figures._tables(grid, grid, rss, [0, 4096])[2].caption
    assert "MemTracker (dispatch-level live tensor bytes)" in texts[0]
