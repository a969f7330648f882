"""C06's decision: from the per-seed task and LM runs to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). Every threshold is a decision setting
of the config (``claim.yaml``: ``decision_settings``), copied into the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from whylab.concepts._bench_stats import describe, paired, summary
from whylab.concepts._settle import difference_curve, settle
from whylab.concepts.c06_value_projection.arms import TASK_ARMS
from whylab.concepts.c06_value_projection.judged import (
    ablation_limit,
    judged_parts,
    lr_text,
    roles_part,
    tost,
)
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.verdict import Kind, Label, Verdict, VerdictOf, holm

CLAIM_ID = "C06"
SPEC = load_spec(CLAIM_ID)
THRESHOLDS = ("min_accuracy_gap", "min_loss_gain", "min_follow_value", "max_value_swap_shift")
# settle_evals (the stability window of the LM comparison) is a decision setting too
LM_KEYS = ("w_v", "v_is_x", "baseline")


def interventions(measured: Measured) -> list[dict[str, float]]:
    """The role-separating measurements of each seed (the learned-W_v task arm)."""
    return [r["task"]["w_v"]["interventions"] for r in measured.per_seed]


def task_accuracy(measured: Measured) -> dict[str, list[float]]:
    """Held-out task accuracy per arm key, one value per seed."""
    return {key: [r["task"][key]["accuracy"] for r in measured.per_seed] for key, _, _ in TASK_ARMS.values()}


def lm_runs(measured: Measured) -> list[dict[str, Any]]:
    """Per seed, the LM arms (from ``measure``: tuned before any seed) and the shared baseline."""
    ablation = measured.whole["per_seed"]
    return [{**a["lm"], **r["lm"]} for a, r in zip(ablation, measured.per_seed, strict=True)]


def lm_loss(measured: Measured) -> dict[str, list[float | None]]:
    """Final LM validation loss per arm key (and the shared baseline), one value per seed."""
    return {key: [r[key]["eval_loss"] for r in lm_runs(measured)] for key in LM_KEYS}


def at_ceiling(metrics: Mapping[str, Any]) -> bool:
    """Both task arms at the same accuracy on every seed (zero spread of the paired difference):
    the task cannot tell the arms apart, a limit of the task, not evidence either way."""
    t = metrics["paired_task_accuracy"].get("test") or {}
    return t.get("sd_diff") == 0.0 and float(t.get("mean_diff", 1.0)) == 0.0


def summarize(measured: Measured) -> dict[str, Any]:
    per_seed = measured.per_seed
    tc = measured.settings["task"]
    th = {k: float(measured.settings[k]) for k in THRESHOLDS}
    inter = interventions(measured)
    acc = task_accuracy(measured)
    loss = lm_loss(measured)
    runs = lm_runs(measured)
    curve = difference_curve([r["v_is_x"]["curve"] for r in runs], [r["w_v"]["curve"] for r in runs])
    return {
        "n_seeds": len(per_seed),
        "task": {
            "n_keys": tc["n_keys"],
            "n_values": tc["n_values"],
            "n_pairs": tc["n_pairs"],
            "n_layers": tc["n_layers"],
            "n_heads": 1,
            "ffn": tc["ffn"],
            "chance_accuracy": 1.0 / tc["n_values"],
            "uniform_attention": 1.0 / (tc["n_pairs"] + 1),
        },
        "task_accuracy": {key: summary(v) for key, v in acc.items()},
        "lm_eval_loss": {key: summary([math.nan if x is None else x for x in v]) for key, v in loss.items()},
        "roles": {name: summary([i[name] for i in inter]) for name in inter[0]},
        # the role test: changing the key moves attention more than changing the value (paired)
        "paired_key_minus_value_shift": paired(
            [i["key_swap_attention_tv"] for i in inter],
            [i["value_swap_attention_tv"] for i in inter],
            th["max_value_swap_shift"],
        ),
        # the W_v ablation at one head without W_o: accuracy W_v − V = X, loss V = X − W_v
        "paired_task_accuracy": paired(acc["w_v"], acc["v_is_x"], th["min_accuracy_gap"]),
        "paired_lm_loss": paired(loss["v_is_x"], loss["w_v"], th["min_loss_gain"]),
        "paired_wo_confound_accuracy": paired(acc["v_is_x_wo"], acc["w_v"], th["min_accuracy_gap"]),
        "diverged": {
            key: sum(int(r["task"][key]["diverged"]) for r in per_seed)
            + sum(int(r[key]["diverged"]) for r in runs if key in r)
            for key, _, _ in TASK_ARMS.values()
        },
        # train until the comparison stops moving (issue 20): one lr grid, one rule, both arms
        "tuning": measured.whole["tuning"],
        "lm_steps": int(measured.settings["lm_steps"]),
        "difference_curve": curve,
        "settle": settle(curve, th["min_loss_gain"], int(measured.settings["settle_evals"])),
        "settle_evals": int(measured.settings["settle_evals"]),
        "thresholds": th,
    }


def roles_separated(metrics: Mapping[str, Any]) -> bool:
    """Changing the value leaves attention in place while the answer follows it, and changing the
    key clearly moves attention more than changing the value (paired over seeds)."""
    th = metrics["thresholds"]
    roles = metrics["roles"]
    return bool(
        roles["value_swap_follows_new_value"]["mean"] >= th["min_follow_value"]
        and roles["value_swap_attention_tv"]["mean"] <= th["max_value_swap_shift"]
        and metrics["paired_key_minus_value_shift"]["effect"] == 1
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided by the role test (primary). The W_v ablation (one head, no W_o; task and LM, paired,
    Holm over the two) then says whether V needs its own learned projection: clearly yes supports
    the notes' W_v; shown not to matter (equivalent, or V = X better) makes it partly; unclear is
    left as a limit of this run."""
    part = SPEC.part("roles")
    assert part.primary is not None
    out = VerdictOf(Kind.EXPERIMENT, Msg(part.primary.text, n_seeds=metrics["n_seeds"]))

    comps = {"task": metrics["paired_task_accuracy"], "lm": metrics["paired_lm_loss"]}
    if metrics["n_seeds"] < 2 or metrics["paired_key_minus_value_shift"]["n"] < 2:
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.too_few")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.diverged")
    acc = metrics["task_accuracy"]["w_v"]["mean"]
    chance = metrics["task"]["chance_accuracy"]
    if acc < chance + metrics["thresholds"]["min_accuracy_gap"]:
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.not_learned", acc=acc, chance=chance)
    roles = metrics["roles"]
    role_numbers = Msg(
        "C06.reason.roles",
        value_tv=roles["value_swap_attention_tv"]["mean"],
        follow=roles["value_swap_follows_new_value"]["mean"],
        key_tv=roles["key_swap_attention_tv"]["mean"],
        key_minus_value=describe(metrics["paired_key_minus_value_shift"], "TV"),
    )
    ablation = Msg(
        "C06.reason.ablation",
        task=describe(comps["task"], ""),
        lm=describe(comps["lm"], "nats/token"),
        lrs=lr_text(metrics),
    )
    kv = metrics["paired_key_minus_value_shift"]
    th = metrics["thresholds"]
    contradicted = (
        roles["value_swap_follows_new_value"]["mean"] < th["min_follow_value"]
        or roles["value_swap_attention_tv"]["mean"] > th["max_value_swap_shift"]
        or kv["effect"] == -1
        or kv["equivalent"]
    )
    if not contradicted and not roles_separated(metrics):
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.key_unclear", roles=role_numbers)
    if contradicted:
        out.parts.append(roles_part(metrics, role_numbers, Label.NOT_SUPPORTED))
        return out.branch(Label.NOT_SUPPORTED, "C06.verdict.not_separated", roles=role_numbers)
    pvals = {
        k: (c["test"]["p"] if c.get("test") and c["test"]["p"] is not None else math.nan)
        for k, c in comps.items()
    }
    rejected = holm(pvals)
    settled = bool(metrics["settle"]["settled"])
    # the LM comparison counts only once its paired difference stopped moving (issue 20)
    gain = {
        k: rejected[k] and c["test"]["mean_diff"] > c["min_effect"] and (settled or k != "lm")
        for k, c in comps.items()
    }
    # "adds nothing" is an equivalence test (TOST: the 90% CI inside ±min_effect), never a failed
    # difference test. A task at its ceiling (both arms equal on every seed, zero spread) cannot
    # tell the arms apart: a limit of the task, so there the LM's TOST decides alone. V = X clearly
    # *better* is no evidence either: V = X is W_v = I, the special case both arms start from.
    no_matter = settled and tost(comps["lm"]) and (at_ceiling(metrics) or tost(comps["task"]))
    out.parts.extend(judged_parts(metrics, role_numbers, gain, no_matter))
    if any(gain.values()):
        where = [Msg(f"C06.reason.part_{k}") for k, g in gain.items() if g]
        return out.branch(
            Label.SUPPORTED, "C06.verdict.w_v_helps", roles=role_numbers, where=where, ablation=ablation
        )
    if no_matter:
        return out.branch(Label.PARTLY, "C06.verdict.w_v_not_needed", roles=role_numbers, ablation=ablation)
    out.limited.append(ablation_limit(metrics))
    return out.branch(Label.SUPPORTED, "C06.verdict.w_v_unclear", roles=role_numbers, ablation=ablation)
