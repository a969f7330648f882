"""C08's decision: from the per-seed measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The minimum loss difference and the
minimum gradient trend are the claim's config keys (``decision_settings`` in ``claim.yaml``:
changing them re-runs this step only); the verdict's own constants are ``claim.yaml``'s
``thresholds``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts import _bench_stats as stats
from whylab.concepts.c08_pre_vs_post_ln.cells import POSITIONS, cell_key, cells_of, cold_key
from whylab.concepts.c08_pre_vs_post_ln.judged import (
    paper_part,
    placement_part,
    pre_wins_at_every_init,
    warmup_part,
)
from whylab.concepts.c08_pre_vs_post_ln.shapes import grad_shapes, xiong_agreement
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.verdict import Kind, Label, Verdict, VerdictOf, holm

CLAIM_ID = "C08"
SPEC = load_spec(CLAIM_ID)


def capped_loss(final_eval_loss: float | None, cap: float) -> float:
    """A run's final loss for comparisons: a run that blew up (NaN) or ended worse than a
    uniform guess counts as the uniform guess, ln(vocab)."""
    if final_eval_loss is None or not math.isfinite(final_eval_loss):
        return cap
    return min(float(final_eval_loss), cap)


def cell_name(cell: Mapping[str, Any]) -> Msg:
    warm = Msg("C08.cell.warmup", steps=cell["warmup"]) if cell["warmup"] else Msg("C08.cell.no_warmup")
    return Msg(
        "C08.cell.name", depth=cell["depth"], lr=cell["lr"], init_std=float(cell["init_std"]), warm=warm
    )


def p_of(comparison: Mapping[str, Any]) -> float:
    """The p-value of a :func:`~whylab.concepts._bench_stats.paired` entry; nan without a test.
    An exact p = 0 (every seed moved by the same amount) stays 0: ``or`` would turn it into nan."""
    test = comparison.get("test") or {}
    p = test.get("p")
    return math.nan if p is None else float(p)


def grad_trend(norms: Sequence[float]) -> float | None:
    """log(last block / first block) of the gradient norms at initialisation: > 0 when the gradient
    grows towards the output (Xiong et al.'s Post-LN), about 0 when flat (their Pre-LN)."""
    if len(norms) < 2 or norms[0] <= 0 or norms[-1] <= 0:
        return None
    return math.log(norms[-1] / norms[0])


# --------------------------------------------------------------------------- metrics


def _cell_metrics(
    cell: Mapping[str, Any], per_seed: list[dict[str, Any]], cap: float, floor: float
) -> dict[str, Any]:
    key = cell_key(cell)
    loss = {
        pos: [capped_loss(r["runs"][key][pos]["final_eval_loss"], cap) for r in per_seed] for pos in POSITIONS
    }
    return {
        **cell,
        "key": key,
        **{
            pos: {
                "loss": stats.summary(loss[pos]),
                "diverged": sum(int(r["runs"][key][pos]["diverged"]) for r in per_seed),
                "runs": len(per_seed),
            }
            for pos in POSITIONS
        },
        # positive: Pre-LN reaches the lower loss
        "post_minus_pre": stats.paired(loss["post"], loss["pre"], floor),
    }


def probe_depths(settings: Mapping[str, Any]) -> list[int]:
    return sorted({int(d) for d in settings["grad_probe_depths"]})


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    per_seed = measured.per_seed
    built = per_seed[0]  # vocabulary, init std and steps: the same for every seed
    cap = math.log(built["vocab_size"])
    primary, extra = cells_of(s)
    floor = float(s["min_loss_gain"])
    cells = [_cell_metrics(c, per_seed, cap, floor) for c in primary]
    warm = [_cell_metrics(c, per_seed, cap, floor) for c in extra]
    by_cell = {c["key"]: c for c in cells}
    for w in warm:
        cold = by_cell[cold_key(w)]
        # warm-up's gain per placement, paired by seed: positive, the run without warm-up ends
        # higher. Post-LN's is the rescue; Pre-LN's says whether Pre-LN needs warm-up too
        w["rescue"], w["pre_need"] = (
            stats.paired(stats.values(cold[pos]["loss"]), stats.values(w[pos]["loss"]), floor)
            for pos in ("post", "pre")
        )
    # one family: every primary cell's Post − Pre and each warm-up cell's two gains, Holm together
    pvals = {c["key"]: p_of(c["post_minus_pre"]) for c in cells}
    for w in warm:
        pvals |= {f"rescue-{w['key']}": p_of(w["rescue"]), f"pre-need-{w['key']}": p_of(w["pre_need"])}
    rejected = holm(pvals)
    for c in cells:
        c["holm_rejected"] = bool(rejected[c["key"]])
    for w in warm:
        w["holm_rejected"] = bool(rejected[f"rescue-{w['key']}"])
        w["pre_need_holm_rejected"] = bool(rejected[f"pre-need-{w['key']}"])
    depths = probe_depths(s)
    deep = str(max(depths))
    trends = {pos: [grad_trend(r["grad_norms_at_init"][pos][deep]) for r in per_seed] for pos in POSITIONS}
    return {
        "n_seeds": len(per_seed),
        "cells": cells,
        "warmup_cells": warm,
        "loss_cap": cap,
        "min_loss_gain": floor,
        "init_std": built["init_std"],
        "steps": int(built["steps"]),
        "grad_norms_at_init": {
            pos: {
                str(d): [
                    sum(col) / len(col)
                    for col in zip(*[r["grad_norms_at_init"][pos][str(d)] for r in per_seed], strict=True)
                ]
                for d in depths
            }
            for pos in POSITIONS
        },
        "grad_probe_depth": int(deep),
        "grad_trend": {
            pos: stats.summary([math.nan if v is None else v for v in vals]) for pos, vals in trends.items()
        },
        # Xiong et al.'s Figure 3 trend, paired by seed: log(last/first) of Post-LN minus Pre-LN
        "paired_grad_trend": stats.paired(trends["post"], trends["pre"], float(s["min_grad_log_ratio"])),
        # the shapes of their Figure 3, per placement: increasing / decreasing / flat / U-shaped
        "grad_shape": grad_shapes(trends, per_seed, deep, float(s["min_grad_log_ratio"])),
    }


# --------------------------------------------------------------------------- verdict


def _numbers(metrics: Mapping[str, Any]) -> Msg:
    cells = metrics["cells"]
    grad_text = Msg(
        "C08.reason.gradient",
        post=stats.fmt(metrics["grad_trend"]["post"], 2),
        pre=stats.fmt(metrics["grad_trend"]["pre"], 2),
        delta=stats.describe(metrics["paired_grad_trend"], ""),
    )
    div = {p: sum(c[p]["diverged"] for c in cells) for p in POSITIONS}
    cells_text = [
        Msg(
            "C08.reason.cell",
            cell=cell_name(c),
            delta=stats.describe(c["post_minus_pre"], "nats/token"),
            holm=Msg("C08.reason.holm_clear") if c["holm_rejected"] else empty(),
        )
        for c in cells
    ]
    return Msg(
        "C08.reason.numbers",
        cells=cells_text,
        div_pre=div["pre"],
        div_post=div["post"],
        runs=sum(c["pre"]["runs"] for c in cells),
        gradient=grad_text,
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Training decides (primary cells, paired, Holm); the gradient trend at initialisation
    (Xiong et al.'s mechanism) qualifies it.

    Pre-LN clearly better in some primary cell and Post-LN in none: supported, or partly when the
    gradient trend is clearly the opposite of Xiong et al.'s. Post-LN clearly better and Pre-LN in no
    cell: not supported. Both: partly. Neither: inconclusive (the training part is a limit of this
    run). An unclear gradient trend is a limit, never lowering the label.
    """
    part = SPEC.part("placement")
    assert part.primary is not None
    cells = metrics["cells"]
    floor = float(metrics["min_loss_gain"])
    steps = metrics["steps"]
    out = VerdictOf(
        Kind.EXPERIMENT, Msg(part.primary.text, seeds=metrics["n_seeds"], steps=steps, min_loss_gain=floor)
    )

    min_seeds = int(SPEC.threshold("min_seeds"))
    if (
        not cells
        or metrics["n_seeds"] < min_seeds
        or any(c["post_minus_pre"]["n"] < min_seeds for c in cells)
    ):
        return out.branch(Label.INCONCLUSIVE, "C08.verdict.one_seed")

    def diff(c: Mapping[str, Any]) -> float:
        return float(c["post_minus_pre"]["test"]["mean_diff"])

    pre_wins = [c for c in cells if c["holm_rejected"] and diff(c) > floor]
    post_wins = [c for c in cells if c["holm_rejected"] and diff(c) < -floor]
    numbers = _numbers(metrics)
    out.parts.append(placement_part(metrics, part.words, numbers))
    out.parts.append(paper_part(metrics, SPEC.part("paper").words))
    out.parts.append(warmup_part(metrics, SPEC.part("warmup").words))
    agreement = xiong_agreement(metrics["grad_shape"])
    grad_opposite = agreement == "disagrees"
    if agreement == "unclear":
        out.limited.append(Msg("C08.limited.gradient_unclear"))
    if pre_wins and not post_wins:
        # Pre-LN's advantage missing at some init std: the takeaway must not promise it everywhere
        init = "_init" if pre_wins_at_every_init(metrics) is False else ""
        if grad_opposite:
            return out.branch(Label.PARTLY, f"C08.verdict.gradient_opposite{init}", numbers=numbers)
        return out.branch(Label.SUPPORTED, f"C08.verdict.pre_wins{init}", numbers=numbers)
    if post_wins and not pre_wins:
        return out.branch(Label.NOT_SUPPORTED, "C08.verdict.post_wins", numbers=numbers)
    if pre_wins and post_wins:
        return out.branch(Label.PARTLY, "C08.verdict.both_win", numbers=numbers)
    out.limited.append(Msg("C08.limited.training", steps=steps))
    return out.branch(Label.INCONCLUSIVE, "C08.verdict.no_clear_cell", numbers=numbers)
