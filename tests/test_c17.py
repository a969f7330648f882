"""C17's verdict driven to every label it can return from synthetic metrics; its texts render in Korean; its measuring step stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catalogue_checks import assert_explained
from claim_packages import assert_measuring_is_light
from whylab.concepts import ConceptContext
from whylab.concepts.c17_model_memory import figures as c17_figures
from whylab.concepts.c17_model_memory import verdict as c17
from whylab.messages import Msg, catalogue, english_runs
from whylab.verdict import Label


def test_c17_measuring_is_light() -> None:
    assert_measuring_is_light("C17")


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


def _catalogue_branches(claim: str) -> set[str]:
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
    assert set(C17_CASES) == _catalogue_branches("C17")


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
    texts += [t.caption for t in c17_figures._tables(counts, nrows, {"fp32": fmt}, 3)]
    for lit in c17_figures._literature(counts):
        texts += [lit.finding, lit.note]
        assert lit.agrees is True or lit.agrees is None
    for fig in (
        c17_figures._figure_models(ctx, counts, nrows),
        c17_figures._figure_formats(ctx, {"fp32": fmt}),
    ):
        texts += [fig.title, fig.caption]
    texts += [
        Msg("C17.skipped.missing_examples", missing=["gpt3-175b"]),
        Msg("C17.skipped.format_failed", name="bnb_nf4", library="bitsandbytes", error="ImportError"),
    ]
    for t in texts:
        assert isinstance(t, Msg), t
        assert english_runs(t.in_("ko")) == [], (t.key, t.in_("ko"))
    assert "(agreement means within 1%)" in c17_figures._literature(counts)[0].note
