"""C06's parts (VALIDITY 7-9): the roles (Q/K pick where, V what) and the value projection W_v,
each with this run's label and power and the literature's label from ``claim.yaml``'s numbers.
Pure: numbers in."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from whylab.concepts._bench_stats import describe
from whylab.concepts._settle_text import still_moving
from whylab.files import parse_yaml
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Power, Published, run_label
from whylab.verdict import Kind, Label, t_critical


@cache
def _raw_parts() -> dict[str, dict[str, Any]]:
    text = files("whylab.concepts.c06_value_projection").joinpath("claim.yaml").read_text(encoding="utf-8")
    return {p["id"]: p for p in parse_yaml(text)["parts"]}


def published(part_id: str) -> tuple[Published, ...]:
    return tuple(Published.from_dict(d) for d in _raw_parts()[part_id].get("literature") or ())


def tost_interval(c: Mapping[str, Any]) -> tuple[float, float] | None:
    """The 90% CI of a paired mean difference (TOST at alpha = 0.05 each side); None without a
    test or with zero spread (a ceiling: an interval of width zero is a limit, not confidence)."""
    t = c.get("test")
    if not t or not t.get("sd_diff") or t["n"] < 2:
        return None
    half = t_critical(int(t["n"]) - 1, 0.10) * float(t["sd_diff"]) / math.sqrt(int(t["n"]))
    return float(t["mean_diff"]) - half, float(t["mean_diff"]) + half


def tost(c: Mapping[str, Any]) -> bool:
    """Equivalent within ±min_effect: the 90% CI of the difference lies inside the margin."""
    ci = tost_interval(c)
    return ci is not None and -c["min_effect"] < ci[0] and ci[1] < c["min_effect"]


def _sd(c: Mapping[str, Any]) -> float:
    t = c.get("test")
    return float(t["sd_diff"]) if t and t.get("sd_diff") is not None else math.nan


def field_of(part_id: str) -> FieldAnswer:
    """Vaswani et al.: the recorded value 1 (each head projects its values with its own learned
    matrix; weights from queries and keys) supports the part; 0 would not."""
    (paper,) = published(part_id)
    label = Label.SUPPORTED if float(paper.value) > 0 else Label.NOT_SUPPORTED
    return FieldAnswer(label, Msg(f"C06.part.{part_id}.field", value=float(paper.value)), (paper,))


def lr_text(metrics: Mapping[str, Any]) -> Msg:
    """The LM arms' learning rates (one grid, one rule, chosen on held-out windows) and length."""
    tuning = metrics["tuning"]
    rate = {k: math.nan if tuning[k]["lr"] is None else float(tuning[k]["lr"]) for k in ("w_v", "v_is_x")}
    return Msg("C06.reason.lrs", w_v=rate["w_v"], v_is_x=rate["v_is_x"], steps=metrics["lm_steps"])


def moving(metrics: Mapping[str, Any]) -> Msg | None:
    """Why the LM comparison is not judged yet (its difference still moving), or None."""
    st = metrics["settle"]
    if st["settled"]:
        return None
    margin = float(metrics["thresholds"]["min_loss_gain"])
    return still_moving(
        st, metrics["settle_evals"], margin, "C06.limited.too_few_evals", "C06.limited.w_v_moving"
    )


def ablation_limit(metrics: Mapping[str, Any]) -> Msg:
    """The limit of an ablation that decided nothing: still moving, V = X clearly lower (an
    optimisation effect, since V = X is W_v = I), or not clear of the seed noise."""
    still = moving(metrics)
    if still is not None:
        return still
    lm = metrics["paired_lm_loss"]
    t = lm.get("test") or {}
    if t and lm["effect"] == -1:
        return Msg("C06.limited.w_v_lower", delta=-float(t["mean_diff"]))
    power = Power.paired(_sd(lm), int(lm["n"]), "nats/token", predicted=lm["min_effect"])
    spread = {k: metrics["lm_eval_loss"][k]["std"] for k in ("w_v", "v_is_x")}
    return Msg(
        "C06.limited.w_v",
        sd=_sd(lm),
        detectable=power.detectable,
        margin=lm["min_effect"],
        w_v_sd=math.nan if spread["w_v"] is None else float(spread["w_v"]),
        v_is_x_sd=math.nan if spread["v_is_x"] is None else float(spread["v_is_x"]),
    )


def roles_part(metrics: Mapping[str, Any], roles: Msg, decided: Label) -> PartVerdict:
    kv = metrics["paired_key_minus_value_shift"]
    th = metrics["thresholds"]
    power = Power.paired(_sd(kv), int(kv["n"]), "TV", predicted=th["max_value_swap_shift"])
    reason = Msg("C06.part.roles.run", roles=roles, detectable=power.detectable)
    words = _raw_parts()["roles"]["words"]
    return PartVerdict(
        "roles", words, Kind.EXPERIMENT, run_label(decided, power), reason, power, field_of("roles")
    )


def judged_parts(
    metrics: Mapping[str, Any], roles: Msg, gain: Mapping[str, bool], no_matter: bool
) -> list[PartVerdict]:
    """Both parts once the roles are separated: W_v clearly helps -> supported; the LM comparison
    settled and equivalent by TOST, the task equivalent too or at its ceiling -> partly (V need not
    pass through its own W_v); otherwise limited."""
    lm, task = metrics["paired_lm_loss"], metrics["paired_task_accuracy"]
    power = Power.paired(_sd(lm), int(lm["n"]), "nats/token", predicted=lm["min_effect"])
    decided = Label.SUPPORTED if any(gain.values()) else Label.PARTLY if no_matter else Label.INCONCLUSIVE
    ci = tost_interval(lm)
    t = lm.get("test") or {}
    notes = []
    st = metrics["settle"]
    if not st["settled"] and st["span"] is not None:
        notes.append(
            Msg(
                "C06.part.w_v.moving",
                span=float(st["span"]),
                from_step=st["from_step"],
                to_step=st["to_step"],
                margin=float(lm["min_effect"]),
            )
        )
    if _sd(task) == 0.0:
        notes.append(Msg("C06.part.w_v.ceiling", acc=metrics["task_accuracy"]["w_v"]["mean"]))
    if t and not any(gain.values()) and lm["effect"] == -1:
        notes.append(Msg("C06.part.w_v.optimisation", delta=-float(t["mean_diff"])))
    reason = Msg(
        "C06.part.w_v.run",
        lm=describe(lm, "nats/token"),
        low=math.nan if ci is None else ci[0],
        high=math.nan if ci is None else ci[1],
        margin=lm["min_effect"],
        detectable=power.detectable,
        lrs=lr_text(metrics),
        notes=notes,
    )
    words = _raw_parts()["w_v"]["words"]
    # equivalence shown by TOST is its own power check (the 90% CI inside the margin: VALIDITY 8),
    # so a difference test's detectable effect above the margin does not make it a limit
    label = decided if no_matter else run_label(decided, power)
    w_v = PartVerdict("w_v", words, Kind.EXPERIMENT, label, reason, power, field_of("w_v"))
    return [roles_part(metrics, roles, Label.SUPPORTED), w_v]
