"""SmoothQuant (C16): the properties the paper's algorithm must have, W8A8 fake quantization,
the verdict function driven to each label, and one tiny end-to-end run of the concept."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from catalogue_checks import assert_explained, assert_in_korean, record_messages
from claim_packages import assert_measuring_is_light
from pt_quant_helpers import build_tree, tiny_llama
from whylab.concepts.c16_smoothquant import experiment as c16_experiment
from whylab.concepts.c16_smoothquant import figures as c16_figures
from whylab.concepts.c16_smoothquant import verdict as c16
from whylab.messages import Msg
from whylab.quant import smoothquant as sq
from whylab.verdict import Label, paired_test

REPO = Path(__file__).resolve().parents[1]


def _calib(vocab: int = 128, n: int = 6, length: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(input_ids=x).logits


@pytest.fixture(scope="module")
def mha() -> nn.Module:
    return tiny_llama(kv_heads=4)


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return _calib()


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.85, 1.0])
def test_smoothing_alone_leaves_the_model_output_unchanged(kv_heads, alpha):
    model = tiny_llama(kv_heads=kv_heads)
    x = _calib()
    groups = sq.smooth_groups(model)
    stats = sq.collect_act_absmax(model, x)
    smoothed, factors = sq.smoothed_copy(model, groups, stats, alpha)
    ref, out = _logits(model, x), _logits(smoothed, x)
    assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4)
    # and it is not a no-op: weights and norms really changed
    assert any((f - 1).abs().max() > 1e-2 for f in factors.values())
    assert not torch.equal(
        smoothed.model.layers[0].input_layernorm.weight, model.model.layers[0].input_layernorm.weight
    )


def test_factors_follow_the_papers_formula(mha, calib):
    groups = sq.smooth_groups(mha)
    stats = sq.collect_act_absmax(mha, calib)
    g = groups[0]
    a = stats[g.linears[0]]
    w = torch.stack([mha.get_submodule(n).weight.abs().amax(dim=0) for n in g.linears]).amax(dim=0)
    for alpha in (0.0, 0.3, 0.5, 1.0):
        s = sq.group_factors(mha, [g], stats, alpha)[g.name]
        assert torch.allclose(s, a.pow(alpha) / w.pow(1 - alpha), rtol=1e-6)


def test_alpha_zero_moves_nothing_into_the_weights_it_normalises_them(mha, calib):
    """α=0: s_j = 1/max|W_j|, so every smoothed weight column peaks at exactly 1 and the
    activations grow by max|W_j| (the outliers stay where they were, only rescaled)."""
    groups = sq.smooth_groups(mha)
    stats = sq.collect_act_absmax(mha, calib)
    smoothed, factors = sq.smoothed_copy(mha, groups, stats, 0.0)
    for g in groups:
        assert torch.allclose(sq.weight_absmax(smoothed, g), torch.ones(1), atol=1e-5)
        if g.kind in ("attn_out", "mlp_down"):  # consumers no other fold touched first
            assert torch.allclose(factors[g.name], 1 / sq.weight_absmax(mha, g), rtol=1e-6)


def test_alpha_one_moves_everything_every_activation_channel_peaks_at_one(mha, calib):
    groups = sq.smooth_groups(mha)
    stats = sq.collect_act_absmax(mha, calib)
    smoothed, _ = sq.smoothed_copy(mha, groups, stats, 1.0)
    again = sq.collect_act_absmax(smoothed, calib)  # re-measured on the smoothed model
    for g in groups:
        assert torch.allclose(again[g.linears[0]], torch.ones(1), atol=1e-4)


@pytest.mark.parametrize("kind", sq.GROUP_KINDS)
@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_product_of_maxima_is_preserved_and_alpha_half_balances_it(mha, calib, alpha, kind):
    """max|X'_j| max|W'_j| = max|X_j| max|W_j|, and at α=0.5 the two are equal (one kind of
    group at a time, so every W is the one the factors were computed from)."""
    groups = sq.smooth_groups(mha, [kind])
    stats = sq.collect_act_absmax(mha, calib)
    smoothed, factors = sq.smoothed_copy(mha, groups, stats, alpha)
    after = sq.smoothed_act_stats(groups, stats, factors)
    for g in groups:
        a0, w0 = stats[g.linears[0]], sq.weight_absmax(mha, g)
        a1, w1 = after[g.linears[0]], sq.weight_absmax(smoothed, g)
        assert torch.allclose(a1 * w1, a0 * w0, rtol=1e-4)
        if alpha == 0.5:
            assert torch.allclose(a1, w1, rtol=1e-4)


def test_analytic_smoothed_statistics_equal_a_second_calibration_pass(mha, calib):
    groups = sq.smooth_groups(mha)
    stats = sq.collect_act_absmax(mha, calib)
    smoothed, factors = sq.smoothed_copy(mha, groups, stats, 0.5)
    analytic = sq.smoothed_act_stats(groups, stats, factors)
    measured = sq.collect_act_absmax(smoothed, calib)
    for name, value in measured.items():
        assert torch.allclose(analytic[name], value, rtol=1e-4, atol=1e-6), name


def test_smoothing_flattens_outlier_channels(mha, calib):
    groups = [g for g in sq.smooth_groups(mha) if g.kind == "attn_in"]
    stats = sq.collect_act_absmax(mha, calib)
    _, factors = sq.smoothed_copy(mha, groups, stats, 0.5)
    after = sq.smoothed_act_stats(groups, stats, factors)
    for g in groups:
        before_ratio = sq.outlier_ratio(stats[g.linears[0]])
        assert before_ratio > 10  # the injected channels stick out
        assert sq.outlier_ratio(after[g.linears[0]]) < before_ratio / 4


def test_same_formula_as_the_reference_code_for_a_norm_and_its_linears(mha, calib):
    """Xiao et al.'s smooth_ln_fcs, restated: weight maxima over the concatenated fcs,
    s = act^α / w^(1-α) floored at 1e-5, norm weight / s, fc weights * s."""
    stats = sq.collect_act_absmax(mha, calib)
    layer = mha.model.layers[0]
    fcs = [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]
    act = stats["model.layers.0.self_attn.q_proj"]
    w_scales = (
        torch.cat([fc.weight.abs().max(dim=0, keepdim=True)[0] for fc in fcs]).max(dim=0)[0].clamp(min=1e-5)
    )
    scales = (act.pow(0.5) / w_scales.pow(0.5)).clamp(min=1e-5)
    ref_ln = layer.input_layernorm.weight / scales
    ref_q = layer.self_attn.q_proj.weight * scales.view(1, -1)
    groups = [g for g in sq.smooth_groups(mha, ["attn_in"]) if g.name == "model.layers.0.attn_in"]
    smoothed, _ = sq.smoothed_copy(mha, groups, stats, 0.5)
    got = smoothed.model.layers[0]
    assert torch.allclose(got.input_layernorm.weight, ref_ln, rtol=1e-6)
    assert torch.allclose(got.self_attn.q_proj.weight, ref_q, rtol=1e-6)


def test_smoothing_is_invariant_to_how_a_channels_scale_is_split(calib):
    """X_j -> kX_j with W_j -> W_j/k multiplies s_j by k for every α: the smoothed models agree."""
    plain = tiny_llama(outliers=False)
    groups = sq.smooth_groups(plain)
    injected = sq.inject_outlier_channels(plain, groups, [3, 17], 20.0)
    x = calib
    assert torch.allclose(_logits(injected, x), _logits(plain, x), atol=1e-4)
    for alpha in (0.25, 0.75):
        a, _ = sq.smoothed_copy(plain, groups, sq.collect_act_absmax(plain, x), alpha)
        b, _ = sq.smoothed_copy(injected, groups, sq.collect_act_absmax(injected, x), alpha)
        for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), name


def test_strongest_norm_channels_are_the_injected_ones(mha):
    assert sq.strongest_norm_channels(mha, 2) == [5, 40]


def test_weight_fake_quantization_is_int8_per_output_channel():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    q = sq.quantize_weight_per_channel(w)
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    assert (q - w).abs().le(scale / 2 + 1e-7).all()
    codes = q / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.abs().max() <= 127 + 1e-4


def test_activation_schemes_differ_as_defined():
    x = torch.tensor([[[0.5, -1.0, 100.0], [0.01, 0.02, -0.03]]])
    per_token = sq.quantize_activation(x, "per_token_dynamic")
    per_tensor = sq.quantize_activation(x, "per_tensor_dynamic")
    # the small token keeps its detail per token but is rounded to zero with one tensor-wide scale
    assert per_token[0, 1].abs().min() > 0
    assert torch.equal(per_tensor[0, 1], torch.zeros(3))
    static = sq.quantize_activation(x, "per_tensor_static", static_absmax=1.0)
    assert static.max() <= 1.0 + 1e-6  # values beyond the calibrated range are clipped
    with pytest.raises(ValueError, match="static"):
        sq.quantize_activation(x, "per_tensor_static")


def test_w8a8_replaces_every_decoder_linear_and_keeps_the_head(mha, calib):
    stats = sq.collect_act_absmax(mha, calib)
    q = sq.quantize_w8a8(mha, "per_tensor_static", stats)
    n = sum(isinstance(m, sq.W8A8Linear) for m in q.modules())
    assert n == len(sq.decoder_linears(mha)) == 2 * 7
    assert isinstance(q.lm_head, nn.Linear)
    assert isinstance(mha.model.layers[0].self_attn.q_proj, nn.Linear)  # the original is untouched


@pytest.mark.parametrize("scheme", ["per_tensor_static", "per_tensor_dynamic", "per_token_dynamic"])
def test_smoothquant_cuts_w8a8_error_on_a_model_with_outlier_channels(mha, calib, scheme):
    x = _calib(seed=7)
    ref = _logits(mha, x)
    stats = sq.collect_act_absmax(mha, calib)
    naive = sq.quantize_w8a8(mha, scheme, stats)
    groups = sq.smooth_groups(mha)
    smoothed, factors = sq.smoothed_copy(mha, groups, stats, 0.5)
    smooth_q = sq.quantize_w8a8(smoothed, scheme, sq.smoothed_act_stats(groups, stats, factors))
    err_naive = (_logits(naive, x) - ref).pow(2).mean()
    err_smooth = (_logits(smooth_q, x) - ref).pow(2).mean()
    assert err_smooth < 0.5 * err_naive


def test_unknown_group_and_scheme_are_input_errors(mha):
    from whylab.errors import InputError

    with pytest.raises(InputError, match="groups"):
        sq.smooth_groups(mha, ["nope"])
    with pytest.raises(InputError, match="act_schemes"):
        sq.W8A8Linear(nn.Linear(4, 4), "int4")


def test_concept_defaults_match_the_schema():
    schema = yaml.safe_load((REPO / "workflow/schemas/quantization.schema.yaml").read_text())
    props = schema["properties"]["smoothquant"]["properties"]
    assert {
        k: v["default"] for k, v in props.items() if k != "seeds"
    } == c16_experiment.DEFAULTS  # seeds: run-wide unless set


# ---------------------------------------------------------------- verdict, every way


def _cond(fp32, naive, smooth, before=20.0, after=2.0):
    vs = "per_tensor_static"
    return {
        "ppl_fp32": list(fp32),
        "ppl_naive": {vs: list(naive)},
        "ppl_smooth_ref": {vs: list(smooth)},
        "naive_change_pct": {vs: [100 * (n / f - 1) for n, f in zip(naive, fp32, strict=True)]},
        "smooth_change_pct": {vs: [100 * (m / f - 1) for m, f in zip(smooth, fp32, strict=True)]},
        "outlier_ratio_before": [before] * len(fp32),
        "outlier_ratio_after": [after] * len(fp32),
        "equivalence_diff": [1e-6] * len(fp32),
    }


def _metrics(
    *,
    fp32=(10.0, 10.2, 9.9),
    naive=(10.6, 10.9, 10.5),
    smooth=(10.05, 10.24, 9.93),
    diff=1e-6,
    primary="outliers",
):
    """Metrics as verdict.summarize gives them, from per-seed perplexities of the deciding model."""
    conditions = {"trained": _cond((8.0, 8.0, 8.0), (8.01, 8.0, 8.01), (8.0, 8.0, 8.0), 2.0, 1.8)}
    conditions[primary] = _cond(fp32, naive, smooth)
    c = conditions[primary]
    vs = "per_tensor_static"
    return {
        "conditions": conditions,
        "primary_condition": primary,
        "primary_test": paired_test(c["naive_change_pct"][vs], c["smooth_change_pct"][vs]).to_dict(),
        "verdict_scheme": vs,
        "alpha_ref": 0.5,
        "outlier_channels": [5, 40],
        "outlier_scale": 20.0,
        "outlier_train_steps": 30,
        "model_parameters": 1_100_000,
        "equivalence_max_abs_logit_diff": diff,
        "equivalence_tolerance": 1e-3,
        "ppl_gain_pct_min": 0.5,
    }


def test_verdict_partly_when_smoothing_clearly_wins_back_what_naive_w8a8_loses():
    v = c16.verdict(_metrics())
    assert v.label == Label.PARTLY
    assert "activation function" in v.reason and "20 → 2" in v.reason
    assert "naive minus SmoothQuant" in v.primary and "3 seeds paired" in v.primary


def test_verdict_says_where_the_natural_outliers_sit():
    m = _metrics()
    m["outlier_ratio_before_by_kind"] = {"attn_in": 1.4, "mlp_in": 1.5, "mlp_down": 8.0}
    assert "down_proj's input: max/median 8 vs at most 1.5" in c16.verdict(m).reason
    m["outlier_ratio_before_by_kind"] = {"attn_in": 9.0, "mlp_down": 8.0}
    assert "down_proj" not in c16.verdict(m).reason


def test_verdict_not_supported_when_smoothing_wins_back_nothing_that_matters():
    v = c16.verdict(_metrics(smooth=(10.6, 10.92, 10.5)))  # same loss as naive, tight CI around 0
    assert v.label == Label.NOT_SUPPORTED


def test_verdict_not_supported_when_smoothing_makes_it_clearly_worse():
    v = c16.verdict(_metrics(smooth=(11.5, 11.8, 11.4)))
    assert v.label == Label.NOT_SUPPORTED


def test_verdict_inconclusive_when_the_gain_is_within_the_noise():
    v = c16.verdict(_metrics(smooth=(10.0, 11.3, 10.0)))
    assert v.label == Label.INCONCLUSIVE and "noise" in v.reason


def test_verdict_inconclusive_when_smoothing_is_not_exact():
    assert c16.verdict(_metrics(diff=0.5)).label == Label.INCONCLUSIVE


def test_verdict_inconclusive_when_naive_w8a8_loses_nothing():
    m = _metrics(naive=(10.01, 10.2, 9.9), smooth=(10.0, 10.2, 9.9))
    assert c16.verdict(m).label == Label.INCONCLUSIVE


def test_verdict_one_seed_is_never_a_clear_gain():
    m = _metrics(fp32=(10.0,), naive=(10.6,), smooth=(10.05,))
    assert c16.verdict(m).label == Label.INCONCLUSIVE


def test_the_model_as_given_decides_when_the_outlier_condition_is_off():
    assert c16.primary_condition({"outlier_channels": 0}) == "trained"
    assert c16.primary_condition({"outlier_channels": 2}) == "outliers"
    v = c16.verdict(_metrics(primary="trained"))
    assert v.label == Label.PARTLY and "model as given" in v.primary


# ---------------------------------------------------------------- every text in Korean too


def _by_kind(m, kinds):
    m["outlier_ratio_before_by_kind"] = kinds
    return m


@pytest.mark.parametrize(
    ("metrics", "label", "branch"),
    [
        (_metrics(), Label.PARTLY, "wins_back"),
        (_by_kind(_metrics(), {"attn_in": 1.4, "mlp_down": 8.0}), Label.PARTLY, "wins_back"),
        (_metrics(primary="trained"), Label.PARTLY, "wins_back"),
        (_metrics(smooth=(10.6, 10.92, 10.5)), Label.NOT_SUPPORTED, "no_gain"),
        (_metrics(smooth=(11.5, 11.8, 11.4)), Label.NOT_SUPPORTED, "no_gain"),
        (_metrics(smooth=(10.0, 11.3, 10.0)), Label.INCONCLUSIVE, "within_noise"),
        (_metrics(diff=0.5), Label.INCONCLUSIVE, "not_exact"),
        (_metrics(naive=(10.01, 10.2, 9.9), smooth=(10.0, 10.2, 9.9)), Label.INCONCLUSIVE, "nothing_to_fix"),
        (_metrics(fp32=(10.0,), naive=(10.6,), smooth=(10.05,)), Label.INCONCLUSIVE, "within_noise"),
    ],
)
def test_every_branch_has_a_takeaway_a_correction_where_due_and_korean_texts(metrics, label, branch):
    v = c16.verdict(metrics)
    assert v.label == label and v.branch == f"C16.verdict.{branch}"
    assert_explained(v, "C16", branch)


def test_the_correction_restates_the_notes_sentence_with_the_measured_numbers():
    v = c16.verdict(_metrics())  # partly: smoothing wins back what naive W8A8 loses
    assert v.correction.startswith(
        "SmoothQuant is quantization that takes the activations (the inputs of linear layers) into account, "
        "not the activation function: it divides each input channel by s_j = max|X_j|^α / max|W_j|^(1-α)"
    )
    naive = 100 * sum(n / f - 1 for n, f in zip((10.6, 10.9, 10.5), (10.0, 10.2, 9.9), strict=True)) / 3
    smooth = 100 * sum(m / f - 1 for m, f in zip((10.05, 10.24, 9.93), (10.0, 10.2, 9.9), strict=True)) / 3
    assert (
        f"here at α=0.5 it cut the max/median channel ratio from 20 to 2 and the W8A8 (per_tensor_static) "
        f"perplexity loss from {naive:+.2f}% to {smooth:+.2f}%." in v.correction
    )
    assert f"{naive:+.2f}%" in v.correction.in_("ko") and "활성화 함수가 아니라" in v.correction.in_("ko")
    v = c16.verdict(_metrics(smooth=(11.5, 11.8, 11.4)))  # not supported: smoothing made it worse
    assert "did not cut the W8A8 (per_tensor_static) perplexity loss" in v.correction
    assert "from 20 to 2" in v.correction and "not the activation function" in v.correction


def test_the_english_reason_is_as_before():
    m = _by_kind(_metrics(), {"attn_in": 1.4, "mlp_in": 1.5, "mlp_down": 8.0})
    reason = c16.verdict(m).reason
    assert reason.startswith(
        "SmoothQuant does take the activations into account: model with outlier channels trained in: "
        "max/median channel ratio 20 → 2 after smoothing; W8A8 per_tensor_static perplexity "
    )
    assert reason.endswith(
        ". But the notes' 'activation function' (활성화 함수) is a misnomer: SmoothQuant rescales activation "
        "channels, the inputs of linear layers, and never looks at the activation function (the model's "
        "largest natural outliers do sit right after the SiLU gate, in down_proj's input: max/median 8 vs at "
        "most 1.5 elsewhere, but SmoothQuant treats them by their statistics like any other input)."
    )
    assert "(vs FP32, mean of 3 seeds); smoothing wins back +" in reason


@pytest.mark.parametrize(
    "metrics",
    [
        _metrics(),
        _metrics(naive=(10.01, 10.2, 9.9), smooth=(10.0, 10.2, 9.9)),
        _metrics(fp32=(10.0,), naive=(10.6,), smooth=(10.05,)),
    ],
)
def test_literature_renders_in_korean(metrics):
    for check in c16_figures._literature(metrics):
        assert_in_korean(check.finding)
        assert_in_korean(check.note)


def test_the_texts_of_a_run_without_the_outlier_condition_render_in_korean():
    for text in (Msg("C16.skipped.no_outliers"), Msg("C16.reason.no_stress"), c16.model_text("trained")):
        assert_in_korean(text)
    stress = Msg("C16.reason.stress", channels="[3]", scale=20.0, steps=30, lr=3e-4)
    assert "hidden channels [3] of every RMSNorm output are made 20x larger" in stress
    assert_in_korean(stress)


def test_trained_in_outliers_change_the_function_and_stay_after_training(mha, calib):
    """The outlier condition is not a rescaling smoothing could undo: the FP32 logits change, and
    fine-tuning keeps the channels large at the norm outputs."""
    channels = sq.strongest_norm_channels(mha, 2)
    amplified = sq.amplify_channels(mha, channels, 20.0)
    with torch.no_grad():
        assert (amplified(input_ids=calib).logits - mha(input_ids=calib).logits).abs().max() > 1e-2
    losses = sq.train_in(amplified, calib, steps=3, batch_size=2, lr=3e-4, seed=0)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    stats = sq.collect_act_absmax(amplified, calib, ["model.layers.0.self_attn.q_proj"])
    x = stats["model.layers.0.self_attn.q_proj"]
    others = [j for j in range(x.numel()) if j not in channels]
    assert float(x[channels].min()) > 5 * float(x[others].median())
    assert not any(p.requires_grad for p in amplified.parameters())


# ---------------------------------------------------------------- end to end, tiny


def test_concept_runs_end_to_end_on_a_tiny_tree(tmp_path):
    from whylab.concepts import REGISTRY, run_concept
    from whylab.results import validate_result

    assert REGISTRY["C16"] == "whylab.concepts.c16_smoothquant"
    tree = build_tree(tmp_path)
    settings = {
        "seeds": [0, 1],
        "device": "cpu",
        "languages": ["en"],
        "measure": {"block_size": 16, "eval_blocks": 4, "eval_batch_size": 4},
        "calibration": {"blocks": 2},
        **copy.deepcopy(c16_experiment.DEFAULTS),
    }
    settings.update(
        {
            "alphas": [0.0, 0.5, 1.0],
            "act_schemes": ["per_tensor_static"],
            "calibration_pool_blocks": 6,
            "outlier_channels": 1,
            "outlier_train_steps": 2,
            "outlier_train_batch_size": 2,
        }
    )
    record = run_concept(
        "C16",
        settings,
        {"model": tree["model"], "corpus": tree["corpus"]},
        tmp_path / "out" / "C16" / "result.json",
    )
    validate_result(record)
    m = record["metrics"]
    assert m["equivalence_max_abs_logit_diff"] < 1e-3
    assert set(m["conditions"]) == {"trained", "outliers"}
    assert len(m["conditions"]["trained"]["ppl_naive"]["per_tensor_static"]) == 2
    assert {f["path"] for f in record["figures"]} == {
        "figures/ppl_vs_alpha.png",
        "figures/channel_absmax.png",
    }
    assert (tmp_path / "out" / "C16" / "figures" / "channel_absmax.png").is_file()
    assert record["verdict"]["label"] in {str(label) for label in Label}
    # method, table captions, figure titles and captions, literature, verdict: all render in ko
    texts = list(record_messages(record))
    keys = {t.key for t in texts}
    assert {"C16.method", "C16.table.ppl.caption", "C16.table.outliers.caption", "C16.primary"} <= keys
    assert {"C16.figure.ppl_vs_alpha.caption", "C16.figure.channel_absmax.title"} <= keys
    assert {"C16.literature.smoothquant.finding", "C16.literature.llm_int8.note"} <= keys
    for t in texts:
        assert_in_korean(t)


def test_measuring_imports_no_plotting_texts_or_verdicts():
    assert_measuring_is_light("C16")


# ----------------------------------------------------------------------------- parts (issue 21)
def test_c16_definition_part_follows_the_activation_statistics():
    from catalogue_checks import assert_in_korean
    from whylab.concepts.c16_smoothquant import parts as c16_parts

    swap = {
        "formula_max_rel_err": 0.0,
        "swap_max_rel_diff": 0.0,
        "norm_fed_first_layer_max_rel_diff": 0.0,
        "down_max_rel_diff": 0.43,
    }
    p = c16_parts.definition_part(swap)
    assert p.run is Label.NOT_SUPPORTED and p.field is not None and p.field.label is Label.NOT_SUPPORTED
    assert "43%" in p.reason and assert_in_korean(p.reason) and assert_in_korean(p.field.reason)
    assert c16_parts.definition_part({**swap, "down_max_rel_diff": 0.0}).run is Label.INCONCLUSIVE
    assert c16_parts.definition_part({**swap, "formula_max_rel_err": 0.1}).run is Label.INCONCLUSIVE
    assert c16_parts.definition_part(None).run is Label.INCONCLUSIVE


def test_c16_efficacy_part_is_limited_where_naive_w8a8_loses_nothing():
    from catalogue_checks import assert_in_korean
    from whylab.concepts.c16_smoothquant import parts as c16_parts
    from whylab.verdict import paired_test

    gain = paired_test([5.0, 5.2, 4.9, 5.1, 5.0], [1.0, 1.1, 0.9, 1.0, 1.2])
    p = c16_parts.efficacy_part(gain, 5.0, 0.5, "m")
    assert p.run is Label.SUPPORTED and p.power is not None and not p.power.limited
    assert p.field is not None and p.field.label is Label.SUPPORTED and assert_in_korean(p.reason)
    flat = paired_test([0.1, 0.2, 0.1, 0.15, 0.1], [0.1, 0.1, 0.12, 0.1, 0.1])
    assert c16_parts.efficacy_part(flat, 0.13, 0.5, "m").run is Label.INCONCLUSIVE
    loss = paired_test([2.0, 2.1, 2.0, 2.05, 2.0], [4.0, 4.1, 4.2, 4.0, 4.1])
    assert c16_parts.efficacy_part(loss, 2.0, 0.5, "m").run is Label.NOT_SUPPORTED
