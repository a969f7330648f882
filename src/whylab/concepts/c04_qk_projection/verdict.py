"""C04's decision: from the per-seed measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The settings the decision reads
(``min_accuracy_gap``, ``min_loss_gain``) are claim.yaml's ``decision_settings``; its other
thresholds are in ``claim.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from whylab.concepts._bench_stats import describe, fmt, holm_of, label_of, paired, part_status, summary
from whylab.concepts.c04_qk_projection import CLAIM_ID, KEYS
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.parts import PartVerdict, Power, run_label
from whylab.verdict import Kind, Label, Verdict, VerdictOf

SPEC = load_spec(CLAIM_ID)
PART_NAMES = {"task": "C04.reason.part_task", "lm": "C04.reason.part_lm"}  # claim.yaml's part ids
BRANCHES = {
    Label.SUPPORTED: "supported",
    Label.PARTLY: "partly",
    Label.NOT_SUPPORTED: "not_supported",
    Label.INCONCLUSIVE: "inconclusive",
}
STATUS = {"confirmed": Label.SUPPORTED, "contradicted": Label.NOT_SUPPORTED, "limited": Label.INCONCLUSIVE}
# the task section's shape, copied into the metrics
TASK_SHAPE = ("n_entities", "context_len", "n_layers", "n_heads", "ffn")


def uniform_self_share(seq_len: int) -> float:
    """What a causal token would give itself under uniform attention: mean of 1/(t+1), t ≥ 1."""
    return float(np.mean([1.0 / (t + 1) for t in range(1, seq_len)]))


def task_values(
    per_seed: Sequence[Mapping[str, Any]], key: str, measure: str, layer: int | None = 0
) -> list[float]:
    """A task measure of variant ``key`` per seed: accuracy (``layer`` None) or a per-layer share."""
    vals = [r["task"][key][measure] for r in per_seed]
    return [float(v[layer] if layer is not None else v) for v in vals]


def _task_metrics(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keys = KEYS.values()
    return {
        "task_accuracy": {k: summary(task_values(per_seed, k, "accuracy", None)) for k in keys},
        "task_partner_attention_layer1": {
            k: summary(task_values(per_seed, k, "partner_attention")) for k in keys
        },
        "task_reverse_attention_layer1": {
            k: summary(task_values(per_seed, k, "reverse_attention")) for k in keys
        },
        "task_self_attention_layer1": {k: summary(task_values(per_seed, k, "self_attention")) for k in keys},
    }


def summarize(measured: Measured) -> dict[str, Any]:
    per_seed, st = measured.per_seed, measured.settings
    task_cfg = st["task"]
    keys = KEYS.values()
    acc = {k: task_values(per_seed, k, "accuracy", None) for k in keys}
    lm_loss = {k: [r["lm"][k]["eval_loss"] for r in per_seed] for k in keys}
    th = {"min_accuracy_gap": float(st["min_accuracy_gap"]), "min_loss_gain": float(st["min_loss_gain"])}
    return {
        "n_seeds": len(per_seed),
        "task": {**{k: task_cfg[k] for k in TASK_SHAPE}, "chance_accuracy": 1.0 / task_cfg["context_len"]},
        **_task_metrics(per_seed),
        "lm_eval_loss": {
            k: summary([math.nan if v is None else v for v in vals]) for k, vals in lm_loss.items()
        },
        "lm_self_attention_layer1": {
            k: summary([r["lm"][k]["self_share"][0] for r in per_seed]) for k in keys
        },
        "lm_self_attention_uniform": uniform_self_share(per_seed[0]["lm"]["learned"]["seq_len"]),
        # primary comparisons, paired by seed: accuracy learned − plain; loss plain − learned
        "paired_task_accuracy": paired(acc["learned"], acc["no_qk"], th["min_accuracy_gap"]),
        "paired_lm_loss": paired(lm_loss["no_qk"], lm_loss["learned"], th["min_loss_gain"]),
        "diverged": {
            k: sum(int(r["task"][k]["diverged"]) + int(r["lm"][k]["diverged"]) for r in per_seed)
            for k in keys
        },
        "thresholds": th,
    }


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Two parts, paired over seeds and Holm-corrected together: relation-task accuracy and LM loss,
    each 'confirmed' (learned W_q, W_k clearly better past its floor), 'contradicted' (Q = K = X
    clearly better, or no difference that matters) or 'limited' (neither: never lowers the label).
    All judged parts confirmed: supported; a mix: partly; all contradicted: not supported.

    The task counts only if the learned model solves it (accuracy at least ``min_accuracy_gap``
    above chance); otherwise it cannot tell the variants apart and the verdict is inconclusive.
    """
    primary = SPEC.part("task").primary
    assert primary is not None
    th = metrics["thresholds"]
    out = VerdictOf(
        Kind.EXPERIMENT,
        Msg(
            primary.text,
            n_seeds=metrics["n_seeds"],
            min_accuracy_points=100 * th["min_accuracy_gap"],
            min_loss_gain=th["min_loss_gain"],
        ),
    )
    comps = {"task": metrics["paired_task_accuracy"], "lm": metrics["paired_lm_loss"]}
    min_seeds = SPEC.threshold("min_seeds")
    if metrics["n_seeds"] < min_seeds or any(c["n"] < min_seeds for c in comps.values()):
        return out.branch(Label.INCONCLUSIVE, "C04.verdict.too_few")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C04.verdict.diverged")
    # the directed task is built so that Q = K = X cannot win it (symmetric scores): it is shown,
    # never decides (issue 20); the LM loss is the comparison either arm could win
    decide = {"lm": comps["lm"]}
    rejected = holm_of(decide)
    status = {k: part_status(c, rejected[k]) for k, c in decide.items()}
    label = Label(label_of(list(status.values())))
    out.limited.extend(
        Msg("C04.limited.part", part=Msg(PART_NAMES[k])) for k, st in status.items() if st == "limited"
    )
    lm_test = comps["lm"].get("test") or {}
    power = Power.paired(
        lm_test.get("sd_diff") or math.nan, comps["lm"]["n"], "nats/token", predicted=th["min_loss_gain"]
    )
    partner = [v for v in metrics["task_partner_attention_layer1"]["learned"]["values"] if v is not None]
    out.parts.append(
        PartVerdict(
            "lm",
            SPEC.part("lm").words,
            Kind.EXPERIMENT,
            run_label(STATUS[status["lm"]], power),
            Msg("C04.part.lm", lm=describe(comps["lm"], "nats/token"), detectable=power.detectable),
            power,
            None,
        )
    )
    numbers = Msg(
        "C04.reason.numbers",
        acc_learned=fmt(metrics["task_accuracy"]["learned"], notation="f"),
        acc_plain=fmt(metrics["task_accuracy"]["no_qk"], notation="f"),
        task=describe(comps["task"], ""),
        self_learned=metrics["task_self_attention_layer1"]["learned"]["mean"],
        self_plain=metrics["task_self_attention_layer1"]["no_qk"]["mean"],
        partner=", ".join(f"{v:.3f}" for v in partner),
        toward=sum(v > 0.5 for v in partner),
        away=sum(v <= 0.5 for v in partner),
        lm=describe(comps["lm"], "nats/token"),
    )
    won = [Msg(PART_NAMES[k]) for k, st in status.items() if st == "confirmed"]
    lost = [Msg(PART_NAMES[k]) for k, st in status.items() if st == "contradicted"]
    return out.branch(label, f"C04.verdict.{BRANCHES[label]}", won=won, lost=lost, numbers=numbers)
