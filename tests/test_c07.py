"""C07: the padding helpers and measurements, masked BatchNorm (statistics without PAD), the
non-causal leak of batch statistics, the verdict driven to every label (short-run loss comparisons
are limits, never lowering the label), and the run end to end."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from bench_claims import TINY, comparison, lm_inputs_of, run_claim, schema_section, spread
from catalogue_checks import assert_explained, assert_record_in_korean, evidence_places
from claim_packages import assert_measuring_is_light
from whylab.bench.model import BenchConfig, BenchTransformer, MaskedTokenBatchNorm, NormKind
from whylab.concepts._settle import settle
from whylab.concepts.c07_layernorm_vs_batchnorm import figures as c07_figures
from whylab.concepts.c07_layernorm_vs_batchnorm import padding, probes
from whylab.concepts.c07_layernorm_vs_batchnorm import verdict as c07
from whylab.concepts.deciding import decide, run_decide
from whylab.concepts.measuring import measure_in_process, run_measure
from whylab.concepts.spec import measure_settings
from whylab.messages import Msg, english_runs
from whylab.verdict import Label

torch.set_num_threads(1)


def test_split_sentences_and_pairs() -> None:
    assert padding.split_sentences("One two. Three? Four!  Five") == ["One two.", "Three?", "Four!", "Five"]
    assert padding.split_sentences("헌법은 국민의 것이다. 다음 문장") == [
        "헌법은 국민의 것이다.",
        "다음 문장",
    ]
    x, y = padding.lm_pairs([[5, 6, 7, 8], [9, 10]], pad_id=0)
    assert x.tolist() == [[5, 6, 7], [9, 0, 0]]
    assert y.tolist() == [[6, 7, 8], [10, -100, -100]]
    x, _ = padding.lm_pairs([[5, 6, 7, 8], [9, 10]], pad_id=0, length=5)
    assert x.shape == (2, 5) and padding.pad_fraction(x, 0) == pytest.approx(6 / 10)
    with pytest.raises(ValueError, match="shorter than the longest"):
        padding.lm_pairs([[5, 6, 7, 8]], pad_id=0, length=2)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        padding.lm_pairs([[5]], pad_id=0)


class _Tok:
    def __init__(self, pad: int | None) -> None:
        self.pad = pad

    def get_vocab_size(self) -> int:
        return 50

    def token_to_id(self, name: str) -> int | None:
        return self.pad if name == "<pad>" else None


def test_pad_id_uses_the_tokenizers_pad_or_adds_one() -> None:
    assert padding.pad_id_of(_Tok(0)) == (0, 50)
    assert padding.pad_id_of(_Tok(None)) == (50, 51)


def test_padded_batches_mix_lengths_deterministically() -> None:
    seqs = [list(range(1, n + 1)) for n in (3, 5, 9, 12, 4)]
    fn = padding.padded_batch_fn(seqs, 4, pad_id=0)
    a = fn(0, torch.Generator().manual_seed(1))
    b = fn(0, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert ((a[0] == 0) == (a[1] == -100)).all()  # PAD inputs are exactly the ignored targets
    batches = padding.fixed_batches(seqs, 2, pad_id=0)
    assert [x.shape[0] for x, _ in batches] == [2, 2, 1]


def _tiny_lm(norm: NormKind) -> BenchTransformer:
    torch.manual_seed(0)
    return BenchTransformer(
        BenchConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=2, norm=norm, pad_id=0, max_len=64)
    )


def test_batch_dependence_layernorm_zero_batchnorm_not() -> None:
    gen = torch.Generator().manual_seed(0)
    pool = [
        torch.randint(1, 30, (int(n),), generator=gen).tolist()
        for n in torch.randint(4, 14, (20,), generator=gen)
    ]
    stream = torch.randint(1, 30, (200,), generator=gen)
    out = {}
    for norm in ("layer", "batch", "rms"):
        out[norm] = probes.batch_dependence(
            _tiny_lm(norm),
            pool[:3],
            pool[3:],
            stream,
            batch_size=4,
            mate_sets=3,
            extra_padding=[4, 12],
            pad_id=0,
            device="cpu",
            seed=0,
        )
    for norm in ("layer", "rms"):
        for key in ("mates_padded", "mates_nopad", "padding", "eval_mode"):
            assert out[norm][key] < 1e-5, (norm, key)
    for key in ("mates_padded", "mates_nopad", "padding"):
        assert out["batch"][key] > 1e-3, key
    assert out["batch"]["eval_mode"] < 1e-5  # running statistics: batch-independent at inference
    curve = out["batch"]["padding_curve"]
    assert [p["extra_pad_columns"] for p in curve] == [4, 12]
    assert curve[0]["pad_fraction"] < curve[1]["pad_fraction"]


def test_batch_stats_mode_leaves_running_stats_alone_and_statistics_see_pad() -> None:
    model = _tiny_lm("batch")
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x, y = padding.lm_pairs([[1, 2, 3, 4, 5, 6, 7, 8], [3, 4, 5]], pad_id=0)
    probes.token_loss(probes.batch_stats_mode(model), [(x, y)], "cpu")
    stats = probes.batchnorm_statistics(
        model, [(x, y), padding.lm_pairs([[2, 3, 4], [5, 6, 7, 8, 9]], 0)], 0, "cpu"
    )
    after = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert stats["pad_mean_shift"] > 0.01 and stats["batch_fluctuation"] > 0
    assert probes.batchnorm_statistics(_tiny_lm("layer"), [(x, y)], 0, "cpu") == {}


def test_masked_batchnorm_statistics_exclude_pad() -> None:
    bn = MaskedTokenBatchNorm(3)
    x = torch.randn(2, 4, 3)
    real = torch.tensor([[True, True, True, False], [True, True, False, False]])
    x_pad = x.clone()
    x_pad[~real] = 1000.0  # whatever sits at PAD positions
    bn.real = real
    a, b = bn(x), bn(x_pad)
    assert torch.allclose(a[real], b[real], atol=1e-5)
    rows = x[real]
    expected = (rows - rows.mean(0)) / torch.sqrt(rows.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(a[real], expected, atol=1e-5)
    # running statistics: two updates (momentum 0.1) from the same real tokens, PAD ignored
    assert torch.allclose(bn.running_mean, 0.19 * rows.mean(0), atol=1e-5)


def test_masked_batchnorm_model_is_blind_to_extra_padding_naive_is_not() -> None:
    gen = torch.Generator().manual_seed(0)
    pool = [
        torch.randint(1, 30, (int(n),), generator=gen).tolist()
        for n in torch.randint(4, 14, (12,), generator=gen)
    ]
    stream = torch.randint(1, 30, (200,), generator=gen)
    out = {}
    for norm in ("masked_batch", "batch"):
        out[norm] = probes.batch_dependence(
            _tiny_lm(norm),
            pool[:2],
            pool[2:],
            stream,
            batch_size=4,
            mate_sets=2,
            extra_padding=[6],
            pad_id=0,
            device="cpu",
            seed=0,
        )
    assert out["masked_batch"]["padding"] < 1e-5 < 1e-3 < out["batch"]["padding"]
    assert out["masked_batch"]["mates_padded"] > 1e-3  # still batch-dependent: other sentences count


def test_future_leak_zero_for_layernorm_positive_for_batchnorm() -> None:
    gen = torch.Generator().manual_seed(0)
    pool = [
        torch.randint(1, 30, (int(n),), generator=gen).tolist()
        for n in torch.randint(6, 14, (12,), generator=gen)
    ]
    leak = {
        norm: probes.future_leak(
            _tiny_lm(norm), pool[:3], pool[3:], batch_size=4, pad_id=0, vocab=30, device="cpu", seed=0
        )
        for norm in ("layer", "batch", "masked_batch")
    }
    assert leak["layer"] == 0.0
    assert leak["batch"] > 1e-3 and leak["masked_batch"] > 1e-3


DIFFS = [0.01, -0.02, 0.015, -0.01, 0.005]


STEPS = [0, 25, 50, 75, 100, 125, 150, 175, 200]


def diff_curve(end: float, *, moving: bool, first: float) -> dict[str, Any]:
    """A mean paired difference per evaluation: ``first`` at the first evaluation, then towards
    ``end``; settled (flat over the last three evaluations) or still moving by 0.1 there."""
    tail = [end + 0.1, end + 0.05, end] if moving else [end, end, end]
    return {"steps": STEPS, "mean": [0.0, first, first / 2, end, end, end, *tail], "n": 5}


def c07_metrics(
    *,
    naive: list[float],
    masked: list[float],
    layer: list[float],
    bn_pad: float = 0.3,
    ln_dep: float = 1e-7,
    moving: bool = False,
    first: float = 0.3,
    mode_gap: float = -0.1,
) -> dict[str, Any]:
    """Metrics as ``summarize`` gives them; ``first``: masked BatchNorm − LayerNorm at the first
    evaluation (positive: LayerNorm ahead early); ``mode_gap``: eval-mode minus batch-statistics
    loss of the BatchNorm models (negative: the batch statistics, which see the future, do worse)."""

    def norm(loss: list[float], padding: float) -> dict[str, Any]:
        return {
            "eval_loss": spread(loss),
            "padding": spread([padding] * 5),
            "mates_padded": spread([padding] * 5),
            "future_leak": spread([0.05] * 5),
            "mode_gap": spread([mode_gap] * 5),
            "tail_drop": spread([0.01] * 5),
        }

    curves = {
        "reason": diff_curve(gap(naive, masked), moving=moving, first=-0.2),
        "preference": diff_curve(gap(masked, layer), moving=moving, first=first),
    }
    tuning = {
        n: {"grid": [1e-3, 3e-3, 1e-2], "tune_loss": [5.3, 5.0, 5.1], "lr": 3e-3}
        for n in ("layer", "batch", "masked_batch")
    }
    return {
        "n_seeds": 5,
        "steps": 200,
        "norms": {
            "layer": norm(layer, ln_dep),
            "batch": norm(naive, bn_pad),
            "masked_batch": norm(masked, 1e-8),
        },
        "paired": {
            "reason_naive_minus_masked": comparison(naive, masked, 0.02),
            "preference_masked_minus_layer": comparison(masked, layer, 0.02),
            "naive_minus_layer": comparison(naive, layer, 0.02),
        },
        "diverged": {"layer": 0, "batch": 0, "masked_batch": 0},
        "dependence_threshold": 0.01,
        "invariance_tolerance": 1e-4,
        "min_loss_gain": 0.02,
        "settle_evals": 3,
        "tuning": tuning,
        "tune_disjoint": True,
        "difference_curves": curves,
        "settle": {k: settle(c, 0.02, 3) for k, c in curves.items()},
        "early": {k: c07._early(c) for k, c in curves.items()},
        "window_fall": {"layer": 0.11, "batch": 0.1, "masked_batch": 0.1},
    }


def gap(a: list[float], b: list[float]) -> float:
    return sum(a) / len(a) - sum(b) / len(b)


LN = [5.0, 5.1, 5.05, 4.95, 5.02]


def shift(values: list[float], by: float) -> list[float]:
    return [v + by + d for v, d in zip(values, DIFFS, strict=True)]


def test_verdict_supported_when_pad_hurts_and_layernorm_still_wins() -> None:
    v = c07.verdict(c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN))
    assert v.label is Label.SUPPORTED and not v.limited


def test_verdict_partly_when_one_part_is_contradicted() -> None:
    v = c07.verdict(c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN, bn_pad=0.001))
    assert v.label is Label.PARTLY  # PAD barely moves BatchNorm: the reason does not hold
    v = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN))
    assert v.label is Label.PARTLY  # masking PAD helps, but masked BatchNorm beats LayerNorm


def test_verdict_not_supported_when_every_judged_part_is_contradicted() -> None:
    v = c07.verdict(c07_metrics(naive=shift(LN, -0.5), masked=shift(LN, -0.2), layer=LN))
    assert v.label is Label.NOT_SUPPORTED


def test_short_run_loss_comparisons_are_limits_not_lower_labels() -> None:
    # masking makes no clear difference after 100 steps: the reason is a limit; the preference decides
    v = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, 0.3), layer=LN))
    assert v.label is Label.SUPPORTED and any("the reason" in x for x in v.limited)
    v = c07.verdict(c07_metrics(naive=shift(LN, 0.0), masked=shift(LN, 0.0), layer=LN))
    assert v.label is Label.INCONCLUSIVE and len(v.limited) == 2


def test_verdict_inconclusive_when_the_measurement_is_untrustworthy() -> None:
    v = c07.verdict(c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN, ln_dep=0.01))
    assert v.label is Label.INCONCLUSIVE


SECTION = {
    "steps": 4,
    "eval_every": 2,
    "lr_grid": [3e-3, 1e-2],
    "max_seq_len": 20,
    "eval_sequences": 8,
    "probes": 2,
    "mate_sets": 2,
    "extra_padding": [6],
}


def test_runs_end_to_end(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    rec = run_claim("C07", dict(SECTION), lm_inputs_of(tiny_corpus, tiny_tokenizers), tmp_path)
    # method, captions, titles, literature and the verdict's reason are kept as messages and
    # render in Korean, each reading differently from its English
    assert len(rec["tables"]) == 3 and len(rec["figures"]) == 4 and len(rec["literature"]) == 1
    tuning = rec["metrics"]["tuning"]
    assert {"layer", "batch", "masked_batch"} <= set(tuning) and all(
        t["lr"] in (3e-3, 1e-2) for t in tuning.values()
    )
    assert rec["metrics"]["tune_disjoint"] and rec["metrics"]["difference_curves"]["preference"]["steps"] == [
        0,
        2,
        4,
    ]
    kept = evidence_places(rec, verdict=("reason",))
    assert_record_in_korean(rec, required=kept, differs_from_english=kept)
    norms = rec["metrics"]["norms"]
    assert norms["layer"]["padding"]["mean"] < 1e-5 and norms["batch"]["padding"]["mean"] > 1e-3
    assert norms["masked_batch"]["padding"]["mean"] < 1e-5
    assert norms["layer"]["future_leak"]["mean"] == 0.0 and norms["batch"]["future_leak"]["mean"] > 0
    assert rec["metrics"]["paired"]["reason_naive_minus_masked"]["n"] == 2
    assert 0 < rec["metrics"]["pad_fraction_train"] < 1
    with pytest.raises(Exception, match="masked_batch"):
        run_claim(
            "C07",
            {**SECTION, "norms": ["layer", "batch"]},
            lm_inputs_of(tiny_corpus, tiny_tokenizers),
            tmp_path / "x",
        )


def test_measuring_is_light() -> None:
    assert_measuring_is_light("C07")


def test_the_decision_settings_are_decided_from_the_measure_jobs_files(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    """The measure job never sees min_loss_gain and the other thresholds; the decide job reads them
    from the run's settings, and gives what one process gives."""
    settings = {**copy.deepcopy(TINY), **schema_section("C07"), **SECTION, "seeds": TINY["seeds"]}
    inputs = lm_inputs_of(tiny_corpus, tiny_tokenizers)
    measured = measure_in_process("C07", settings, inputs)
    # one measure job: the learning rates are tuned before any seed runs
    assert measured.per_seed == [] and [r["seed"] for r in measured.whole["per_seed"]] == [0, 1]
    here = decide("C07", settings, measured, tmp_path / "one" / "C07" / "result.json")
    measure_only = measure_settings("C07", settings)
    assert "min_loss_gain" not in measure_only and "norms" in measure_only
    files = tmp_path / "jobs" / "C07"
    run_measure("C07", measure_only, inputs, files / "measurements.json")
    stricter = {**settings, "min_loss_gain": 5.0}
    jobs = run_decide("C07", stricter, {"measurements": files / "measurements.json"}, files / "result.json")
    assert jobs["metrics"]["min_loss_gain"] == 5.0 and here["metrics"]["min_loss_gain"] == 0.02
    assert jobs["metrics"]["paired"]["reason_naive_minus_masked"]["min_effect"] == 5.0
    same = run_decide("C07", settings, {"measurements": files / "measurements.json"}, files / "result.json")
    assert same["metrics"] == here["metrics"] and same["verdict"] == here["verdict"]


def test_loss_comparisons_still_moving_are_limits() -> None:
    # masked BatchNorm clearly ahead of LayerNorm, but the paired difference still moves: not judged
    v = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, moving=True))
    assert v.label is Label.INCONCLUSIVE and all("still moved by 0.100" in x for x in v.limited)
    # the mechanism itself (PAD barely moving BatchNorm) is judged whatever the training length
    v = c07.verdict(
        c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, moving=True, bn_pad=0.001)
    )
    assert v.label is Label.NOT_SUPPORTED


def test_the_early_progress_sentence_follows_the_curve() -> None:
    """Issue 20: "BatchNorm's faster early progress" was said while the curve showed LayerNorm
    ahead early; now the sentence reads the first evaluation and the last change of sign."""
    late = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, first=0.5))
    assert "LayerNorm ahead: BatchNorm did not start faster" in late.reason
    assert "its sign last changed at step 75" in late.reason
    early = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, first=-0.5))
    assert "masked BatchNorm ahead from the start" in early.reason and "sign last changed" not in early.reason


def test_the_text_says_whether_batchnorms_lead_is_an_artefact_of_the_future_leak() -> None:
    """The losses compared are in eval mode; the batch-statistics loss of the same models says
    whether seeing the later tokens would lower BatchNorm's loss."""
    real = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, mode_gap=-0.2))
    assert "not an artefact of the leak" in real.reason and "masked by +0.200" in real.reason
    flattered = c07.verdict(
        c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, mode_gap=0.05)
    )
    assert "the leak flatters BatchNorm" in flattered.reason
    preference = next(p for p in real.parts if p.id == "preference")
    assert "not an artefact of the leak" in preference.reason
    assert "LayerNorm's own loss still fell by 0.110" in preference.reason  # both arms still learning
    for v in (real, flattered):
        assert_explained(v, "C07", differs_from_english=True)


# --------------------------------------------------------------------------- catalogue texts


def _few_seeds() -> dict[str, Any]:
    m = c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN)
    m["n_seeds"] = 1
    return m


def _diverged() -> dict[str, Any]:
    m = c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN)
    m["diverged"]["batch"] = 1
    return m


BRANCHES: dict[str, tuple[Label, Any]] = {
    "supported": (
        Label.SUPPORTED,
        lambda: c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN),
    ),
    "partly_reason": (
        Label.PARTLY,
        lambda: c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN, bn_pad=0.001),
    ),
    "partly_preference": (
        Label.PARTLY,
        lambda: c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, first=0.3),
    ),
    "not_supported": (
        Label.NOT_SUPPORTED,
        lambda: c07_metrics(naive=shift(LN, -0.5), masked=shift(LN, -0.2), layer=LN),
    ),
    "not_supported_reason": (
        Label.NOT_SUPPORTED,
        lambda: c07_metrics(
            naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, moving=True, bn_pad=0.001
        ),
    ),
    "not_supported_preference": (
        Label.NOT_SUPPORTED,
        lambda: c07_metrics(naive=shift(LN, -0.3), masked=shift(LN, -0.3), layer=LN),
    ),
    "nothing_judged": (
        Label.INCONCLUSIVE,
        lambda: c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, moving=True),
    ),
    "untrustworthy": (
        Label.INCONCLUSIVE,
        lambda: c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN, ln_dep=0.01),
    ),
    "too_few_seeds": (Label.INCONCLUSIVE, _few_seeds),
    "diverged": (Label.INCONCLUSIVE, _diverged),
}


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_every_verdict_branch_has_its_texts_in_korean(branch: str) -> None:
    label, metrics = BRANCHES[branch]
    v = c07.verdict(metrics())
    assert v.label is label and v.branch == f"C07.verdict.{branch}"
    assert_explained(v, "C07", differs_from_english=True)


def test_limits_and_the_curve_render_in_korean() -> None:
    swapped = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, first=0.3))
    assert "LayerNorm ahead" in swapped.reason and "LayerNorm이 앞섰다" in swapped.reason.in_("ko")
    unclear = c07.verdict(c07_metrics(naive=shift(LN, 0.0), masked=shift(LN, 0.0), layer=LN))
    moving = c07.verdict(c07_metrics(naive=shift(LN, 0.3), masked=shift(LN, -0.3), layer=LN, moving=True))
    overlap = c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN)
    overlap["tune_disjoint"] = False
    overlapping = c07.verdict(overlap)
    assert any(x.key == "C07.limited.tune_overlap" for x in overlapping.limited)
    for v in (swapped, unclear, moving, overlapping):
        assert_explained(v, "C07", differs_from_english=True)
    assert {x.key for x in unclear.limited} == {"C07.limited.reason", "C07.limited.preference"}


def test_shen_note_renders_in_korean_with_and_without_batchnorm_statistics() -> None:
    for naive, stats in ((shift(LN, 0.3), {}), (shift(LN, -0.3), None), (LN, None)):
        m = c07_metrics(naive=naive, masked=shift(LN, 0.1), layer=LN)
        if stats is None:
            m["batchnorm_statistics"] = {"batch_fluctuation": {"mean": 0.12}, "pad_mean_shift": {"mean": 0.3}}
        lit = c07_figures._shen(m)
        for text in (lit.finding, lit.note):
            assert isinstance(text, Msg) and english_runs(text.in_("ko")) == []
        assert ("n/a" in lit.note) == (stats == {})


def test_the_stability_rule_on_the_difference_replaces_the_knife_edge_plateau_gate() -> None:
    """Issue 20: a 2.8% vs 1.93% tail drop flipped the label; now each part's paired difference
    decides, judged once it moved by less than the margin over the last evaluations."""
    m = c07_metrics(naive=shift(LN, 0.6), masked=shift(LN, 0.3), layer=LN)
    m["norms"]["layer"]["tail_drop"] = spread([0.028] * 5)  # one arm still falling: no longer a gate
    assert c07.verdict(m).label is Label.SUPPORTED
    # only the preference still moving: the reason is judged, the preference is a limit
    m["difference_curves"]["preference"] = diff_curve(-0.3, moving=True, first=0.3)
    m["settle"]["preference"] = settle(m["difference_curves"]["preference"], 0.02, 3)
    v = c07.verdict(m)
    assert v.label is Label.SUPPORTED and [x.key for x in v.limited] == ["C07.limited.preference"]
    assert {p.id: p.run for p in v.parts}["preference"] is Label.INCONCLUSIVE


# --------------------------------------------------------------------------- parts (VALIDITY 7-9)

SMALL = [0.002, -0.003, 0.001, -0.002, 0.002]  # a seed spread the run can resolve at 0.02 nats/token


def tight(values: list[float], by: float, noise: list[float] = SMALL) -> list[float]:
    return [v + by + d for v, d in zip(values, noise, strict=True)]


def naive_of(by: float) -> list[float]:
    """Naive BatchNorm's losses, with their own seed noise (so naive − masked has a spread)."""
    return tight(LN, by, SMALL[::-1])


def leaky(m: dict[str, Any], bn: list[float], ln: float = 1e-8) -> dict[str, Any]:
    m["norms"]["batch"]["future_leak"] = spread(bn)
    m["norms"]["layer"]["future_leak"] = spread([ln] * len(bn))
    return m


LEAK = [0.05, 0.06, 0.045, 0.055, 0.05]


def _labels(m: dict[str, Any]) -> dict[str, Label]:
    return {p.id: p.run for p in c07.verdict(m).parts}


def test_parts_agree_with_the_label_and_every_part_label_is_reachable() -> None:
    both = leaky(c07_metrics(naive=naive_of(0.6), masked=tight(LN, 0.3), layer=LN), LEAK)
    v = c07.verdict(both)
    assert v.label is Label.SUPPORTED
    assert _labels(both) == {
        "reason": Label.SUPPORTED,
        "preference": Label.SUPPORTED,
        "future_leak": Label.SUPPORTED,
    }
    # masking PAD clearly hurts and masked BatchNorm clearly beats LayerNorm: both not supported
    worse = leaky(
        c07_metrics(naive=naive_of(-0.5), masked=tight(LN, -0.2), layer=LN), [1e-4, 2e-4, 1.5e-4, 1e-4, 3e-4]
    )
    assert c07.verdict(worse).label is Label.NOT_SUPPORTED
    assert set(_labels(worse).values()) == {Label.NOT_SUPPORTED}
    # PAD barely moves BatchNorm: the reason is contradicted by the probe (no loss power applies)
    probe = leaky(c07_metrics(naive=naive_of(0.6), masked=tight(LN, 0.3), layer=LN, bn_pad=0.001), LEAK)
    reason = c07.verdict(probe).parts[0]
    assert reason.run is Label.NOT_SUPPORTED and reason.power is None and "only 0.001" in reason.reason
    # not clear, or a lead still moving: limited parts, never lower
    unclear = leaky(c07_metrics(naive=naive_of(0.0), masked=tight(LN, 0.0), layer=LN), LEAK)
    assert (
        _labels(unclear)["reason"] is Label.INCONCLUSIVE
        and _labels(unclear)["preference"] is Label.INCONCLUSIVE
    )
    # LayerNorm moving with the later tokens: the leak probe is not clean
    dirty = leaky(c07_metrics(naive=naive_of(0.6), masked=tight(LN, 0.3), layer=LN), LEAK, ln=5e-4)
    assert _labels(dirty)["future_leak"] is Label.INCONCLUSIVE


def test_noisy_seeds_make_a_contradiction_limited_not_lower() -> None:
    """With the seed spread of DIFFS the run could detect only about 0.024 nats/token, above the
    0.02 nats/token margin: a clear contradiction becomes a limited part (inconclusive)."""
    v = c07.verdict(c07_metrics(naive=shift(LN, -0.5), masked=shift(LN, -0.2), layer=LN))
    reason, preference, _ = v.parts
    assert reason.power is not None and reason.power.limited and reason.power.detectable > 0.02
    assert reason.run is Label.INCONCLUSIVE and preference.run is Label.INCONCLUSIVE
    assert "could detect 0.0242" in preference.reason


def test_literature_from_the_recorded_shen_numbers() -> None:
    from whylab.concepts.c07_layernorm_vs_batchnorm import judged

    pref, reason = judged.field_of("preference"), judged.field_of("reason")
    assert pref is not None and reason is not None and judged.field_of("future_leak") is None
    assert pref.label is Label.SUPPORTED and pref.published[0].value == -1  # BatchNorm worse
    assert reason.label is Label.INCONCLUSIVE  # Shen et al. name another cause, not PAD
    assert all(p.url == "https://arxiv.org/abs/2003.07845" for p in (*pref.published, *reason.published))
    both = leaky(c07_metrics(naive=naive_of(0.6), masked=tight(LN, 0.3), layer=LN), LEAK)
    parts = c07.verdict(both).parts
    assert [str(p.believe.source) for p in parts] == ["this run", "run and literature agree", "this run"]


def test_part_texts_render_in_korean() -> None:
    cases = (
        leaky(c07_metrics(naive=naive_of(0.6), masked=tight(LN, 0.3), layer=LN), LEAK),
        leaky(
            c07_metrics(naive=naive_of(-0.5), masked=tight(LN, -0.2), layer=LN),
            [1e-4, 2e-4, 1.5e-4, 1e-4, 3e-4],
        ),
        leaky(c07_metrics(naive=naive_of(0.6), masked=tight(LN, 0.3), layer=LN, bn_pad=0.001), LEAK, ln=5e-4),
        c07_metrics(naive=shift(LN, 0.0), masked=shift(LN, 0.0), layer=LN),
    )
    for m in cases:
        for part in c07.verdict(m).parts:
            texts = [part.reason] + ([part.field.reason] if part.field else [])
            for text in texts:
                assert isinstance(text, Msg)
                ko = text.in_("ko")
                assert ko != str(text) and english_runs(ko) == [], ko
