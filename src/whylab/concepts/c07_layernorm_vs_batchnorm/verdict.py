"""C07's decision: from the per-seed measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The minimum effect, the plateau and
the dependence thresholds are the claim's config keys (``decision_settings`` in ``claim.yaml``:
changing them re-runs this step only); the verdict's own constants are ``claim.yaml``'s
``thresholds``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whylab.concepts import _bench_stats as stats
from whylab.concepts.c07_layernorm_vs_batchnorm.judged import judged_parts
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C07"
SPEC = load_spec(CLAIM_ID)
MEASURES = (
    "tail_drop",
    "eval_loss",
    "batch_stats_loss",
    "mode_gap",
    "train_loss_end",
    "mates_padded",
    "mates_nopad",
    "padding",
    "eval_mode",
    "future_leak",
)


# --------------------------------------------------------------------------- metrics


def stable(trend: Mapping[str, Any], floor: float) -> bool:
    """The paired difference has stopped moving: the same sign at the last two evaluations and a
    change between them below ``floor`` (nats/token)."""
    prev, end = trend.get("prev"), trend.get("end")
    if prev is None or end is None:
        return False
    return (prev > 0) == (end > 0) and abs(float(end) - float(prev)) < floor


def _gap_trend(per_seed: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Mean over seeds of the evaluation-curve loss gap a − b half-way through training and at the
    end (nats/token): whether a short run's lead is still changing when training stops."""
    mids, prevs, ends = [], [], []
    for r in per_seed:
        ca, cb = r["norms"][a]["curve"], r["norms"][b]["curve"]
        la, lb = ca["eval_loss"], cb["eval_loss"]
        if len(la) < 2 or len(la) != len(lb) or any(v is None for v in (*la, *lb)):
            continue
        mid = len(la) // 2
        mids.append(float(la[mid]) - float(lb[mid]))
        prevs.append(float(la[-2]) - float(lb[-2]))
        ends.append(float(la[-1]) - float(lb[-1]))
        steps = ca["eval_steps"]
    if not mids:
        return {"mid": None, "end": None, "mid_step": None, "end_step": None, "prev": None}
    return {
        "mid": sum(mids) / len(mids),
        "prev": sum(prevs) / len(prevs),
        "prev_step": int(steps[-2]),
        "end": sum(ends) / len(ends),
        "mid_step": int(steps[len(steps) // 2]),
        "end_step": int(steps[-1]),
    }


def _mean_curve(runs: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Average the per-seed padding curves point by point (same extra columns in every run)."""
    out = []
    for points in zip(*runs, strict=True):
        out.append({k: sum(p[k] for p in points) / len(points) for k in points[0]})
    return out


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    per_seed = measured.per_seed
    norms: list[str] = list(s["norms"])
    data = per_seed[0]["data"]  # the same sentences and PAD id for every seed

    def vals(norm: str, key: str) -> list[float]:
        return [_number(r["norms"][norm][key]) for r in per_seed]

    floor = float(s["min_loss_gain"])
    loss = {norm: [r["norms"][norm]["eval_loss"] for r in per_seed] for norm in norms}
    bn_stats = [r["norms"]["batch"]["bn_stats"] for r in per_seed if r["norms"]["batch"].get("bn_stats")]
    reference_pad = [r["norms"][n]["reference_pad_fraction"] for r in per_seed for n in norms]
    return {
        "n_seeds": len(per_seed),
        "norms": {norm: {k: stats.summary(vals(norm, k)) for k in MEASURES} for norm in norms},
        # positive: the second-named norm's loss is lower (nats/token), paired by seed
        "paired": {
            "reason_naive_minus_masked": stats.paired(loss["batch"], loss["masked_batch"], floor),
            "preference_masked_minus_layer": stats.paired(loss["masked_batch"], loss["layer"], floor),
            "naive_minus_layer": stats.paired(loss["batch"], loss["layer"], floor),
        },
        "diverged": {norm: sum(int(r["norms"][norm]["diverged"]) for r in per_seed) for norm in norms},
        "batchnorm_statistics": {
            k: stats.summary([_number(b[k]) for b in bn_stats])
            for k in ("pad_mean_shift", "batch_fluctuation")
        }
        if bn_stats
        else {},
        "preference_gap_trend": _gap_trend(per_seed, "masked_batch", "layer"),
        "reason_gap_trend": _gap_trend(per_seed, "batch", "masked_batch"),
        "padding_curves": {
            norm: _mean_curve([r["norms"][norm]["padding_curve"] for r in per_seed]) for norm in norms
        },
        "reference_pad_fraction": sum(reference_pad) / len(reference_pad),
        "pad_fraction_train": data["pad_fraction_train"],
        "steps": int(data["steps"]),
        "sentences": data["sentences"],
        "pad_id": data["pad_id"],
        "min_loss_gain": floor,
        "plateau_tolerance": float(s["plateau_tolerance"]),
        "dependence_threshold": float(s["dependence_threshold"]),
        "invariance_tolerance": float(s["invariance_tolerance"]),
    }


# --------------------------------------------------------------------------- verdict


def _status(p: Mapping[str, Any]) -> str:
    """A paired comparison a − b as 'confirmed' (b clearly lower), 'contradicted' (a clearly lower)
    or 'limited': no clear difference in a run this short (also when the difference is shown to be
    small: a few hundred steps of a tiny model cannot say it stays small)."""
    if p["effect"] == 1:
        return "confirmed"
    if p["effect"] == -1:
        return "contradicted"
    return "limited"


@dataclass
class Parts:
    """The two parts' statuses and what decided them."""

    reason: str
    preference: str
    converged: bool
    still: float  # the largest relative fall of the training loss over the last fifth
    closing: bool  # the preference's lead still shrinking at the end of training
    trend: dict[str, Any] = field(default_factory=dict)


def _parts(metrics: Mapping[str, Any]) -> Parts:
    pc = metrics["paired"]
    drops = {n: metrics["norms"][n]["tail_drop"]["mean"] for n in ("layer", "batch", "masked_batch")}
    still = max((d for d in drops.values() if d is not None), default=0.0)
    # the comparison has stopped moving: each paired difference keeps its sign and size (within
    # min_loss_gain) between the last two evaluations; the old gate (training loss falling by less
    # than plateau_tolerance in the last fifth, under a cosine decay) sat on a knife edge (issue 20)
    floor_ = float(metrics["min_loss_gain"])
    converged = all(
        stable(metrics.get(k) or {}, floor_) for k in ("preference_gap_trend", "reason_gap_trend")
    )
    bn_pad = float(metrics["norms"]["batch"]["padding"]["mean"])
    if bn_pad < float(metrics["dependence_threshold"]):
        reason = "contradicted"
    else:
        reason = _status(pc["reason_naive_minus_masked"]) if converged else "limited"
    preference = _status(pc["preference_masked_minus_layer"]) if converged else "limited"
    trend = dict(metrics.get("preference_gap_trend") or {})
    floor = float(metrics["min_loss_gain"])
    closing = (
        trend.get("mid") is not None
        and trend.get("end") is not None
        and abs(float(trend["mid"])) - abs(float(trend["end"])) > floor
    )
    return Parts(reason, preference, converged, still, closing, trend)


def _trend_text(trend: Mapping[str, Any], floor: float) -> Msg:
    if trend.get("mid") is None or trend.get("end") is None:
        return empty()
    mid, end = float(trend["mid"]), float(trend["end"])
    swapped = mid * end < 0 and min(abs(mid), abs(end)) > floor
    return Msg(
        "C07.reason.trend",
        mid=mid,
        end=end,
        mid_step=trend["mid_step"],
        end_step=trend["end_step"],
        swapped=Msg("C07.reason.lead_changed") if swapped else empty(),
    )


def _numbers(metrics: Mapping[str, Any], ln_dep: float, trend: Mapping[str, Any]) -> Msg:
    ln, bn, mbn = metrics["norms"]["layer"], metrics["norms"]["batch"], metrics["norms"]["masked_batch"]
    pc = metrics["paired"]
    return Msg(
        "C07.reason.numbers",
        bn_pad=float(bn["padding"]["mean"]),
        mbn_pad=float(mbn["padding"]["mean"]),
        ln_dep=ln_dep,
        reason_delta=stats.describe(pc["reason_naive_minus_masked"], "nats/token"),
        pref_delta=stats.describe(pc["preference_masked_minus_layer"], "nats/token"),
        leak=bn["future_leak"]["mean"],
        ln_leak=ln["future_leak"]["mean"],
        mode_gap=stats.fmt(bn["mode_gap"], 3),
        trend=_trend_text(trend, float(metrics["min_loss_gain"])),
    )


def _limits(metrics: Mapping[str, Any], parts: Parts) -> list[Msg]:
    """The parts this run could not judge, and why; a lead still closing makes the preference one."""
    steps = metrics["steps"]
    pc = metrics["paired"]
    limited: list[Msg] = []
    if parts.preference != "limited" and parts.closing:
        # BatchNorm's per-feature batch standardisation speeds up the first steps; a lead that is
        # still shrinking when training stops says little about the trained model
        parts.preference = "limited"
        trend = parts.trend
        limited.append(
            Msg(
                "C07.limited.preference_closing",
                mid=float(trend["mid"]),
                end=float(trend["end"]),
                mid_step=trend["mid_step"],
                end_step=trend["end_step"],
            )
        )
    why = (
        Msg("C07.reason.not_clear")
        if parts.converged
        else Msg(
            "C07.reason.not_at_plateau",
            still=parts.still,
            steps=steps,
            min_loss_gain=float(metrics["min_loss_gain"]),
        )
    )
    if parts.reason == "limited":
        delta = stats.describe(pc["reason_naive_minus_masked"], "nats/token")
        limited.append(Msg("C07.limited.reason", steps=steps, delta=delta, why=why))
    if parts.preference == "limited" and not parts.closing:
        delta = stats.describe(pc["preference_masked_minus_layer"], "nats/token")
        limited.append(Msg("C07.limited.preference", steps=steps, delta=delta, why=why))
    return limited


def _judged(out: VerdictOf, parts: Parts, numbers: Msg) -> Verdict:
    judged = [x for x in (parts.reason, parts.preference) if x != "limited"]
    if not judged:
        # why neither part is judged: the differences still moving at the end, or too small
        settling = not parts.converged or parts.closing
        why = Msg("C07.reason.why_unsettled" if settling else "C07.reason.why_unclear")
        return out.branch(Label.INCONCLUSIVE, "C07.verdict.nothing_judged", numbers=numbers, why=why)
    if all(x == "confirmed" for x in judged):
        return out.branch(Label.SUPPORTED, "C07.verdict.supported", numbers=numbers)
    if all(x == "contradicted" for x in judged):
        # the parts this run judged (the other, if any, is a limit)
        key = (
            "C07.verdict.not_supported"
            if len(judged) == 2
            else "C07.verdict.not_supported_reason"
            if parts.reason == "contradicted"
            else "C07.verdict.not_supported_preference"
        )
        return out.branch(Label.NOT_SUPPORTED, key, numbers=numbers)
    # one part confirmed, the other contradicted
    key = "C07.verdict.partly_reason" if parts.reason == "contradicted" else "C07.verdict.partly_preference"
    return out.branch(Label.PARTLY, key, numbers=numbers)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Two parts, each decided by a paired loss comparison:

    - the reason: masked BatchNorm (PAD excluded from the statistics) clearly lower than naive
      BatchNorm; contradicted if PAD barely moves naive BatchNorm's output, or masking clearly hurts;
    - the preference: LayerNorm clearly lower than masked BatchNorm (masked BatchNorm clearly lower
      contradicts it).

    A part that is not clear either way, or any loss comparison while the training loss is still
    falling by ``plateau_tolerance`` or more over the last fifth of training (not at a plateau: a
    short run's early lead says little about the final loss), is a limit of this run
    (``limited``): it never lowers the label. Both judged parts confirmed: supported; one confirmed and one contradicted: partly;
    all judged parts contradicted: not supported; nothing judged: inconclusive.
    """
    part = SPEC.part("reason")
    assert part.primary is not None
    primary = Msg(
        part.primary.text,
        n_seeds=metrics["n_seeds"],
        steps=metrics["steps"],
        min_loss_gain=float(metrics["min_loss_gain"]),
    )
    ln, mbn = metrics["norms"]["layer"], metrics["norms"]["masked_batch"]
    tol = float(metrics["invariance_tolerance"])
    ln_dep = max(float(ln["mates_padded"]["mean"]), float(ln["padding"]["mean"]))
    mbn_pad = float(mbn["padding"]["mean"])
    limited: list[str] = []
    out = VerdictOf(Kind.EXPERIMENT, primary, limited)  # reads limited when a verdict is made

    if ln_dep > tol or mbn_pad > tol:
        return out.branch(
            Label.INCONCLUSIVE, "C07.verdict.untrustworthy", ln_dep=ln_dep, mbn_pad=mbn_pad, tol=tol
        )
    min_seeds = int(SPEC.threshold("min_seeds"))
    if metrics["n_seeds"] < min_seeds or any(p["n"] < min_seeds for p in metrics["paired"].values()):
        return out.branch(Label.INCONCLUSIVE, "C07.verdict.too_few_seeds")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C07.verdict.diverged")
    parts = _parts(metrics)
    numbers = _numbers(metrics, ln_dep, parts.trend)
    limited.extend(_limits(metrics, parts))
    out.parts.extend(judged_parts(metrics, parts.reason, parts.preference))
    return _judged(out, parts, numbers)
