"""C15 (GPTQ): verdicts from synthetic metrics, the autograd probe, and the evidence texts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from catalogue_checks import assert_catalogue_in_korean, assert_explained
from claim_packages import assert_measuring_is_light
from whylab.concepts.c15_gptq import experiment as c15_experiment
from whylab.concepts.c15_gptq import figures as c15_figures
from whylab.concepts.c15_gptq import verdict as c15_verdict
from whylab.verdict import Label

# ----------------------------------------------------------------------------- verdicts
C15_BASE: dict[str, Any] = {
    "probe_control": {"backward_calls": 1, "grad_calls": 0, "saved_for_backward": 6},
    "gradients": {"backward_calls": 0, "grad_calls": 0, "saved_for_backward": 0, "grad_enabled_layers": 0},
    "hessian": {
        "layers": 9,
        "identity_equals_rtn": True,
        "codes_differ_from_rtn_frac": 0.2,
        "codes_differ_between_calibration_sets_frac": 0.05,
        "calibration_error_gptq": 1.0,
        "calibration_error_rtn": 3.0,
        "error_ratio_gptq_vs_rtn": 1 / 3,
    },
    "ppl_gptq_vs_rtn": {"32": {"gptq": 1.0, "rtn": 2.0, "gptq_ppl": 10.1, "rtn_ppl": 10.2}},
}


def c15(**changes: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(C15_BASE)
    for key, update in changes.items():
        m[key].update(update)
    return m


def test_c15_not_supported_when_gptq_is_hessian_driven_without_gradients():
    v = c15_verdict.verdict(c15())
    assert v.label == Label.NOT_SUPPORTED
    assert "0 backward" in v.reason and "20.0%" in v.reason
    assert str(v.kind) == "definition check" and "positive control" in v.primary


def test_c15_group_128_decides_when_measured():
    assert c15_verdict.primary_group({"32": {}, "128": {}}) == "128"
    assert c15_verdict.primary_group({"32": {}, "64": {}}) == "64"
    assert c15_verdict.primary_group({}) is None


def test_c15_supported_if_gradients_were_used():
    assert c15_verdict.verdict(c15(gradients={"backward_calls": 3})).label == Label.SUPPORTED
    assert c15_verdict.verdict(c15(gradients={"saved_for_backward": 10})).label == Label.SUPPORTED


@pytest.mark.parametrize(
    "change",
    [
        {"probe_control": {"backward_calls": 0, "saved_for_backward": 0}},  # a blind probe proves nothing
        {"hessian": {"codes_differ_from_rtn_frac": 0.0}},  # result equal to RTN
        {"hessian": {"codes_differ_between_calibration_sets_frac": 0.0}},  # data not used
        {"hessian": {"error_ratio_gptq_vs_rtn": 1.2}},  # no better than RTN on its own objective
    ],
)
def test_c15_inconclusive_when_the_evidence_is_missing(change):
    assert c15_verdict.verdict(c15(**change)).label == Label.INCONCLUSIVE


def test_c15_probe_sees_a_gradient_step_and_nothing_in_no_grad_code():
    control = c15_experiment.probe_control()
    assert control["backward_calls"] == 1 and control["saved_for_backward"] > 0
    import torch

    with c15_experiment.autograd_probe() as counts, torch.no_grad():
        torch.randn(4, 4) @ torch.randn(4, 4)
    assert counts == {"backward_calls": 0, "grad_calls": 0, "saved_for_backward": 0}


# ----------------------------------------------------------------------------- C15 texts in both languages
@pytest.mark.parametrize(
    ("change", "label", "branch"),
    [
        ({}, Label.NOT_SUPPORTED, "hessian"),
        ({"gradients": {"backward_calls": 3}}, Label.SUPPORTED, "gradients"),
        (
            {"probe_control": {"backward_calls": 0, "saved_for_backward": 0}},
            Label.INCONCLUSIVE,
            "blind_probe",
        ),
        (
            {"hessian": {"codes_differ_from_rtn_frac": 0.0, "identity_equals_rtn": False}},
            Label.INCONCLUSIVE,
            "no_hessian_evidence",
        ),
        (
            {"hessian": {"codes_differ_between_calibration_sets_frac": 0.0, "error_ratio_gptq_vs_rtn": None}},
            Label.INCONCLUSIVE,
            "no_hessian_evidence",
        ),
    ],
)
def test_c15_every_branch_has_its_texts_in_korean(change, label, branch):
    m = c15(**change)
    m["model_parameters"], m["check_block_size"] = 1_100_000, 128
    v = c15_verdict.verdict(m)
    assert v.label == label and v.branch == f"C15.verdict.{branch}"
    assert_explained(v, "C15", branch, differs_from_english=True)


def test_c15_correction_states_what_gptq_is_with_the_measured_numbers():
    v = c15_verdict.verdict(c15())
    assert v.correction.startswith("GPTQ is not gradient-based: it is a one-shot, layer-wise")
    assert "H = 2XXᵀ" in v.correction and "changed 20.0% of round-to-nearest's codes" in v.correction
    assert "0.33× RTN's" in v.correction and "20.0%" in v.correction.in_("ko")
    # the reason keeps its wording when no GPTQ/RTN pair was measured (nothing dangling at the end)
    bare = c15_verdict.verdict({**c15(), "ppl_gptq_vs_rtn": {}})
    assert bare.reason.endswith("not gradient-based.")


def test_c15_evidence_texts_render_in_korean():
    from whylab.messages import Msg, english_runs

    ppl = {"32": {"gptq": 1.0, "rtn": 2.0}, "128": {"gptq": 0.5, "rtn": 0.9}}
    lit = c15_figures.literature_check(ppl, 0, 1_100_000)
    assert lit.agrees is True and "(group 128 decides; the others are shown)" in lit.note
    assert "group 32: GPTQ +1.00% vs RTN +2.00%" in lit.note
    empty = c15_figures.literature_check({}, 0, 1_100_000)
    assert empty.agrees is None and empty.note.startswith("Computed here: no GPTQ/RTN pair")
    texts = [
        lit.finding,
        lit.note,
        empty.note,
        Msg("C15.method", parameters=1_100_000, group=128),
        Msg("C15.skipped.no_pair"),
        Msg("C15.figure.gptq_vs_rtn.title"),
        Msg("C15.figure.gptq_vs_rtn.caption"),
        *(Msg(f"C15.table.{t}.caption") for t in ("checks", "library_checks", "gptq_vs_rtn")),
    ]
    for text in texts:
        assert isinstance(text, Msg) and english_runs(text.in_("ko")) == [], text


def test_measuring_imports_no_plotting_or_texts():
    assert_measuring_is_light("C15")


def test_catalogues_match_across_languages():
    """Every key of C15.yaml is in both languages with the same parameters, and no Korean text
    carries English prose."""
    assert_catalogue_in_korean("C15")
