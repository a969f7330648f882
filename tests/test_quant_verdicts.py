"""C12/C13 helpers and C15 verdicts from synthetic metrics (C12/C13 labels: tests/test_quant_scale.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from catalogue_checks import assert_catalogue_in_korean, assert_explained
from whylab.concepts import c12_int8, c13_int4, c15_gptq
from whylab.verdict import Label


def variant(
    name: str,
    family: str,
    *,
    loss: float,
    size_cut: float,
    tensor_cut: float | None = None,
    speedup: float | None = 1.0,
    spread: float = 0.05,
    n: int = 20,
    ci: float = 0.5,
) -> dict[str, Any]:
    return {
        "variant": name,
        "family": family,
        "bits": 8 if family == "int8" else 4,
        "runtime": "onnxruntime",
        "algorithm": "x",
        "block_size": 32,
        "provider": "CPUExecutionProvider",
        "valid_ppl": 10.0,
        "ppl_change_pct": loss,
        "ppl_change_low_pct": loss - ci,
        "ppl_change_high_pct": loss + ci,
        "size_bytes": 100,
        "size_cut_pct": size_cut,
        "memory_cut_pct": size_cut,
        "quantized_tensor_cut_pct": tensor_cut,
        "latency_ms_p50": 1.0,
        "latency_ms_p90": 1.2,
        "speedup_clock": "cpu",
        "speedup_latency_p50": speedup,
        "speedup_q25": None if speedup is None else speedup - spread,
        "speedup_median": speedup,
        "speedup_q75": None if speedup is None else speedup + spread,
        "speedup_n": n,
        "speedup_throughput": speedup,
    }


def c12_metrics(*variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "claimed": c12_int8.CLAIMED,
        "tolerance": c12_int8.TOLERANCE,
        "variants": list(variants),
        "skipped": [],
        "device": "cpu",
        "providers": ["CPUExecutionProvider"],
    }


def c13_metrics(*variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "claimed": c13_int4.CLAIMED,
        "tolerance": c13_int4.TOLERANCE,
        "variants": list(variants),
        "skipped": [],
        "device": "cpu",
        "providers": ["CPUExecutionProvider"],
    }


# ----------------------------------------------------------------------------- C12


def test_c12_speed_status_reads_the_quartiles():
    assert c12_int8.speed_status(2.0, 2.5, 3.0, 20, (2.0, 4.0), 0.1) == "in"
    assert c12_int8.speed_status(5.0, 6.0, 7.0, 20, (2.0, 4.0), 0.1) == "above"
    assert c12_int8.speed_status(0.9, 1.0, 1.1, 20, (2.0, 4.0), 0.1) == "below"
    assert c12_int8.speed_status(1.0, 1.9, 2.5, 20, (2.0, 4.0), 0.1) == "unclear"
    assert c12_int8.speed_status(None, None, None, 0, (2.0, 4.0), 0.1) == "unknown"


def test_c12_inconclusive_without_int8_variants():
    assert c12_int8.verdict(c12_metrics(variant("f", "fp32", loss=0, size_cut=0))).label == Label.INCONCLUSIVE


def test_c12_loss_interval_that_overlaps_the_range_counts():
    assert c12_int8.loss_status(12.0, 16.0, (20.0, 30.0), 5.0) == "in"
    assert c12_int8.loss_status(1.0, 14.0, (20.0, 30.0), 5.0) == "below"
    assert c12_int8.loss_status(40.0, 50.0, (20.0, 30.0), 5.0) == "above"


# ----------------------------------------------------------------------------- C13


def test_c13_literature_comparisons_follow_the_numbers():
    m = c13_metrics(
        {**variant("r32", "int4", loss=4.0, size_cut=60), "algorithm": "rtn", "block_size": 32},
        {**variant("g32", "int4", loss=2.0, size_cut=60), "algorithm": "gptq", "block_size": 32},
        {**variant("r64", "int4", loss=6.0, size_cut=62), "algorithm": "rtn", "block_size": 64},
        {**variant("g64", "int4", loss=7.0, size_cut=62), "algorithm": "gptq", "block_size": 64},
    )
    agrees, text = c13_int4.compare(m, "gptq", "rtn")
    assert agrees is False and "group 64" in text  # GPTQ lost at group 64
    assert c13_int4.compare(m, "awq", "rtn")[0] is None
    assert c13_int4.group_size_trend(m)[0] is True


# ----------------------------------------------------------------------------- C15
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
    v = c15_gptq.verdict(c15())
    assert v.label == Label.NOT_SUPPORTED
    assert "0 backward" in v.reason and "20.0%" in v.reason
    assert str(v.kind) == "definition check" and "positive control" in v.primary


def test_c15_group_128_decides_when_measured():
    assert c15_gptq.primary_group({"32": {}, "128": {}}) == "128"
    assert c15_gptq.primary_group({"32": {}, "64": {}}) == "64"
    assert c15_gptq.primary_group({}) is None


def test_c15_supported_if_gradients_were_used():
    assert c15_gptq.verdict(c15(gradients={"backward_calls": 3})).label == Label.SUPPORTED
    assert c15_gptq.verdict(c15(gradients={"saved_for_backward": 10})).label == Label.SUPPORTED


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
    assert c15_gptq.verdict(c15(**change)).label == Label.INCONCLUSIVE


def test_c15_probe_sees_a_gradient_step_and_nothing_in_no_grad_code():
    control = c15_gptq.probe_control()
    assert control["backward_calls"] == 1 and control["saved_for_backward"] > 0
    import torch

    with c15_gptq.autograd_probe() as counts, torch.no_grad():
        torch.randn(4, 4) @ torch.randn(4, 4)
    assert counts == {"backward_calls": 0, "grad_calls": 0, "saved_for_backward": 0}


def test_c13_paired_comparison_says_nothing_inside_the_noise():
    m = c13_metrics(
        {**variant("r", "int4", loss=0.13, size_cut=60), "algorithm": "rtn", "block_size": 32},
        {**variant("a", "int4", loss=0.13, size_cut=60), "algorithm": "awq", "block_size": 32},
    )
    m["block_nll"] = {"r": [1.00, 2.00, 3.00, 4.00], "a": [1.001, 1.999, 3.001, 3.999]}
    assert c13_int4.compare(m, "awq", "rtn")[0] is None
    m["block_nll"]["a"] = [0.90, 1.91, 2.89, 3.90]  # lower on every block
    assert c13_int4.compare(m, "awq", "rtn")[0] is True
    m["block_nll"]["a"] = [1.10, 2.09, 3.11, 4.10]
    assert c13_int4.compare(m, "awq", "rtn")[0] is False


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
    v = c15_gptq.verdict(m)
    assert v.label == label and v.branch == f"C15.verdict.{branch}"
    assert_explained(v, "C15", branch, differs_from_english=True)


def test_c15_correction_states_what_gptq_is_with_the_measured_numbers():
    v = c15_gptq.verdict(c15())
    assert v.correction.startswith("GPTQ is not gradient-based: it is a one-shot, layer-wise")
    assert "H = 2XXᵀ" in v.correction and "changed 20.0% of round-to-nearest's codes" in v.correction
    assert "0.33× RTN's" in v.correction and "20.0%" in v.correction.in_("ko")
    # the reason keeps its wording when no GPTQ/RTN pair was measured (nothing dangling at the end)
    bare = c15_gptq.verdict({**c15(), "ppl_gptq_vs_rtn": {}})
    assert bare.reason.endswith("not gradient-based.")


def test_c15_evidence_texts_render_in_korean():
    from whylab.messages import Msg, english_runs

    ppl = {"32": {"gptq": 1.0, "rtn": 2.0}, "128": {"gptq": 0.5, "rtn": 0.9}}
    lit = c15_gptq.literature_check(ppl, 0, 1_100_000)
    assert lit.agrees is True and "(group 128 decides; the others are shown)" in lit.note
    assert "group 32: GPTQ +1.00% vs RTN +2.00%" in lit.note
    empty = c15_gptq.literature_check({}, 0, 1_100_000)
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


def test_c13_literature_texts_render_in_korean():
    from whylab.messages import english_runs

    m = c13_metrics(
        {**variant("r32", "int4", loss=4.0, size_cut=60), "algorithm": "rtn", "block_size": 32},
        {**variant("g32", "int4", loss=2.0, size_cut=60), "algorithm": "gptq", "block_size": 32},
        {**variant("r64", "int4", loss=6.0, size_cut=62), "algorithm": "rtn", "block_size": 64},
        {**variant("g64", "int4", loss=7.0, size_cut=62), "algorithm": "gptq", "block_size": 64},
    )
    m["block_nll"] = {"r32": [1.0, 2.0, 3.0], "g32": [0.9, 1.9, 2.9]}
    texts = [c13_int4.compare(m, "gptq", "rtn")[1], c13_int4.compare(m, "awq", "rtn")[1]]
    texts += [c13_int4.group_size_trend(m)[1], c13_int4.group_size_trend(c13_metrics())[1]]
    assert "group 32: gptq +2.000% vs rtn +4.000% (NLL difference" in texts[0]
    assert texts[2] == "gptq: g32 +2.00%, g64 +7.00%; rtn: g32 +4.00%, g64 +6.00%"
    for text in texts:
        assert english_runs(text.in_("ko")) == [], text


@pytest.mark.parametrize("file", ["quant", "C12", "C13", "C15"])
def test_quant_catalogues_match_across_languages(file):
    """Every key of these files is in both languages with the same parameters, and no Korean text
    carries English prose."""
    assert_catalogue_in_korean(file)
