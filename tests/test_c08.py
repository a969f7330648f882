"""C08: pre-registered primary cells decided by paired tests with Holm, Xiong et al.'s gradient
trend at initialisation in the verdict, every label, and the run end to end (deterministic)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from bench_claims import comparison, lm_inputs_of, run_claim, spread
from catalogue_checks import assert_explained, assert_record_in_korean
from claim_packages import assert_measuring_is_light
from whylab.concepts.c08_pre_vs_post_ln import figures as c08_figures
from whylab.concepts.c08_pre_vs_post_ln import verdict as c08
from whylab.concepts.c08_pre_vs_post_ln.cells import cell_key
from whylab.concepts.c08_pre_vs_post_ln.shapes import PAPER_SHAPE, shape_of
from whylab.messages import Msg, english_runs
from whylab.verdict import Label, holm

torch.set_num_threads(1)

PRE = [5.0, 5.1, 5.05, 4.95, 5.02]
NOISE = [0.01, -0.02, 0.015, -0.01, 0.005]


STALL = [6.0 + n for n in NOISE]  # Post-LN at the unigram loss, as on the default corpus


def shift(by: float) -> list[float]:
    return [p + by + n for p, n in zip(PRE, NOISE, strict=True)]


XAVIER = 1 / 32**0.5  # the default cells' d_model 32: init std 0.177


def cell(
    depth: int, post: list[float], pre: list[float] = PRE, lr: float = 1e-2, init_std: float = XAVIER
) -> dict[str, Any]:
    return {
        "depth": depth,
        "lr": lr,
        "init_std": init_std,
        "warmup": 0,
        "key": cell_key({"depth": depth, "lr": lr, "init_std": init_std, "warmup": 0}),
        "pre": {"loss": spread(pre), "diverged": 0, "runs": 5},
        "post": {"loss": spread(post), "diverged": 0, "runs": 5},
        "post_minus_pre": comparison(post, pre, 0.05),
    }


def shape_entry(pos: str, trend: list[float], dips: list[float]) -> dict[str, Any]:
    t, d = comparison(trend, [0.0] * len(trend), 0.405), comparison(dips, [0.0] * len(dips), 0.405)
    ratio = spread([math.exp(v) for v in trend])
    return {
        "trend": t,
        "dip": d,
        "last_over_first": ratio,
        "shape": shape_of(t, d),
        "paper": PAPER_SHAPE[pos],
    }


FLAT = [0.0, 0.1, -0.1, 0.05, -0.05]
NO_DIP = [-0.5, -0.4, -0.6, -0.5, -0.45]


def c08_metrics(
    cells: list[dict[str, Any]],
    post_trend: list[float] | None = None,
    pre_trend: list[float] | None = None,
    post_dip: list[float] | None = None,
) -> dict[str, Any]:
    pvals = {c["key"]: c08.p_of(c["post_minus_pre"]) for c in cells}
    rejected = holm(pvals)
    for c in cells:
        c["holm_rejected"] = rejected[c["key"]]
    post_trend = post_trend or [1.5, 1.7, 1.6, 1.4, 1.8]
    pre_trend = pre_trend or FLAT
    return {
        "grad_probe_depth": 12,
        "grad_shape": {
            "post": shape_entry("post", post_trend, post_dip or NO_DIP),
            "pre": shape_entry("pre", pre_trend, NO_DIP),
        },
        "n_seeds": 5,
        "steps": 80,
        "cells": cells,
        "warmup_cells": [],
        "min_loss_gain": 0.05,
        "grad_trend": {"post": spread(post_trend), "pre": spread(pre_trend)},
        "paired_grad_trend": comparison(post_trend, pre_trend, 0.405),
    }


def test_verdict_supported_when_pre_ln_wins_and_the_gradient_trend_agrees() -> None:
    v = c08.verdict(c08_metrics([cell(6, shift(0.4)), cell(12, shift(0.8))]))
    assert v.label is Label.SUPPORTED and "Holm" in v.primary and not v.limited


def test_verdict_partly_when_the_gradient_trend_is_opposite_or_both_win() -> None:
    v = c08.verdict(
        c08_metrics(
            [cell(6, shift(0.4)), cell(12, shift(0.8))],
            # issue 20's run: Pre-LN's norm falls about 4x towards the output, Post-LN's is a U; the
            # difference of the log ratios is positive, but neither has Figure 3's shape
            post_trend=[0.1, -0.1, 0.05, 0.0, 0.02],
            pre_trend=[-1.4, -1.3, -1.5, -1.35, -1.45],
            post_dip=[1.0, 1.2, 0.9, 1.1, 1.05],
        )
    )
    assert v.label is Label.PARTLY
    assert {p.id: p.run for p in v.parts}["paper"] is Label.NOT_SUPPORTED
    assert "U-shaped" in str(v.parts[1].reason) and "neither shape agrees" in str(v.parts[1].reason)
    v = c08.verdict(c08_metrics([cell(6, shift(-0.4)), cell(12, shift(0.8))]))
    assert v.label is Label.PARTLY


def test_verdict_not_supported_when_post_ln_wins() -> None:
    assert (
        c08.verdict(c08_metrics([cell(6, shift(-0.4)), cell(12, shift(-0.3))])).label is Label.NOT_SUPPORTED
    )


def test_verdict_inconclusive_without_a_clear_cell_or_with_one_seed() -> None:
    v = c08.verdict(c08_metrics([cell(6, shift(0.0)), cell(12, shift(0.01))]))
    assert v.label is Label.INCONCLUSIVE and any("training" in x for x in v.limited)
    one = cell(6, [5.5], [5.0])
    assert c08.verdict(c08_metrics([one])).label is Label.INCONCLUSIVE


def test_holm_guards_the_family() -> None:
    # one cell barely clear on its own (p just under 0.05) is not clear among three cells
    borderline = [p + 0.1 + d for p, d in zip(PRE, [0.09, -0.08, 0.1, -0.07, 0.02], strict=True)]
    assert comparison(borderline, PRE, 0.05)["test"]["p"] < 0.05
    m = c08_metrics([cell(6, borderline), cell(8, shift(0.0)), cell(12, shift(0.0))])
    assert not m["cells"][0]["holm_rejected"]
    assert c08.verdict(m).label is Label.INCONCLUSIVE


def test_grad_trend_and_capped_loss() -> None:
    assert c08.grad_trend([1.0, 2.0, 4.0]) == math.log(4.0)
    assert c08.grad_trend([0.0, 1.0]) is None
    assert c08.capped_loss(float("nan"), 6.9) == 6.9 and c08.capped_loss(9.0, 6.9) == 6.9
    assert c08.capped_loss(None, 6.9) == 6.9 and c08.capped_loss(4.0, 6.9) == 4.0


def test_runs_end_to_end_and_is_deterministic(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    section = {
        "primary_cells": [{"depth": 2, "lr": 1e-2}, {"depth": 3, "lr": 1e-2}],
        "warmup_depths": [3],
        "warmup_steps": 2,
        "steps": 4,
        "batch_size": 4,
        "seq_len": 8,
        "eval_every": 2,
        "d_model": 8,
        "grad_probe_depths": [3],
    }
    inputs = lm_inputs_of(tiny_corpus, tiny_tokenizers)
    a = run_claim("C08", dict(section), inputs, tmp_path / "a")
    b = run_claim("C08", dict(section), inputs, tmp_path / "b")
    assert a["metrics"]["cells"] == b["metrics"]["cells"]
    m = a["metrics"]
    assert len(m["cells"]) == 2 and len(m["warmup_cells"]) == 1
    assert all("holm_rejected" in c for c in m["cells"])
    assert len(m["grad_norms_at_init"]["pre"]["3"]) == 3
    assert m["init_std"] == 1 / math.sqrt(8)  # Xavier-like, as in Xiong et al.
    assert all((tmp_path / "a" / "C08" / f["path"]).is_file() for f in a["figures"])
    # every text of the evidence is a catalogue message that renders in Korean
    assert "method" in a["messages"] and "warm-up" in a["method"]
    assert len(a["figures"]) >= 2 and all(set(f["messages"]) == {"title", "caption"} for f in a["figures"])
    assert all("caption" in t["messages"] for t in a["tables"])
    assert len(a["literature"]) == 2 and all(
        set(x["messages"]) == {"finding", "note"} for x in a["literature"]
    )
    assert {"reason", "primary", "takeaway"} <= set(a["verdict"]["messages"])
    assert_record_in_korean(a)


def test_measuring_is_light() -> None:
    assert_measuring_is_light("C08")


OPPOSITE = [-1.5, -1.6, -1.4, -1.7, -1.5]
UNCLEAR_TREND = [1.0, -1.0, 0.8, -0.9, 0.3]


def test_every_branch_has_its_texts_in_both_languages() -> None:
    cases = [
        (c08_metrics([cell(6, shift(0.4)), cell(12, shift(0.8))]), Label.SUPPORTED, "pre_wins"),
        (c08_metrics([cell(6, shift(0.4))], OPPOSITE, OPPOSITE), Label.PARTLY, "gradient_opposite"),
        (c08_metrics([cell(6, shift(-0.4)), cell(12, shift(0.8))]), Label.PARTLY, "both_win"),
        (c08_metrics([cell(6, shift(-0.4)), cell(12, shift(-0.3))]), Label.NOT_SUPPORTED, "post_wins"),
        (c08_metrics([cell(6, shift(0.0)), cell(12, shift(0.01))]), Label.INCONCLUSIVE, "no_clear_cell"),
        (c08_metrics([cell(6, [5.5], [5.0])]), Label.INCONCLUSIVE, "one_seed"),
        (c08_metrics([cell(6, shift(0.4))], UNCLEAR_TREND, UNCLEAR_TREND), Label.SUPPORTED, "pre_wins"),
    ]
    for metrics, label, branch in cases:
        v = c08.verdict(metrics)
        assert v.label is label, branch
        assert_explained(v, "C08", branch)
    assert any("gradient trend" in x for x in v.limited)  # the unclear trend is a limit


def test_the_english_texts_are_unchanged() -> None:
    v = c08.verdict(c08_metrics([cell(6, shift(-0.4)), cell(12, shift(-0.3))]))
    assert v.reason.startswith(
        "Post-LN trains clearly better in the cells where Pre-LN should win: 6 layers, lr 0.01, init std "
        "0.177, no warm-up, no clipping: Post − Pre Δ = -0.400 nats/token"
    )
    assert (
        "(clear after Holm); 12 layers, lr 0.01, init std 0.177, no warm-up, no clipping: Post − Pre"
        in v.reason
    )
    assert (
        "; diverged runs Pre-LN 0/10, Post-LN 0/10; at initialisation log(last/first block gradient) is"
        in v.reason
    )
    assert v.correction == "Pre-LN is not better everywhere: in this setting Post-LN reached the lower loss."
    assert v.primary.endswith("past 0.05 nats/token (5 seeds, 80 steps)")


def test_literature_texts_render_in_korean() -> None:
    m = c08_metrics([cell(6, shift(0.4))])
    warm = cell(6, shift(0.1))
    warm["warmup"] = 5
    m["warmup_cells"] = [warm]
    m["grad_probe_depth"] = 12
    checks = c08_figures._xiong(m)
    assert len(checks) == 2 and checks[1].note.startswith(
        "Decides the warm-up part: 6 layers, lr 0.01, init std 0.177: Post − Pre Δ"
    )
    for check in checks:
        for text in (check.finding, check.note):
            assert isinstance(text, Msg) and english_runs(text.in_("ko")) == [], text.in_("ko")
    assert str(c08.cell_name(warm)) == "6 layers, lr 0.01, init std 0.177, warm-up 5, no clipping"


def test_an_exact_p_of_zero_stays_zero() -> None:
    assert c08.p_of({"test": {"p": 0.0}}) == 0.0
    assert math.isnan(c08.p_of({"test": None})) and math.isnan(c08.p_of({"test": {"p": None}}))


def test_parts_placement_is_limited_until_a_cell_stresses_post_ln() -> None:
    """Issue 20: both placements ending alike with no diverged run is a limit, not evidence."""
    flat = c08.verdict(c08_metrics([cell(6, shift(0.0))]))
    placement, paper, warmup = flat.parts
    assert warmup.id == "warmup" and warmup.run is Label.INCONCLUSIVE  # no warm-up cell ran
    assert "No warm-up cell ran" in str(warmup.reason)
    assert placement.id == "placement" and placement.run is Label.INCONCLUSIVE
    assert "No primary cell stressed Post-LN" in str(placement.reason)
    assert placement.power is not None and placement.power.unit == "nats/token"
    # what to believe then comes from the literature: Xiong et al.'s direction, computed
    assert placement.field is not None and placement.field.label is Label.SUPPORTED
    assert placement.believe.label is Label.SUPPORTED and str(placement.believe.source) == "the literature"
    assert paper.run is Label.SUPPORTED and paper.field is not None and paper.field.label is Label.SUPPORTED
    stressed = c08.verdict(c08_metrics([cell(6, shift(0.6))]))
    assert stressed.parts[0].run is Label.SUPPORTED
    post_wins = c08.verdict(c08_metrics([cell(6, shift(-0.4)), cell(12, shift(-0.3))]))
    assert post_wins.parts[0].run is Label.NOT_SUPPORTED


def test_parts_texts_render_in_korean() -> None:
    for m in (c08_metrics([cell(6, shift(0.0))]), c08_metrics([cell(6, shift(0.6))], OPPOSITE, OPPOSITE)):
        for part in c08.verdict(m).parts:
            assert part.field is not None
            for text in (part.reason, part.field.reason):
                assert isinstance(text, Msg) and english_runs(text.in_("ko")) == [], text.in_("ko")
