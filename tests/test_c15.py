"""C15 (GPTQ): verdicts from synthetic metrics, the autograd probe, and the evidence texts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from catalogue_checks import assert_catalogue_in_korean, assert_explained, assert_in_korean
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
    "third_party": {  # torchao's GPTQ on CPU (guards removed), as measured on the trained LM
        "ran": True,
        "device": "cpu",
        "grad_mode_on": True,
        "backward_calls": 0,
        "grad_calls": 0,
        "codes_differ_from_rtn_frac": 0.22,
        "codes_agree_with_ours_frac": 1.0,
        "error_ratio_vs_rtn": 0.57,
    },
    "ppl_gptq_vs_rtn": {"32": {"gptq": 1.0, "rtn": 2.0, "gptq_ppl": 10.1, "rtn_ppl": 10.2}},
}


def c15(**changes: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(C15_BASE)
    for key, update in changes.items():
        m[key].update(update)
    return m


def test_c15_not_supported_when_torchaos_gptq_is_hessian_driven_without_gradients():
    v = c15_verdict.verdict(c15())
    assert v.label == Label.NOT_SUPPORTED
    assert "made 0 backward and 0 autograd.grad calls" in v.reason and "22.0%" in v.reason
    assert "0.57× RTN's" in v.reason and "Illustration, not deciding" in v.reason
    assert str(v.kind) == "definition check" and "positive control" in v.primary
    (part,) = v.parts
    assert part.id == "gradient_based" and part.run is Label.NOT_SUPPORTED and part.power is None
    assert (
        part.believe.label is Label.NOT_SUPPORTED and str(part.believe.source) == "run and literature agree"
    )


def test_c15_group_128_decides_when_measured():
    assert c15_verdict.primary_group({"32": {}, "128": {}}) == "128"
    assert c15_verdict.primary_group({"32": {}, "64": {}}) == "64"
    assert c15_verdict.primary_group({}) is None


def test_c15_supported_if_torchaos_gptq_computed_gradients():
    assert c15_verdict.verdict(c15(third_party={"backward_calls": 3})).label == Label.SUPPORTED
    assert c15_verdict.verdict(c15(third_party={"grad_calls": 1})).label == Label.SUPPORTED


def test_c15_our_own_wiring_never_decides():
    """whylab's GPTQ is an illustration: its counts or checks cannot move the label."""
    for change in ({"backward_calls": 3}, {"saved_for_backward": 10}):
        assert c15_verdict.verdict(c15(gradients=change)).label == Label.NOT_SUPPORTED
    assert c15_verdict.verdict(c15(hessian={"identity_equals_rtn": False})).label == Label.NOT_SUPPORTED
    # saved tensors alone (here: none counted) are not gradient use
    assert "saved" not in c15_verdict.decide(c15())[2]


@pytest.mark.parametrize(
    "change",
    [
        {"probe_control": {"backward_calls": 0}},  # a blind probe proves nothing
        {"third_party": {"codes_differ_from_rtn_frac": 0.0}},  # result equal to RTN
        {"third_party": {"error_ratio_vs_rtn": 1.2}},  # no better than RTN on its own objective
        {"third_party": {"ran": False, "why_not": "gone"}},  # no third-party GPTQ ran
    ],
)
def test_c15_inconclusive_when_the_evidence_is_missing(change):
    v = c15_verdict.verdict(c15(**change))
    assert v.label == Label.INCONCLUSIVE
    # the part is limited by this run, and the paper's definition carries it
    assert (
        v.parts[0].believe.label is Label.NOT_SUPPORTED and str(v.parts[0].believe.source) == "the literature"
    )


def test_c15_the_literature_label_is_computed_from_the_recorded_hessian():
    from whylab.parts import Published

    recorded = c15_verdict.literature("gradient_based")
    assert {p.url for p in recorded} == {"https://arxiv.org/abs/2210.17323"}
    answer = c15_verdict.field_answer(recorded)
    assert answer is not None and answer.label is Label.NOT_SUPPORTED
    assert "2XXᵀ" in answer.reason and "4 GPU hours" in answer.reason
    lossy = Published("x", "y", "∇²L", "Hessian of the layer-wise error", "https://arxiv.org/abs/0")
    assert c15_verdict.field_answer([lossy]).label is Label.SUPPORTED  # type: ignore[union-attr]
    assert c15_verdict.field_answer([]) is None
    assert_in_korean(answer.reason)


def test_c15_probe_sees_a_gradient_step_and_nothing_in_no_grad_code():
    control = c15_experiment.probe_control()
    assert control["backward_calls"] == 1 and control["saved_for_backward"] > 0
    import torch

    with c15_experiment.autograd_probe() as counts, torch.no_grad():
        torch.randn(4, 4) @ torch.randn(4, 4)
    assert counts == {"backward_calls": 0, "grad_calls": 0, "saved_for_backward": 0}


def test_c15_torchaos_gptq_runs_under_the_probe_with_grad_mode_on():
    """The deciding check on a tiny Llama: torchao's own observer and GPTQ (guards removed on CPU),
    grad mode on; it agrees with whylab's GPTQ on its grid and beats its own RTN."""
    import torch

    from pt_quant_helpers import tiny_llama
    from whylab.concepts.c15_gptq import third_party as tp
    from whylab.quant.gptq import hessian

    model = tiny_llama(outliers=False)
    calib = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    name = "model.layers.0.self_attn.q_proj"
    x = tp.first_layer_inputs(model, name, calib)
    r = tp.torchao_check(dict(model.named_modules())[name].weight.detach(), x, hessian(x))
    assert r["ran"] and r["grad_mode_on"] and r["backward_calls"] == r["grad_calls"] == 0
    assert r["codes_differ_from_rtn_frac"] > 0.05 and r["error_ratio_vs_rtn"] < 0.9
    assert r["codes_agree_with_ours_frac"] > 0.99 and r["hessian_rel_diff_vs_ours"] < 1e-4
    if not torch.cuda.is_available():
        assert r["cpu_refusal"] == "GPTQ only supports CUDA currently"
        assert len(r["guard_lines_removed"]) == 2


# ----------------------------------------------------------------------------- C15 texts in both languages
@pytest.mark.parametrize(
    ("change", "label", "branch"),
    [
        ({}, Label.NOT_SUPPORTED, "hessian"),
        ({"third_party": {"backward_calls": 3}}, Label.SUPPORTED, "gradients"),
        ({"probe_control": {"backward_calls": 0}}, Label.INCONCLUSIVE, "blind_probe"),
        ({"third_party": {"ran": False, "why_not": "x"}}, Label.INCONCLUSIVE, "no_third_party"),
        ({"third_party": {"codes_differ_from_rtn_frac": 0.0}}, Label.INCONCLUSIVE, "no_hessian_evidence"),
        ({"third_party": {"error_ratio_vs_rtn": None}}, Label.INCONCLUSIVE, "no_hessian_evidence"),
    ],
)
def test_c15_every_branch_has_its_texts_in_korean(change, label, branch):
    m = c15(**change)
    m["model_parameters"], m["check_block_size"] = 1_100_000, 128
    v = c15_verdict.verdict(m)
    assert v.label == label and v.branch == f"C15.verdict.{branch}"
    assert_explained(v, "C15", branch, differs_from_english=True)
    assert_in_korean(v.parts[0].reason)


def test_c15_correction_states_what_gptq_is_with_the_measured_numbers():
    v = c15_verdict.verdict(c15())
    assert v.correction.startswith("GPTQ is not gradient-based: it is a one-shot, layer-wise")
    assert "H = 2XXᵀ" in v.correction and "changed 22.0% of round-to-nearest's codes" in v.correction
    assert "0.57× RTN's" in v.correction and "22.0%" in v.correction.in_("ko")
    # the reason keeps its wording when no GPTQ/RTN pair was measured (nothing dangling at the end)
    bare = c15_verdict.verdict({**c15(), "ppl_gptq_vs_rtn": {}})
    assert bare.reason.endswith("× RTN's.")


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
