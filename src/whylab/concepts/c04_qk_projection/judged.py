"""C04's parts (VALIDITY 7-9): the symmetric relation ("similar tokens"), the directed relation and
the LM loss, each with this run's status, label and power, and the literature's label where a
paper speaks (claim.yaml). Also the per-seed mechanism: how each model singles out the token it
looks for. Pure: numbers in."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts._bench_stats import describe, fmt, holm_of, part_status
from whylab.concepts.c04_qk_projection import CLAIM_ID
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Power, published_numbers, run_label
from whylab.verdict import Kind, Label

SPEC = load_spec(CLAIM_ID)
STATUS = {"confirmed": Label.SUPPORTED, "contradicted": Label.NOT_SUPPORTED, "limited": Label.INCONCLUSIVE}
TASK_UNIT = "share of held-out answers"
# part id -> (the task's key in the metrics, its paired answer-probability comparison)
TASK_PARTS = {
    "similar": ("symmetric", "paired_symmetric_probability"),
    "directed": ("task", "paired_task_probability"),
}
COMPARISONS = {**{p: c for p, (_, c) in TASK_PARTS.items()}, "lm": "paired_lm_loss"}


def _sd(c: Mapping[str, Any]) -> float:
    t = c.get("test")
    return float(t["sd_diff"]) if t and t.get("sd_diff") is not None else math.nan


def solved(metrics: Mapping[str, Any], task: str) -> bool:
    """The learned model solves the task: mean accuracy at least ``min_accuracy_gap`` above chance
    (otherwise the task cannot tell the variants apart)."""
    acc = metrics[f"{task}_accuracy"]["learned"]["mean"]
    gap = metrics["thresholds"]["min_accuracy_gap"]
    return acc is not None and acc >= metrics["task"]["chance_accuracy"] + gap


def statuses(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Each part's status ('confirmed', 'contradicted', 'limited'), Holm over the three comparisons;
    a task the learned model did not solve is 'limited'."""
    comps = {p: metrics[c] for p, c in COMPARISONS.items()}
    rejected = holm_of(comps)
    out = {p: part_status(c, rejected[p]) for p, c in comps.items()}
    for part, (task, _) in TASK_PARTS.items():
        if not solved(metrics, task):
            out[part] = "limited"
    return out


def _lm_field() -> FieldAnswer | None:
    """Vaswani et al.: the recorded statement (value ``stated``) supports the part."""
    papers = published_numbers(SPEC.part("lm"))
    if not papers:
        return None
    paper = papers[0]
    label = Label.SUPPORTED if str(paper.value) == "stated" else Label.INCONCLUSIVE
    return FieldAnswer(
        label, Msg("C04.part.lm.field", source=paper.source.split()[0], where=paper.where), papers
    )


def _steps_text(values: Sequence[int | None]) -> str:
    return ", ".join("–" if v is None else str(v) for v in values)


def speed(metrics: Mapping[str, Any], task: str) -> Msg:
    """The updates each model needed on ``task``, per seed (– never)."""
    steps = metrics[f"{task}_steps_to_learn"]
    below = metrics["learned_below"]
    return Msg(
        "C04.part.speed",
        loss=below["loss"],
        window=below["window"],
        learned=_steps_text(steps["learned"]),
        plain=_steps_text(steps["no_qk"]),
    )


def _task_part(part: str, metrics: Mapping[str, Any], status: str) -> PartVerdict:
    task, comp_key = TASK_PARTS[part]
    comp = metrics[comp_key]
    th = metrics["thresholds"]
    power = Power.paired(_sd(comp), int(comp["n"]), TASK_UNIT, predicted=th["min_accuracy_gap"])
    why = status if solved(metrics, task) else "not_learned"
    reason = Msg(
        f"C04.part.{part}.{why}",
        delta=describe(comp, ""),
        acc_learned=fmt(metrics[f"{task}_accuracy"]["learned"], notation="f"),
        acc_plain=fmt(metrics[f"{task}_accuracy"]["no_qk"], notation="f"),
        chance=metrics["task"]["chance_accuracy"],
        margin=th["min_accuracy_gap"],
        detectable=power.detectable,
        speed=speed(metrics, task),
    )
    words = SPEC.part(part).words
    return PartVerdict(part, words, Kind.EXPERIMENT, run_label(STATUS[status], power), reason, power, None)


def _lm_part(metrics: Mapping[str, Any], status: str) -> PartVerdict:
    comp = metrics["paired_lm_loss"]
    power = Power.paired(
        _sd(comp), int(comp["n"]), "nats/token", predicted=metrics["thresholds"]["min_loss_gain"]
    )
    reason = Msg("C04.part.lm.run", lm=describe(comp, "nats/token"), detectable=power.detectable)
    label = run_label(STATUS[status], power)
    return PartVerdict("lm", SPEC.part("lm").words, Kind.EXPERIMENT, label, reason, power, _lm_field())


def judged_parts(metrics: Mapping[str, Any], status: Mapping[str, str]) -> list[PartVerdict]:
    return [
        _task_part("similar", metrics, status["similar"]),
        _task_part("directed", metrics, status["directed"]),
        _lm_part(metrics, status["lm"]),
    ]


# --------------------------------------------------------------------------- the mechanism per seed
def mechanism_group(most: float, least: float, share: float) -> str:
    """How a model singles out the token it looks for: 'toward' (that token gets the most context
    attention in at least ``share`` of the sequences), 'away' (the least: the answer is where the
    attention is missing) or 'mixed'."""
    if most >= share:
        return "toward"
    return "away" if least >= share else "mixed"


def mechanism_groups(
    seeds: Sequence[int], most: Sequence[float], least: Sequence[float], share: float
) -> dict[str, list[int]]:
    """The seeds of each group (:func:`mechanism_group`)."""
    out: dict[str, list[int]] = {"toward": [], "away": [], "mixed": []}
    for seed, m, lo in zip(seeds, most, least, strict=True):
        out[mechanism_group(m, lo, share)].append(int(seed))
    return out


def mechanism_text(metrics: Mapping[str, Any], task: str, key: str) -> Msg:
    """One model's mechanism on one task, per seed: the seeds that attend to the token the query
    looks for, those that leave it out (least attention) and the rest, with the attention each
    seed gives that token and, for the seeds that leave it out, how often it gets the least."""
    mech = metrics["mechanism"][task][key]
    index = {s: i for i, s in enumerate(mech["seeds"])}
    groups = []
    for group, seeds in mech["groups"].items():
        if not seeds:
            continue
        rows = [index[s] for s in seeds]
        groups.append(
            Msg(
                f"C04.mechanism.{group}",
                seeds=", ".join(str(s) for s in seeds),
                att=", ".join(f"{mech['partner_attention'][i]:.2f}" for i in rows),
                least=min(mech["partner_least"][i] for i in rows),
                most=min(mech["partner_most"][i] for i in rows),
            )
        )
    self_att = mech["self_attention"]
    return Msg(f"C04.mechanism.{task}.{key}", groups=groups, self_att=sum(self_att) / max(1, len(self_att)))
