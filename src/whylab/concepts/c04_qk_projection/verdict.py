"""C04's decision: from the per-seed measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The parts are judged in
``judged.py``; the settings the decision reads (``min_accuracy_gap``, ``min_loss_gain``) are
claim.yaml's ``decision_settings``; its other thresholds are in ``claim.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from whylab.concepts._bench_stats import fmt, paired, summary
from whylab.concepts.c04_qk_projection import KEYS, LEARN_LOSS, LEARN_WINDOW
from whylab.concepts.c04_qk_projection.judged import (
    COMPARISONS,
    SPEC,
    judged_parts,
    mechanism_groups,
    mechanism_text,
    speed,
    statuses,
)
from whylab.concepts.context import Measured
from whylab.messages import Msg
from whylab.parts import combine
from whylab.verdict import Kind, Label, Verdict, VerdictOf

PART_NAMES = {p: f"C04.reason.part_{p}" for p in COMPARISONS}  # claim.yaml's part ids
BRANCHES = {
    Label.SUPPORTED: "supported",
    Label.PARTLY: "partly",
    Label.NOT_SUPPORTED: "not_supported",
    Label.INCONCLUSIVE: "inconclusive",
}
# the task section's shape, copied into the metrics
TASK_SHAPE = ("n_entities", "context_len", "n_layers", "n_heads", "ffn")
TASKS = ("task", "symmetric")  # the measurements' keys: the directed task, the symmetric task
# the mechanisms shown in the reason, and in the takeaway: (task, variant key)
MECHANISMS = (("task", "learned"), ("task", "no_qk"), ("symmetric", "learned"), ("symmetric", "no_qk"))
TAKEAWAY_MECHANISMS = (("task", "learned"), ("symmetric", "learned"), ("symmetric", "no_qk"))


def uniform_self_share(seq_len: int) -> float:
    """What a causal token would give itself under uniform attention: mean of 1/(t+1), t ≥ 1."""
    return float(np.mean([1.0 / (t + 1) for t in range(1, seq_len)]))


def task_values(
    per_seed: Sequence[Mapping[str, Any]], key: str, measure: str, layer: int | None = 0, task: str = "task"
) -> list[float]:
    """A measure of variant ``key`` on ``task`` (the directed ``task`` or the ``symmetric`` one)
    per seed: a number (``layer`` None) or a per-layer share."""
    vals = [r[task][key][measure] for r in per_seed]
    return [float(v[layer] if layer is not None else v) for v in vals]


def _task_metrics(per_seed: Sequence[Mapping[str, Any]], task: str) -> dict[str, Any]:
    keys = KEYS.values()

    def per_key(measure: str, layer: int | None) -> dict[str, Any]:
        return {k: summary(task_values(per_seed, k, measure, layer, task)) for k in keys}

    out = {
        f"{task}_accuracy": per_key("accuracy", None),
        f"{task}_answer_probability": per_key("answer_probability", None),
        f"{task}_partner_attention_layer1": per_key("partner_attention", 0),
        f"{task}_self_attention_layer1": per_key("self_attention", 0),
    }
    if task == "task":
        out["task_reverse_attention_layer1"] = per_key("reverse_attention", 0)
    out[f"{task}_steps_to_learn"] = {
        k: [r[task][k].get("steps_to_learn") for r in per_seed] for k in keys
    }  # per seed; None: never
    return out


def _mechanism(per_seed: Sequence[Mapping[str, Any]], task: str, key: str, share: float) -> dict[str, Any]:
    """Per seed, how variant ``key`` singles out the token it looks for on ``task``."""
    seeds = [int(r["seed"]) for r in per_seed]
    most = task_values(per_seed, key, "partner_most", None, task)
    least = task_values(per_seed, key, "partner_least", None, task)
    return {
        "seeds": seeds,
        "partner_attention": task_values(per_seed, key, "partner_attention", 0, task),
        "self_attention": task_values(per_seed, key, "self_attention", 0, task),
        "partner_most": most,
        "partner_least": least,
        "groups": mechanism_groups(seeds, most, least, share),
    }


def summarize(measured: Measured) -> dict[str, Any]:
    per_seed, st = measured.per_seed, measured.settings
    task_cfg = st["task"]
    keys = KEYS.values()
    lm_loss = {k: [r["lm"][k]["eval_loss"] for r in per_seed] for k in keys}
    th = {"min_accuracy_gap": float(st["min_accuracy_gap"]), "min_loss_gain": float(st["min_loss_gain"])}
    share = float(SPEC.threshold("mechanism_share"))

    def pair(task: str, measure: str) -> dict[str, Any]:
        learned, plain = (task_values(per_seed, k, measure, None, task) for k in ("learned", "no_qk"))
        return paired(learned, plain, th["min_accuracy_gap"])

    return {
        "n_seeds": len(per_seed),
        "task": {**{k: task_cfg[k] for k in TASK_SHAPE}, "chance_accuracy": 1.0 / task_cfg["context_len"]},
        **_task_metrics(per_seed, "task"),
        **_task_metrics(per_seed, "symmetric"),
        "mechanism": {t: {k: _mechanism(per_seed, t, k, share) for k in keys} for t in TASKS},
        "lm_eval_loss": {
            k: summary([math.nan if v is None else v for v in vals]) for k, vals in lm_loss.items()
        },
        "lm_self_attention_layer1": {
            k: summary([r["lm"][k]["self_share"][0] for r in per_seed]) for k in keys
        },
        "lm_self_attention_uniform": uniform_self_share(per_seed[0]["lm"]["learned"]["seq_len"]),
        # comparisons, paired by seed: learned − plain on the tasks; plain − learned on the loss
        "paired_task_accuracy": pair("task", "accuracy"),
        "paired_symmetric_accuracy": pair("symmetric", "accuracy"),
        "paired_task_probability": pair("task", "answer_probability"),
        "paired_symmetric_probability": pair("symmetric", "answer_probability"),
        "paired_lm_loss": paired(lm_loss["no_qk"], lm_loss["learned"], th["min_loss_gain"]),
        "diverged": {
            k: sum(int(r[t][k]["diverged"]) for t in TASKS for r in per_seed)
            + sum(int(r["lm"][k]["diverged"]) for r in per_seed)
            for k in keys
        },
        "thresholds": th,
        "learned_below": {"loss": LEARN_LOSS, "window": LEARN_WINDOW},
    }


def _branch(label: Label, status: Mapping[str, str]) -> str:
    """The expected split gets its own texts: Q = K = X finds the partner (similar: contradicted)
    while the learned projections win the directed relation."""
    if label is Label.PARTLY and status["similar"] == "contradicted" and status["directed"] == "confirmed":
        return "C04.verdict.partly_directed"
    return f"C04.verdict.{BRANCHES[label]}"


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Three parts, paired over seeds and Holm-corrected together (``judged.py``): the symmetric
    task ("similar tokens"), the directed task and the LM loss, each 'confirmed' (learned W_q, W_k
    clearly better past its floor), 'contradicted' (Q = K = X clearly better, or a 95% CI inside
    ±floor: no difference that matters) or 'limited' (neither, or the learned model did not solve
    the task: never lowers the label). The parts' labels (with their power) combine: all supported:
    supported; a mix: partly; all not supported: not supported."""
    th = metrics["thresholds"]
    out = VerdictOf(
        Kind.EXPERIMENT,
        Msg(
            "C04.primary",
            n_seeds=metrics["n_seeds"],
            min_accuracy_points=100 * th["min_accuracy_gap"],
            min_loss_gain=th["min_loss_gain"],
        ),
    )
    min_seeds = SPEC.threshold("min_seeds")
    if metrics["n_seeds"] < min_seeds or any(metrics[c]["n"] < min_seeds for c in COMPARISONS.values()):
        return out.branch(Label.INCONCLUSIVE, "C04.verdict.too_few")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C04.verdict.diverged")
    status = statuses(metrics)
    parts = judged_parts(metrics, status)
    out.parts.extend(parts)
    out.limited.extend(
        Msg("C04.limited.part", part=Msg(PART_NAMES[k])) for k, st in status.items() if st == "limited"
    )
    label = combine([p.run for p in parts])
    numbers = Msg(
        "C04.reason.numbers",
        parts=[Msg("C04.reason.part_line", part=Msg(PART_NAMES[p.id]), reason=p.reason) for p in parts],
        mechanism=[mechanism_text(metrics, t, k) for t, k in MECHANISMS],
        self_learned=metrics["task_self_attention_layer1"]["learned"]["mean"],
        self_plain=metrics["task_self_attention_layer1"]["no_qk"]["mean"],
    )
    won = [Msg(PART_NAMES[p.id]) for p in parts if p.run is Label.SUPPORTED]
    lost = [Msg(PART_NAMES[p.id]) for p in parts if p.run is Label.NOT_SUPPORTED]
    return out.branch(
        label,
        _branch(label, status),
        won=won,
        lost=lost,
        numbers=numbers,
        similar=fmt(metrics["symmetric_accuracy"]["no_qk"], notation="f"),
        directed=fmt(metrics["task_accuracy"]["no_qk"], notation="f"),
        similar_speed=speed(metrics, "symmetric"),
        mechanism=[mechanism_text(metrics, t, k) for t, k in TAKEAWAY_MECHANISMS],
    )
