"""C19's decision: from the measured points to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
the minimum saving is the claim's ``min_saving`` setting (a decision setting).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.memory.planner import load_model_config
from whylab.memory.training_plan import GiB, Setup, plan
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, Power, part_reason, published_numbers, run_label
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C19"
SPEC = load_spec(CLAIM_ID)
PART = "saves_activation_memory"
# the regime the notes speak of: Llama-2-7B, mixed-precision AdamW, batch 1 x 2048 (the planner, validated)
REAL_SCALE: dict[str, Any] = {"model": "llama-2-7b", "batch": 1, "seq": 2048}


def real_scale() -> dict[str, Any]:
    """The planner's activations and peak of a Llama-2-7B training step with and without per-layer
    checkpointing (pure Python, from the model's config)."""
    name, cfg = load_model_config(str(REAL_SCALE["model"]))
    out: dict[str, Any] = dict(REAL_SCALE)
    for key, ck in (("plain", False), ("checkpointed", True)):
        p = plan(
            cfg, Setup(batch=int(REAL_SCALE["batch"]), seq=int(REAL_SCALE["seq"]), checkpointing=ck), name
        )
        out[f"activations_{key}_gib"] = p.components["activations"] / GiB
        out[f"peak_{key}_gib"] = p.peak / GiB
    out["activation_saving"] = 1 - out["activations_checkpointed_gib"] / out["activations_plain_gib"]
    out["peak_saving"] = 1 - out["peak_checkpointed_gib"] / out["peak_plain_gib"]
    return out


def _row(r: Mapping[str, Any], base: Mapping[str, Any], s: Mapping[str, Any]) -> dict[str, Any]:
    """A measured point with its step-time spread and its saving against the run without checkpointing."""
    times = Spread.of(r["step_times_s"])
    base_mean = Spread.of(base["step_times_s"]).mean
    time_ratio = Spread.of([t / base_mean for t in r["step_times_s"]])
    raw = {k: v for k, v in r.items() if k not in ("grad_rel_max_diff", "method")}
    return (
        raw
        | {"step_time_mean_s": times.mean, "step_time_std_s": times.std, "method": r["method"]}
        | {
            "saving": 1 - r["working_bytes"] / base["working_bytes"],
            "predicted_activation_saving": 1 - r["activation_estimate"] / base["activation_estimate"],
            "measured_activation_saving": 1 - r["activations_at_peak"] / base["activations_at_peak"]
            if base["activations_at_peak"]
            else None,
            "time_ratio_mean": time_ratio.mean,
            "time_ratio_std": time_ratio.std,
            "grad_rel_max_diff": r["grad_rel_max_diff"],
            "in_depth_sweep": r["seq"] == int(s["seq_len_for_depths"]) and r["depth"] in s["depths"],
            "in_seq_sweep": r["depth"] == int(s["depth_for_seq_lens"]) and r["seq"] in s["seq_lens"],
        }
    )


def rows_of(measured: Measured) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = measured.whole["points"]
    base = {(p["depth"], p["seq"]): p for p in points if p["mode"] == "none"}
    return [_row(p, base[(p["depth"], p["seq"])], measured.settings) for p in points]


def _per_layer(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ck = [r for r in rows if r["mode"] != "none"]
    return [r for r in ck if r["mode"] == "per_layer"] or ck


def _growth(rows: list[dict[str, Any]], depths: list[int]) -> dict[str, float]:
    """Working memory at the deepest over the shallowest model of the depth sweep, per mode."""
    depth_rows = {(r["mode"], r["depth"]): r for r in rows if r["in_depth_sweep"]}
    growth = {}
    for mode in {r["mode"] for r in rows}:
        lo, hi = depth_rows.get((mode, depths[0])), depth_rows.get((mode, depths[-1]))
        if lo and hi and len(depths) > 1:
            growth[mode] = hi["working_bytes"] / lo["working_bytes"]
    return growth


def chen_check(rows: list[dict[str, Any]], depths: list[int]) -> tuple[bool | None, Msg]:
    """Whether Chen et al.'s numbers hold here (recomputation costs 5-60% time, sqrt(n) memory grows
    less with depth), and the literature note that says so."""
    overhead = [r["time_ratio_mean"] - 1 for r in _per_layer(rows)]
    growth = _growth(rows, depths)
    sqrt_growth, none_growth = growth.get("sqrt"), growth.get("none")
    chen = None
    lo_band, hi_band = SPEC.threshold("chen_time_overhead")
    if overhead and sqrt_growth is not None and none_growth is not None:
        chen = lo_band <= sum(overhead) / len(overhead) <= hi_band and sqrt_growth < none_growth
    note = (
        Msg(
            "C19.literature.chen.note",
            lo=100 * min(overhead),
            hi=100 * max(overhead),
            none_growth=none_growth or math.nan,
            sqrt_growth=sqrt_growth or math.nan,
            first=depths[0],
            last=depths[-1],
        )
        if overhead
        else Msg("C19.literature.chen.no_run")
    )
    return chen, note


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    rows = rows_of(measured)
    ck = [r for r in rows if r["mode"] != "none"]
    per_layer = _per_layer(rows)
    depths = sorted(s["depths"])
    overhead = [r["time_ratio_mean"] - 1 for r in per_layer]
    # the calculator's activation saving against the measured *activation* saving (the same quantity);
    # the saving above the weights also counts gradients and logits, which checkpointing does not touch
    pred_gap = [
        abs(r["predicted_activation_saving"] - r["measured_activation_saving"])
        for r in per_layer
        if r["measured_activation_saving"] is not None
    ]
    measured_act = [
        r["measured_activation_saving"] for r in per_layer if r["measured_activation_saving"] is not None
    ]
    savings = [r["saving"] for r in per_layer]
    chen, note = chen_check(rows, depths)
    return {
        "rows": rows,
        "checked_modes": sorted({r["mode"] for r in ck}),
        "min_saving": min((r["saving"] for r in per_layer), default=None),
        "max_saving": max((r["saving"] for r in per_layer), default=None),
        "share_points_saving": (sum(r["saving"] >= s["min_saving"] for r in per_layer) / len(per_layer))
        if per_layer
        else None,
        "prediction_max_abs_gap": max(pred_gap, default=None),
        "predicted_saving_min": min((r["predicted_activation_saving"] for r in per_layer), default=None),
        "predicted_saving_max": max((r["predicted_activation_saving"] for r in per_layer), default=None),
        "measured_activation_saving_min": min(measured_act, default=None),
        "measured_activation_saving_max": max(measured_act, default=None),
        "saving_points": len(savings),
        "saving_sd": Spread.of(savings).std if len(savings) > 1 else None,
        "saving_mean": Spread.of(savings).mean if savings else None,
        "real_scale": real_scale(),
        "time_overhead_median": sorted(overhead)[len(overhead) // 2] if overhead else None,
        "time_overhead_min": min(overhead, default=None),
        "time_overhead_max": max(overhead, default=None),
        "working_growth_over_depth": _growth(rows, depths),
        "grad_rel_max_diff": max(r["grad_rel_max_diff"] for r in rows),
        "min_saving_threshold": float(s["min_saving"]),
        "device": str(s.get("device", "cpu")),
        "chen_agrees": chen,
        "chen_note": str(note),
    }


def field_answer(threshold: float) -> FieldAnswer:
    """Chen et al. 2016's numbers against the notes: a saving of at least ``threshold`` of the
    training memory -> supported."""
    published = published_numbers(SPEC.part(PART))
    without, with_ck, extra_time = (float(p.value) for p in published)
    saving = 1 - with_ck / without
    label = Label.SUPPORTED if saving >= threshold else Label.NOT_SUPPORTED
    reason = part_reason(
        "C19.part.saves.field",
        without=without,
        with_ck=with_ck,
        saving=100 * saving,
        time=extra_time,
        thr=100 * threshold,
    )
    return FieldAnswer(label, reason, published)


def _real_scale_msg(m: Mapping[str, Any]) -> Msg:
    r = m.get("real_scale")
    if not r:
        return empty()
    return Msg(
        "C19.part.saves.real_scale",
        batch=r["batch"],
        seq=r["seq"],
        a0=r["activations_plain_gib"],
        a1=r["activations_checkpointed_gib"],
        asave=100 * r["activation_saving"],
        p0=r["peak_plain_gib"],
        p1=r["peak_checkpointed_gib"],
        psave=100 * r["peak_saving"],
    )


def part_of(metrics: Mapping[str, Any], decided: Label) -> PartVerdict:
    """The notes' one assertion: this run's label with its power, and Chen et al.'s answer."""
    part = SPEC.part(PART)
    field = field_answer(float(metrics.get("min_saving_threshold", 0.1)))
    if decided is Label.INCONCLUSIVE or metrics.get("saving_points") is None:
        reason = part_reason("C19.part.saves.run.not_judged", real_scale=_real_scale_msg(metrics))
        return PartVerdict(PART, part.words, Kind.EXPERIMENT, Label.INCONCLUSIVE, reason, None, field)
    sd = metrics.get("saving_sd")
    power = Power.paired(
        math.nan if sd is None else float(sd),
        int(metrics["saving_points"]),
        "share saved",
        predicted=metrics.get("predicted_saving_min"),
    )
    label = run_label(decided, power)
    reason = part_reason(
        "C19.part.saves.run.found",
        lo=100 * metrics["min_saving"],
        hi=100 * metrics["max_saving"],
        n=power.n,
        mean=100 * float(metrics["saving_mean"]),
        detectable=Msg("C19.part.detectable", d=100 * power.detectable)
        if math.isfinite(power.detectable)
        else Msg("C19.part.no_spread"),
        predicted=100 * float(metrics.get("predicted_saving_min") or math.nan),
        real_scale=_real_scale_msg(metrics),
        hardware=Msg("C19.part.on_cpu") if metrics.get("device") == "cpu" else empty(),
    )
    return PartVerdict(PART, part.words, Kind.EXPERIMENT, label, reason, power, field)


def _decided(metrics: Mapping[str, Any]) -> Label:
    if not metrics.get("checked_modes") or metrics.get("min_saving") is None:
        return Label.INCONCLUSIVE
    if metrics["grad_rel_max_diff"] > SPEC.threshold("grad_rel_max_diff"):
        return Label.INCONCLUSIVE
    share = metrics["share_points_saving"]
    return Label.SUPPORTED if share == 1.0 else Label.PARTLY if share > 0 else Label.NOT_SUPPORTED


def _prediction(metrics: Mapping[str, Any]) -> Msg:
    gap = metrics.get("prediction_max_abs_gap")
    if gap is None:
        return empty()
    return Msg(
        "C19.reason.prediction",
        low=100 * metrics["predicted_saving_min"],
        high=100 * metrics["predicted_saving_max"],
        mlow=100 * metrics["measured_activation_saving_min"],
        mhigh=100 * metrics["measured_activation_saving_max"],
        gap=100 * gap,
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    part = SPEC.part(PART)
    assert part.primary is not None
    out = VerdictOf(Kind.EXPERIMENT, primary=Msg(part.primary.text))
    out.parts.append(part_of(metrics, _decided(metrics)))
    if not metrics.get("checked_modes") or metrics.get("min_saving") is None:
        return out.branch(Label.INCONCLUSIVE, "C19.verdict.no_run")
    if metrics["grad_rel_max_diff"] > SPEC.threshold("grad_rel_max_diff"):
        return out.branch(Label.INCONCLUSIVE, "C19.verdict.grads_differ", diff=metrics["grad_rel_max_diff"])
    lo, hi, share = metrics["min_saving"], metrics["max_saving"], metrics["share_points_saving"]
    thr = metrics["min_saving_threshold"]
    cost = Msg(
        "C19.reason.cost",
        low=metrics["time_overhead_min"],
        high=metrics["time_overhead_max"],
        prediction=_prediction(metrics),
    )
    # percentages (0-100): the texts show ranges such as "38–74%"
    numbers = {"lo": 100 * lo, "hi": 100 * hi, "share": 100 * share, "thr": 100 * thr, "cost": cost}
    if share == 1.0:
        return out.branch(Label.SUPPORTED, "C19.verdict.saves_everywhere", **numbers)
    if share > 0:
        return out.branch(Label.PARTLY, "C19.verdict.saves_somewhere", **numbers)
    return out.branch(Label.NOT_SUPPORTED, "C19.verdict.saves_nowhere", **numbers)
