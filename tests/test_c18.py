"""C18's verdict driven to every label it can return from synthetic metrics; its texts render in Korean; its measuring step stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalogue_checks import assert_explained
from claim_packages import assert_measuring_is_light
from whylab.concepts import ConceptContext
from whylab.concepts.c18_training_memory import figures as c18_figures
from whylab.concepts.c18_training_memory import parts as c18_parts
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


def _notes_row(model: str, frac: float, err: float, params: int = 6_738_415_616) -> dict[str, Any]:
    return {"model": model, "params": params, "activation_over_model": frac, "notes_literal_rel_err": err}


# the default run's notes' points (BERT-base, GPT-2, Llama-2-7B): activations / weights, formula error
NOTES_ROWS = [
    _notes_row("bert-base-uncased", 0.744, 0.281),
    _notes_row("bert-base-uncased", 5.948, -0.208),
    _notes_row("gpt2", 1.185, 0.082),
    _notes_row("gpt2", 18.96, -0.777),
    _notes_row("llama-2-7b", 0.228, 0.281),
    _notes_row("llama-2-7b", 0.912, 0.281),
    _notes_row("llama-2-7b", 7.295, -0.306),
]
IN_BAND = [_notes_row("llama-2-7b", 0.22, 0.03), _notes_row("gpt2", 0.27, -0.02)]
PEAK = {
    "model": "llama-2-7b",
    "batch": 1,
    "seq": 2048,
    "peak": 100.41,
    "step": 100.41,
    "backward": 100.04,
    "activations": 11.45,
    "activations_ckpt": 0.92,
    "peak_ckpt": 100.41,
}


def _c18(**kw: Any) -> dict[str, Any]:
    # numbers of the shape a default run produces (calculator validated on the small model,
    # formula and band judged on BERT-base / GPT-2 / Llama-2-7B points by the calculator)
    rows = kw.pop("rows", NOTES_ROWS)
    errs = [r["notes_literal_rel_err"] for r in rows]
    m = {
        "tolerance": 0.05,
        "params": 98_624,
        "exact_max_abs_rel_err": 0.002,
        "adam_state_bytes_per_param": 8.0,
        "fp32_gradient_bytes_per_param": 4.0,
        "mixed_gradient_bytes_per_param": 2.0,
        "sgd_state_bytes_per_param": 0.0,
        "adafactor_real_shape": {
            "no_beta1": 0.00177,
            "beta1": 4.00177,
            "params": 61_870_080,
            "shapes": [[4096, 4096], [11008, 4096], [4096]],
        },
        "mixed_model_state_bytes_per_param": 16.0,
        "notes_models": rows,
        "notes_literal_median_abs_rel_err": sorted(abs(e) for e in errs)[len(errs) // 2],
        "notes_literal_rel_err_min": min(errs),
        "notes_literal_rel_err_max": max(errs),
        "activation_fraction_min": min(r["activation_over_model"] for r in rows),
        "activation_fraction_max": max(r["activation_over_model"] for r in rows),
        "activation_batch_proportionality_max_dev": 0.012,
        "activation_seq_exponent": 1.03,
        "korthikanti_fit": {"c0": 72.1, "c1": 4.0, "max_residual": 1e-15},
        "attention_x_max": 1.0,
        "peak_example": PEAK,
        "notes_points": len(rows),
        "small_notes_literal_median_rel_err": 1.88,
    }
    m.update(kw)
    return m


def _parts(v: Any) -> dict[str, Any]:
    return {p.id: p for p in v.parts}


def test_c18_partly_on_the_default_run_each_factor_judged_on_its_own() -> None:
    v = c18.verdict(_c18())
    assert v.label == Label.PARTLY
    parts = _parts(v)
    assert [p.id for p in v.parts] == [p.id for p in c18.SPEC.parts]
    assert parts["adam"].run is Label.SUPPORTED and parts["sgd"].run is Label.SUPPORTED
    # AdaFactor: the paper's setting (no momentum) keeps almost nothing; with beta1 a full first moment
    assert parts["adafactor_no_beta1"].run is Label.NOT_SUPPORTED
    assert parts["adafactor_beta1"].run is Label.SUPPORTED
    assert parts["activation_band"].run is Label.NOT_SUPPORTED
    assert parts["formula"].run is Label.PARTLY
    # absolute errors and their range, not a signed median
    assert "median 28%" in v.reason and "-77.7% to +28.1%" in v.reason
    assert "master copy" in v.reason and "16" in v.reason
    assert "0.0018 B/param without β₁" in v.reason and "98,624-parameter Llama" in v.reason
    # the planner's peak is the optimizer step: checkpointing leaves it
    r = str(parts["formula"].reason)
    assert "optimizer step" in r and "0.92 GiB" in r and "stays 100.4 GiB" in r


def test_c18_small_model_cannot_show_the_quadratic_term_so_the_literature_decides() -> None:
    part = _parts(c18.verdict(_c18()))["activation_proportional"]
    assert part.run is Label.INCONCLUSIVE and "limit of the small model" in str(part.reason)
    assert part.field is not None and part.field.label is Label.PARTLY  # s^1.62 at GPT-3 175B
    assert part.believe.label is Label.PARTLY and part.believe.source == "the literature"
    # a model long enough for the s² term to show: the run decides
    room = _parts(c18.verdict(_c18(attention_x_max=20.0)))["activation_proportional"]
    assert room.run is Label.SUPPORTED
    bent = _parts(c18.verdict(_c18(attention_x_max=20.0, activation_seq_exponent=1.5)))
    assert bent["activation_proportional"].run is Label.PARTLY


def test_c18_literature_answers_come_from_the_recorded_numbers() -> None:
    parts = _parts(c18.verdict(_c18()))
    lit = {k: p.field for k, p in parts.items() if p.field is not None}
    assert set(lit) == {
        "formula",
        "adam",
        "adafactor_no_beta1",
        "adafactor_beta1",
        "activation_proportional",
        "activation_band",
    }
    assert lit["adam"].label is Label.SUPPORTED and "K = 12" in str(lit["adam"].reason)  # 12 - 4 master
    assert lit["formula"].label is Label.PARTLY and "+25%" in str(lit["formula"].reason)  # 20 vs ZeRO's 16
    assert lit["adafactor_no_beta1"].label is Label.NOT_SUPPORTED
    assert lit["adafactor_beta1"].label is Label.SUPPORTED
    assert lit["activation_band"].label is Label.NOT_SUPPORTED and "0.79×" in str(
        lit["activation_band"].reason
    )
    assert all(pub.url.startswith("https://arxiv.org/") for f in lit.values() for pub in f.published)
    ko = c18_parts.korthikanti_gpt3()
    assert ko["fraction"] == pytest.approx(96 * 2048 * 12288 * 114 / (2 * 174.6e9))


def test_c18_every_label_is_reachable() -> None:
    good = _c18(rows=IN_BAND, attention_x_max=20.0)
    assert c18.verdict(good).label == Label.PARTLY  # AdaFactor without beta1 still fails
    assert (
        c18.verdict({**good, "adafactor_real_shape": {"no_beta1": 2.5, "beta1": 4.0}}).label
        == Label.SUPPORTED
    )
    bad = _c18(
        rows=[_notes_row("gpt2", 18.96, -0.777)],
        adam_state_bytes_per_param=12.0,
        sgd_state_bytes_per_param=4.0,
        fp32_gradient_bytes_per_param=8.0,
        mixed_gradient_bytes_per_param=4.0,
        adafactor_real_shape={"no_beta1": 0.001, "beta1": 8.0},
        activation_batch_proportionality_max_dev=0.5,
        activation_seq_exponent=2.0,
        attention_x_max=20.0,
    )
    v = c18.verdict(bad)
    assert v.label == Label.NOT_SUPPORTED and {p.run for p in v.parts} == {Label.NOT_SUPPORTED}


@pytest.mark.parametrize(
    ("distances", "want"),
    [
        ([0.0, 0.04], Label.SUPPORTED),
        ([0.0, 0.08, 0.09], Label.PARTLY),
        ([0.5, 0.9, 0.0], Label.NOT_SUPPORTED),
    ],
)
def test_c18_band_rule(distances: list[float], want: Label) -> None:
    assert c18_parts.band_label(distances) is want


def test_c18_inconclusive_when_accounting_misses_or_no_notes_model() -> None:
    assert c18.verdict(_c18(exact_max_abs_rel_err=0.2)).label == Label.INCONCLUSIVE
    assert c18.verdict(_c18(notes_models=[])).label == Label.INCONCLUSIVE


C18_CASES: dict[str, dict[str, Any]] = {
    "C18.verdict.calculator_off": {"exact_max_abs_rel_err": 0.2},
    "C18.verdict.no_notes_models": {"notes_models": []},
    "C18.verdict.supported": {
        "rows": IN_BAND,
        "attention_x_max": 20.0,
        "adafactor_real_shape": {"no_beta1": 2.5, "beta1": 4.0, "params": 10},
    },
    "C18.verdict.partly": {},
    "C18.verdict.not_supported": {
        "rows": [_notes_row("gpt2", 18.96, -0.777)],
        "adam_state_bytes_per_param": 12.0,
        "sgd_state_bytes_per_param": 4.0,
        "fp32_gradient_bytes_per_param": 8.0,
        "mixed_gradient_bytes_per_param": 4.0,
        "adafactor_real_shape": {"no_beta1": 0.001, "beta1": 8.0, "params": 10},
        "activation_seq_exponent": 2.0,
        "activation_batch_proportionality_max_dev": 0.5,
        "attention_x_max": 20.0,
    },
}


@pytest.mark.parametrize("branch", sorted(C18_CASES))
def test_c18_branch_texts_takeaway_correction_and_korean(branch: str) -> None:
    v = c18.verdict(_c18(**C18_CASES[branch]))
    assert v.branch == branch
    assert_explained(v, "C18")
    for part in v.parts:  # every part's texts render in Korean too
        for msg in (part.reason, *(() if part.field is None else (part.field.reason,))):
            assert isinstance(msg, Msg) and english_runs(msg.in_("ko")) == [], (part.id, msg.in_("ko"))


def test_c18_cases_reach_every_catalogue_branch() -> None:
    assert set(C18_CASES) == _catalogue_branches("C18")


def test_c18_texts_without_optional_measurements() -> None:
    v = c18.verdict(
        _c18(
            adafactor_real_shape=None,
            mixed_model_state_bytes_per_param=None,
            small_notes_literal_median_rel_err=None,
            peak_example=None,
        )
    )
    assert v.label == Label.PARTLY and "AdaFactor was not measured" in v.reason
    assert _parts(v)["adafactor_beta1"].run is Label.INCONCLUSIVE
    assert_explained(v, "C18")
    assert c18.verdict(_c18(notes_models=[])).limited == (Msg("C18.limited.notes_models"),)


def test_c18_corrections_say_what_to_write_instead() -> None:
    v = c18.verdict(_c18())
    assert v.correction.startswith("Training memory ≈ weights + FP32 master copy")
    assert "16 bytes/param for mixed-precision Adam" in v.correction and "optimizer step" in v.correction


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
