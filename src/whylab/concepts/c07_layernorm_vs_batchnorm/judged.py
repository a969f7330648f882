"""C07's parts (VALIDITY 7-9): the reason (BatchNorm averages over PAD), the preference (NLP
prefers LayerNorm), and this run's own finding that BatchNorm in training mode lets later tokens
move earlier tokens' logits (not in the notes; a reason to prefer LayerNorm the learner should
see). Each part has this run's label with its power and, where ``claim.yaml`` records published
numbers, the literature's label computed from them. Pure: numbers in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from whylab.concepts import _bench_stats as stats
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, Power, published_numbers, run_label
from whylab.verdict import Kind, Label, Spread

SPEC = load_spec("C07")
STATUS = {"confirmed": Label.SUPPORTED, "contradicted": Label.NOT_SUPPORTED, "limited": Label.INCONCLUSIVE}


def _sd(p: Mapping[str, Any]) -> float:
    t = p.get("test")
    return float(t["sd_diff"]) if t and t.get("sd_diff") is not None else math.nan


def power_text(power: Power | None) -> Msg:
    """What the part's run could detect, in words (zero spread and too few seeds are limits)."""
    if power is None:
        return Msg("C07.power.measured")
    if power.zero_spread:
        return Msg("C07.power.zero_spread", n=power.n)
    if not math.isfinite(power.detectable):
        return Msg("C07.power.too_few", n=power.n)
    unit = Msg("C07.power.unit.nats" if power.unit == "nats/token" else "C07.power.unit.relative")
    return Msg("C07.power.detectable", detectable=power.detectable, unit=unit, n=power.n)


def field_of(part_id: str) -> FieldAnswer | None:
    """Shen et al. 2020, from the recorded values: for the preference, the sign of BatchNorm's
    quality minus LayerNorm's in NLP transformers (-1: BatchNorm worse -> supported, +1 -> not
    supported); for the reason, whether the paper names PAD as the cause (1 -> supported; 0: it
    names the batch statistics' fluctuation instead, which neither confirms nor refutes PAD ->
    inconclusive)."""
    papers = published_numbers(SPEC.part(part_id))
    if not papers:
        return None
    (paper,) = papers
    value = float(paper.value)
    if part_id == "preference":
        label = Label.SUPPORTED if value < 0 else Label.NOT_SUPPORTED if value > 0 else Label.INCONCLUSIVE
    else:
        label = Label.SUPPORTED if value > 0 else Label.INCONCLUSIVE
    return FieldAnswer(label, Msg(f"C07.part.{part_id}.field", value=value), (paper,))


def early_text(metrics: Mapping[str, Any]) -> Msg:
    """What the evaluation curve did: the preference's difference at the first evaluation, where
    its sign last changed, and at the end (so "BatchNorm starts faster" is said only when true)."""
    early = metrics["early"]["preference"]
    curve = metrics["difference_curves"]["preference"]
    if early["step"] is None or not curve["mean"]:
        return empty()
    first, end = float(early["value"]), float(curve["mean"][-1])
    crossed = early["crossed_at"]
    return Msg(
        "C07.reason.trend",
        first=first,
        first_step=early["step"],
        end=end,
        end_step=curve["steps"][-1],
        start=Msg("C07.reason.start_layer" if first > 0 else "C07.reason.start_batch"),
        crossed=empty() if crossed is None else Msg("C07.reason.crossed", step=crossed),
    )


def fall_text(metrics: Mapping[str, Any]) -> Msg:
    """How far each arm's own loss still fell over the stability window: a settled difference
    between two curves that both still fall is a comparison at this length, not at a plateau."""
    fall = metrics.get("window_fall") or {}
    st = metrics["settle"]["preference"]
    if fall.get("layer") is None or fall.get("masked_batch") is None or st["from_step"] is None:
        return empty()
    return Msg(
        "C07.reason.window_fall",
        layer=float(fall["layer"]),
        masked=float(fall["masked_batch"]),
        from_step=st["from_step"],
        to_step=st["to_step"],
    )


def leak_text(metrics: Mapping[str, Any]) -> Msg:
    """Is masked BatchNorm's loss an artefact of its batch statistics seeing later tokens? The
    losses compared are in eval mode (running statistics: no other token enters), and the same
    model's loss with batch statistics says which way the leak pushes."""
    gap = metrics["norms"]["masked_batch"]["mode_gap"]["mean"]
    naive_gap = metrics["norms"]["batch"]["mode_gap"]["mean"]
    if gap is None or naive_gap is None:
        return empty()
    helps = float(gap) > 0 or float(naive_gap) > 0  # batch statistics give the lower loss
    return Msg(
        "C07.reason.leak_flatters" if helps else "C07.reason.leak_not_cause",
        gap=-float(gap),
        naive_gap=-float(naive_gap),
    )


def _loss_part(
    part_id: str, status: str, comparison: Mapping[str, Any], mechanism: float | None, why: Msg
) -> PartVerdict:
    """A part decided by a paired loss comparison (``mechanism``: the reason contradicted by the
    PAD probe itself, a measurement rather than a loss difference, so no loss power applies: the
    change of naive BatchNorm's logits under extra PAD)."""
    power = (
        None
        if mechanism is not None
        else Power.paired(
            _sd(comparison), int(comparison["n"]), "nats/token", predicted=float(comparison["min_effect"])
        )
    )
    reason = Msg(
        f"C07.part.{part_id}.run.{status}" if mechanism is None else "C07.part.reason.run.no_pad_effect",
        delta=stats.describe(comparison, "nats/token"),
        power=power_text(power),
        margin=float(comparison["min_effect"]),
        bn_pad=math.nan if mechanism is None else mechanism,
        why=why,
    )
    part = SPEC.part(part_id)
    label = run_label(STATUS[status], power)
    return PartVerdict(part_id, part.words, Kind.EXPERIMENT, label, reason, power, field_of(part_id))


def leak_part(metrics: Mapping[str, Any]) -> PartVerdict:
    """BatchNorm's statistics in training mode include later tokens: changing them moves earlier
    tokens' logits (relative change past ``dependence_threshold``) while LayerNorm stays within
    ``invariance_tolerance`` -> supported; BatchNorm below the threshold -> not supported."""
    bn = metrics["norms"]["batch"]["future_leak"]
    ln = metrics["norms"]["layer"]["future_leak"]
    threshold = float(metrics["dependence_threshold"])
    diffs = [
        float(b) - float(a)
        for b, a in zip(bn.get("values") or [], ln.get("values") or [], strict=False)
        if b is not None and a is not None
    ]
    sd = Spread.of(diffs).std if len(diffs) >= 2 else math.nan
    power = Power.paired(sd, len(diffs), "relative change", predicted=threshold)
    bn_leak, ln_leak = float(bn["mean"]), float(ln["mean"])
    if ln_leak > float(metrics["invariance_tolerance"]):
        decided, key = Label.INCONCLUSIVE, "unclear"
    elif bn_leak > threshold:
        decided, key = Label.SUPPORTED, "leaks"
    else:
        decided, key = Label.NOT_SUPPORTED, "no_leak"
    reason = Msg(
        f"C07.part.future_leak.run.{key}",
        leak=bn_leak,
        ln_leak=ln_leak,
        threshold=threshold,
        power=power_text(power),
        gap=math.nan
        if metrics["norms"]["batch"]["mode_gap"]["mean"] is None
        else float(metrics["norms"]["batch"]["mode_gap"]["mean"]),
    )
    part = SPEC.part("future_leak")
    return PartVerdict(
        "future_leak", part.words, Kind.EXPERIMENT, run_label(decided, power), reason, power, None
    )


def judged_parts(metrics: Mapping[str, Any], reason: str, preference: str) -> list[PartVerdict]:
    """The three parts from the statuses ``verdict._parts``/``_limits`` decided (so the parts and
    the label read the same numbers)."""
    pc = metrics["paired"]
    bn_pad = float(metrics["norms"]["batch"]["padding"]["mean"])
    mechanism = bn_pad if bn_pad < float(metrics["dependence_threshold"]) else None
    return [
        _loss_part("reason", reason, pc["reason_naive_minus_masked"], mechanism, empty()),
        _loss_part(
            "preference",
            preference,
            pc["preference_masked_minus_layer"],
            None,
            Msg(
                "C07.part.preference.why",
                trend=early_text(metrics),
                fall=fall_text(metrics),
                leak=leak_text(metrics),
            ),
        ),
        leak_part(metrics),
    ]
