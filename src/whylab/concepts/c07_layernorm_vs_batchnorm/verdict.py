"""C07's decision: from the per-seed measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The minimum effect, the stability
window and the dependence thresholds are the claim's config keys (``decision_settings`` in ``claim.yaml``:
changing them re-runs this step only); the verdict's own constants are ``claim.yaml``'s
``thresholds``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whylab.concepts import _bench_stats as stats
from whylab.concepts._settle import difference_curve, settle
from whylab.concepts._settle_text import still_moving
from whylab.concepts.c07_layernorm_vs_batchnorm.judged import early_text, judged_parts, leak_text
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
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

COMPARISONS = {  # part -> (a, b): the paired difference a − b (positive: b ends lower)
    "reason": ("batch", "masked_batch"),
    "preference": ("masked_batch", "layer"),
}


def per_seed_of(measured: Measured) -> list[dict[str, Any]]:
    """The seeds' runs (measured in one job: the learning rate is tuned before every seed)."""
    runs: list[dict[str, Any]] = measured.whole["per_seed"]
    return runs


def _early(curve: Mapping[str, Any]) -> dict[str, Any]:
    """The first evaluation after step 0 and the last step at which the sign of the mean paired
    difference changed (None: it never changed after that first evaluation)."""
    steps, mean = list(curve.get("steps") or []), list(curve.get("mean") or [])
    if len(mean) < 3:
        return {"step": None, "value": None, "crossed_at": None}
    crossed = [steps[i] for i in range(2, len(mean)) if (mean[i] > 0) != (mean[i - 1] > 0)]
    return {"step": int(steps[1]), "value": mean[1], "crossed_at": int(crossed[-1]) if crossed else None}


def _window_fall(per_seed: list[dict[str, Any]], norm: str, window: int) -> float | None:
    """Mean over seeds of how far the norm's evaluation loss still fell over the stability window."""
    falls = []
    for r in per_seed:
        loss = r["norms"][norm]["curve"]["eval_loss"]
        if len(loss) >= window and None not in loss[-window:]:
            falls.append(float(loss[-window]) - float(loss[-1]))
    return sum(falls) / len(falls) if falls else None


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
    per_seed = per_seed_of(measured)
    norms: list[str] = list(s["norms"])
    data = measured.whole["data"]  # the same sentences and PAD id for every seed

    def vals(norm: str, key: str) -> list[float]:
        return [_number(r["norms"][norm][key]) for r in per_seed]

    floor = float(s["min_loss_gain"])
    window = int(s["settle_evals"])
    loss = {norm: [r["norms"][norm]["eval_loss"] for r in per_seed] for norm in norms}
    bn_stats = [r["norms"]["batch"]["bn_stats"] for r in per_seed if r["norms"]["batch"].get("bn_stats")]
    reference_pad = [r["norms"][n]["reference_pad_fraction"] for r in per_seed for n in norms]
    curves = {
        part: difference_curve(
            [r["norms"][a]["curve"] for r in per_seed], [r["norms"][b]["curve"] for r in per_seed]
        )
        for part, (a, b) in COMPARISONS.items()
    }
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
        # train until the comparison stops moving (issue 20): one lr grid, one rule, every norm
        "tuning": measured.whole["tuning"],
        "tune_disjoint": bool(data["tune_disjoint"]),
        "difference_curves": curves,
        "settle": {part: settle(c, floor, window) for part, c in curves.items()},
        "early": {part: _early(c) for part, c in curves.items()},
        "window_fall": {norm: _window_fall(per_seed, norm, window) for norm in norms},
        "padding_curves": {
            norm: _mean_curve([r["norms"][norm]["padding_curve"] for r in per_seed]) for norm in norms
        },
        "reference_pad_fraction": sum(reference_pad) / len(reference_pad),
        "pad_fraction_train": data["pad_fraction_train"],
        "steps": int(data["steps"]),
        "sentences": data["sentences"],
        "pad_id": data["pad_id"],
        "min_loss_gain": floor,
        "settle_evals": window,
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
    """The two parts' statuses and whether each comparison had stopped moving."""

    reason: str
    preference: str
    settled: dict[str, bool] = field(default_factory=dict)


def _parts(metrics: Mapping[str, Any]) -> Parts:
    """Each part is judged only once its own paired difference has stopped moving (``settle``:
    over the last ``settle_evals`` evaluations it moved by less than ``min_loss_gain``); the old
    gate on one arm's training loss sat on a knife edge (issue 20)."""
    pc = metrics["paired"]
    settled = {part: bool(metrics["settle"][part]["settled"]) for part in COMPARISONS}
    bn_pad = float(metrics["norms"]["batch"]["padding"]["mean"])
    if bn_pad < float(metrics["dependence_threshold"]):
        reason = "contradicted"
    else:
        reason = _status(pc["reason_naive_minus_masked"]) if settled["reason"] else "limited"
    preference = _status(pc["preference_masked_minus_layer"]) if settled["preference"] else "limited"
    return Parts(reason, preference, settled)


def _numbers(metrics: Mapping[str, Any], ln_dep: float) -> Msg:
    ln, bn, mbn = metrics["norms"]["layer"], metrics["norms"]["batch"], metrics["norms"]["masked_batch"]
    pc = metrics["paired"]
    tuning = metrics["tuning"]
    return Msg(
        "C07.reason.numbers",
        bn_pad=float(bn["padding"]["mean"]),
        mbn_pad=float(mbn["padding"]["mean"]),
        ln_dep=ln_dep,
        reason_delta=stats.describe(pc["reason_naive_minus_masked"], "nats/token"),
        pref_delta=stats.describe(pc["preference_masked_minus_layer"], "nats/token"),
        leak=bn["future_leak"]["mean"],
        ln_leak=ln["future_leak"]["mean"],
        lrs=Msg(
            "C07.reason.lrs",
            layer=_number(tuning["layer"]["lr"]),
            batch=_number(tuning["batch"]["lr"]),
            masked=_number(tuning["masked_batch"]["lr"]),
        ),
        why_leak=leak_text(metrics),
        trend=early_text(metrics),
    )


def _why(metrics: Mapping[str, Any], part: str, settled: bool) -> Msg:
    if settled:
        return Msg("C07.reason.not_clear")
    margin = float(metrics["min_loss_gain"])
    st = metrics["settle"][part]
    return still_moving(
        st, metrics["settle_evals"], margin, "C07.reason.too_few_evals", "C07.reason.still_moving"
    )


def _limits(metrics: Mapping[str, Any], parts: Parts) -> list[Msg]:
    """The parts this run could not judge, and why (still moving, or not clear of the noise)."""
    steps = metrics["steps"]
    pc = metrics["paired"]
    limited: list[Msg] = []
    if not metrics["tune_disjoint"]:
        limited.append(Msg("C07.limited.tune_overlap"))
    if parts.reason == "limited":
        delta = stats.describe(pc["reason_naive_minus_masked"], "nats/token")
        why = _why(metrics, "reason", parts.settled["reason"])
        limited.append(Msg("C07.limited.reason", steps=steps, delta=delta, why=why))
    if parts.preference == "limited":
        delta = stats.describe(pc["preference_masked_minus_layer"], "nats/token")
        why = _why(metrics, "preference", parts.settled["preference"])
        limited.append(Msg("C07.limited.preference", steps=steps, delta=delta, why=why))
    return limited


def _judged(out: VerdictOf, parts: Parts, numbers: Msg) -> Verdict:
    judged = [x for x in (parts.reason, parts.preference) if x != "limited"]
    if not judged:
        # why neither part is judged: the differences still moving at the end, or too small
        settling = not all(parts.settled.values())
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

    Every norm is trained at its own learning rate (one grid, one rule: ``_settle.tune``). A part
    that is not clear either way, or whose mean paired difference still moved by ``min_loss_gain``
    or more over the last ``settle_evals`` evaluations (the comparison has not stopped moving), is
    a limit of this run (``limited``): it never lowers the label. Both judged parts confirmed:
    supported; one confirmed and one contradicted: partly; all judged parts contradicted: not
    supported; nothing judged: inconclusive.
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
    numbers = _numbers(metrics, ln_dep)
    limited.extend(_limits(metrics, parts))
    out.parts.extend(judged_parts(metrics, parts.reason, parts.preference))
    return _judged(out, parts, numbers)
