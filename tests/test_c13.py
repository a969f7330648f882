"""C13 (INT4): the literature comparisons from synthetic metrics (the verdicts: tests/test_quant_scale.py)."""

from __future__ import annotations

import math

import pytest

from catalogue_checks import assert_catalogue_in_korean
from claim_packages import assert_measuring_is_light
from quant_metrics import c13_metrics, variant
from whylab.concepts.c13_int4 import figures as c13_figures


def test_c13_literature_comparisons_follow_the_numbers():
    m = c13_metrics(
        {**variant("r32", "int4", loss=4.0, size_cut=60), "algorithm": "rtn", "block_size": 32},
        {**variant("g32", "int4", loss=2.0, size_cut=60), "algorithm": "gptq", "block_size": 32},
        {**variant("r64", "int4", loss=6.0, size_cut=62), "algorithm": "rtn", "block_size": 64},
        {**variant("g64", "int4", loss=7.0, size_cut=62), "algorithm": "gptq", "block_size": 64},
    )
    # point estimates alone never decide (the one CI rule needs the paired blocks)
    assert c13_figures.compare(m, "gptq", "rtn")[0] is None
    assert c13_figures.group_size_trend(m)[0] is None
    base = [1.0, 2.0, 3.0, 4.0]
    m["block_nll"] = {
        "ort-int4-rtn-b32": [x + 0.04 for x in base],
        "ort-int4-gptq-b32": [x + 0.02 + 0.001 * (i % 2) for i, x in enumerate(base)],
        "ort-int4-rtn-b64": [x + 0.06 + 0.001 * (i % 2) for i, x in enumerate(base)],
        "ort-int4-gptq-b64": [x + 0.07 for x in base],
    }
    names = {"r32": "ort-int4-rtn-b32", "g32": "ort-int4-gptq-b32", "r64": "ort-int4-rtn-b64"}
    for v in m["variants"]:
        v["variant"] = names.get(v["variant"], "ort-int4-gptq-b64")
    agrees, text = c13_figures.compare(m, "gptq", "rtn")
    assert agrees is False and "group 64" in text  # GPTQ clearly lost at group 64
    assert c13_figures.compare(m, "awq", "rtn")[0] is None
    assert c13_figures.group_size_trend(m)[0] is True  # g32 clearly below g64 for both


def test_c13_paired_comparison_says_nothing_inside_the_noise():
    m = c13_metrics(
        {**variant("r", "int4", loss=0.13, size_cut=60), "algorithm": "rtn", "block_size": 32},
        {**variant("a", "int4", loss=0.13, size_cut=60), "algorithm": "awq", "block_size": 32},
    )
    m["block_nll"] = {"r": [1.00, 2.00, 3.00, 4.00], "a": [1.001, 1.999, 3.001, 3.999]}
    assert c13_figures.compare(m, "awq", "rtn")[0] is None
    m["block_nll"]["a"] = [0.90, 1.91, 2.89, 3.90]  # lower on every block
    assert c13_figures.compare(m, "awq", "rtn")[0] is True
    m["block_nll"]["a"] = [1.10, 2.09, 3.11, 4.10]
    assert c13_figures.compare(m, "awq", "rtn")[0] is False


def test_c13_literature_texts_render_in_korean():
    from whylab.messages import english_runs

    m = c13_metrics(
        {**variant("r32", "int4", loss=4.0, size_cut=60), "algorithm": "rtn", "block_size": 32},
        {**variant("g32", "int4", loss=2.0, size_cut=60), "algorithm": "gptq", "block_size": 32},
        {**variant("r64", "int4", loss=6.0, size_cut=62), "algorithm": "rtn", "block_size": 64},
        {**variant("g64", "int4", loss=7.0, size_cut=62), "algorithm": "gptq", "block_size": 64},
    )
    m["block_nll"] = {"r32": [1.0, 2.0, 3.0], "g32": [0.9, 1.91, 2.9]}
    texts = [c13_figures.compare(m, "gptq", "rtn")[1], c13_figures.compare(m, "awq", "rtn")[1]]
    texts += [c13_figures.group_size_trend(m)[1], c13_figures.group_size_trend(c13_metrics())[1]]
    assert "group 32: gptq +2.000% vs rtn +4.000%" in texts[0]
    assert texts[2] == "gptq: g32 +2.00%, g64 +7.00%; rtn: g32 +4.00%, g64 +6.00%"
    for text in texts:
        assert english_runs(text.in_("ko")) == [], text


def test_measuring_imports_no_plotting_or_texts():
    assert_measuring_is_light("C13")


def test_catalogues_match_across_languages():
    """Every key of C13.yaml is in both languages with the same parameters, and no Korean text
    carries English prose."""
    assert_catalogue_in_korean("C13")


# ----------------------------------------------------------------------------- parts (VALIDITY 7-9)
def test_c13_parts_loss_limited_below_scale_decided_at_scale_and_awq_decides_the_field():
    import pytest

    from test_quant_scale import c13
    from whylab.concepts.c13_int4 import verdict as c13_verdict
    from whylab.quant import part_verdicts as pv
    from whylab.verdict import Label

    small = {p.id: p for p in c13_verdict.verdict(c13(loss=3.0, params=1_100_000)).parts}
    assert small["loss"].run is Label.INCONCLUSIVE
    assert small["loss"].believe.label is Label.NOT_SUPPORTED  # AWQ at 7B: +2.4%, not 40-50%
    assert "GPTQ with reordering" in str(small["loss"].field.reason)
    big = c13(loss=45.0, llama_int4_cut=87.0)
    big["variants"][0].update(
        n_blocks=32, nll_diff_sd=0.01, block_diff=[0.37 + 0.01 * (-1) ** i for i in range(32)]
    )
    at_scale = {p.id: p for p in c13_verdict.verdict(big).parts}
    assert at_scale["loss"].run is Label.SUPPORTED and at_scale["loss"].believe.source.name == "DISAGREE"
    assert str(at_scale["size"].kind) == "definition check" and at_scale["size"].run is Label.SUPPORTED
    size = c13_verdict.verdict(c13(loss=3.0, llama_int4_cut=70.0)).parts[1]
    assert size.run is Label.NOT_SUPPORTED and size.field is None
    losses = {
        e["algorithm"]: x for e, x in pv.published_losses(pv.literature("C13", "loss")) if e.get("algorithm")
    }
    assert losses == pytest.approx({"rtn": 4.75, "gptq": 4.02, "gptq-r": 2.93, "awq": 2.38}, abs=0.01)
    assert pv.loss_field("C13", big, algorithm="awq").label is Label.NOT_SUPPORTED
    near = {**big, "claimed": {**big["claimed"], "loss_pct": [2.0, 3.0]}, "tolerance": {"loss_pct": 0.0}}
    assert pv.loss_field("C13", near, algorithm="awq").label is Label.SUPPORTED


def test_c13_size_accounting_explains_the_file_and_bert_int4_over_int8():
    import pytest

    from whylab.quant import part_verdicts as pv

    assert pv.bytes_per_weight("int4", 128) == pytest.approx(0.53515625)
    llama = {
        "parameters": {"total": 210_776_064, "linear_weights": 206_569_472},
        "formats": {"int4": {"size_bytes": 127_300_000}},
    }
    acct = pv.size_accounting(llama, "int4", 128)
    assert acct is not None and acct["predicted_cut_pct"] == pytest.approx(84.9, abs=0.2)
    assert acct["nominal_cut_pct"] == pytest.approx(86.6, abs=0.1)
    bert = {
        "parameters": {"total": 109_482_240, "linear_weights": 85_524_480},
        "formats": {"int4": {"size_bytes": 141_000_000}, "int8": {"size_bytes": 109_500_000}},
    }
    acct = pv.size_accounting(bert, "int4", 128)
    assert acct is not None and acct["predicted_mb"] == pytest.approx(141.6, abs=1.0)  # embeddings in FP32
    assert pv.size_accounting(bert, "int8", 128)["predicted_cut_pct"] == pytest.approx(75.0)


def test_c13_part_texts_render_in_korean():
    from catalogue_checks import assert_in_korean
    from test_quant_scale import c13, realistic
    from whylab.concepts.c13_int4 import verdict as c13_verdict

    for m in (c13(loss=3.0, params=1_100_000), c13(loss=45.0, llama_int4_cut=87.0)):
        for part in c13_verdict.verdict(realistic(m)).parts:
            assert_in_korean(part.reason)
            if part.field is not None:
                assert_in_korean(part.field.reason)


def test_the_one_ci_rule_carries_the_calibration_draws_spread():
    from whylab.quant.loss_interval import interval_between, interval_over_draws, paired_interval

    ref = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    base = [x + 0.02 + 0.002 * (-1) ** i for i, x in enumerate(ref)]
    one = interval_over_draws([base], ref)
    assert (one.mean, one.low, one.high) == pytest.approx(paired_interval(base, ref)[:3])
    assert one.df == 5 and one.draws == 1
    # three draws that agree on every block: the draws add no spread, the interval stays put
    same = interval_over_draws([base, base, base], ref)
    assert same.high - same.low == pytest.approx(one.high - one.low)
    # draws that move the whole loss: wider, fewer degrees of freedom, centred on their mean
    moved = [[x + shift for x in base] for shift in (-0.015, 0.0, 0.015)]
    wide = interval_over_draws(moved, ref)
    assert wide.high - wide.low > 3 * (one.high - one.low) and wide.df < one.df
    assert wide.mean == pytest.approx(one.mean) and wide.draw_sd == pytest.approx(0.015)
    assert wide.low < 0 < wide.high  # the draws' spread leaves the sign open
    # two calibrated variants pair draw by draw (same calibration blocks); a side with one is broadcast
    assert interval_between(moved, moved).high == pytest.approx(0.0)
    assert interval_between(moved, [ref]).mean == pytest.approx(wide.mean)
    with pytest.raises(ValueError, match="draw by draw"):
        interval_between(moved, moved[:2])


def test_c13_loss_part_uses_every_calibration_draw():
    from whylab.concepts.c13_int4 import verdict as c13
    from whylab.quant import claim_parts

    ref = {"block_nll": [1.0 + 0.1 * i for i in range(32)], "valid_top1": 0.2}
    draws = [
        [x + shift + 0.003 * (-1) ** i for i, x in enumerate(ref["block_nll"])]
        for shift in (0.01, 0.02, 0.03)
    ]
    row = {
        "block_nll": draws[0],
        "calibration_draws": [{"draw": j, "block_nll": d} for j, d in enumerate(draws)],
    }
    s = claim_parts.with_accuracy({"ppl_change_pct": 1.0}, row, ref)
    assert s["calibration_draws"] == 3 and s["ppl_change_pct"] == pytest.approx(100 * (math.exp(0.02) - 1))
    assert [round(c, 2) for c in s["draw_changes_pct"]] == [1.01, 2.02, 3.05]
    single = claim_parts.with_accuracy({"ppl_change_pct": 1.0}, {"block_nll": draws[0]}, ref)
    assert (
        s["ppl_change_high_pct"] - s["ppl_change_low_pct"]
        > single["ppl_change_high_pct"] - single["ppl_change_low_pct"]
    )
    power = claim_parts.loss_power(s, 40.0)
    assert power is not None and power.detectable > claim_parts.loss_power(single, 40.0).detectable
    m = c13_metrics(
        {
            **variant("ort-int4-awq-b128", "int4", loss=2.0, size_cut=85),
            **s,
            "algorithm": "awq",
            "block_size": 128,
        }
    )
    m.update(
        primary={"int4": "ort-int4-awq-b128", "int8": None},
        model={"parameters": 7e9},
        regime_min_parameters=0.0,
    )
    loss = next(p for p in c13.verdict(m).parts if p.id == "loss")
    assert "3 calibration draws" in str(loss.reason) and "+3.05%" in str(loss.reason)
    assert loss.power is not None and loss.power.n == 32
