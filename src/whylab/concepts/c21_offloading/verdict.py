"""C21's decision: from the measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
the minimum saving is the claim's ``min_saving`` setting (a decision setting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.memory import calculator as calc
from whylab.messages import Msg, empty
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C21"
SPEC = load_spec(CLAIM_ID)


def accelerator_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """This run's accelerator measurements with their step-time spreads, savings and time ratios (a
    recorded run's come with them already)."""
    if "train_times_plain_s" not in raw:
        return dict(raw)
    out: dict[str, Any] = {
        k: v for k, v in raw.items() if not k.endswith(("_times_plain_s", "_times_offload_s"))
    }
    for kind in ("train", "infer"):
        for case in ("plain", "offload"):
            times = Spread.of(raw[f"{kind}_times_{case}_s"])
            out[f"{kind}_time_{case}_mean_s"], out[f"{kind}_time_{case}_std_s"] = times.mean, times.std
    out["train_saving"] = 1 - out["train_peak_offload"] / out["train_peak_plain"]
    out["infer_saving"] = 1 - out["infer_peak_offload"] / out["infer_peak_plain"]
    out["train_time_ratio"] = out["train_time_offload_mean_s"] / out["train_time_plain_mean_s"]
    out["infer_time_ratio"] = out["infer_time_offload_mean_s"] / out["infer_time_plain_mean_s"]
    return out


def source_of(whole: Mapping[str, Any]) -> Msg | None:
    """Where the accelerator numbers come from: this run's device, a recorded run, or none."""
    if whole["accelerator"] is not None:
        return Msg("C21.source.this_run", device=whole["accelerator_device"])
    rec = whole.get("recorded")
    if rec is None:
        return None
    params = dict(rec["source"])
    return Msg(params.pop("key"), **params)


def summarize(measured: Measured) -> dict[str, Any]:
    w = measured.whole
    comp = w["computed"]
    rec = w.get("recorded")
    acc: dict[str, Any] | None = None
    model = w["model"]
    if w["accelerator"] is not None:
        acc = accelerator_of(w["accelerator"])
        acc["predicted_train_saving"] = comp["estimated_train_saving"]
    elif rec is not None:
        acc, model = dict(rec["accelerator"]), rec["model"]
        if "predicted_train_saving" in rec:
            acc["predicted_train_saving"] = rec["predicted_train_saving"]
    return {
        "provenance": w["provenance"],
        "computed": comp,
        "equivalence": w["equivalence"],
        "accelerator": acc,
        "accelerator_source": source_of(w),
        "accelerator_model": model if acc is not None else None,
        "min_saving": float(measured.settings["min_saving"]),
        "device": w["device"],
    }


def _verdict(metrics: Mapping[str, Any], out: VerdictOf) -> Verdict:
    eq, comp, acc = metrics["equivalence"], metrics["computed"], metrics.get("accelerator")
    thr = metrics["min_saving"]
    if not eq["optimizer_offload_equivalent"] or eq["layer_offload_max_logit_diff"] > SPEC.threshold(
        "layer_offload_max_logit_diff"
    ):
        return out.branch(
            Label.INCONCLUSIVE,
            "C21.verdict.not_equivalent",
            diff=eq["optimizer_offload_diff_over_update"],
            floor=eq["plain_rerun_diff_over_update"],
            logit=eq["layer_offload_max_logit_diff"],
        )
    if acc is None:
        return out.branch(
            Label.INCONCLUSIVE,
            "C21.verdict.no_accelerator",
            state_mib=comp["optimizer_state_leaving_accelerator_bytes"] / calc.MiB,
            saving=comp["estimated_train_saving"],
            transfer_mib=comp["transfer_per_step_bytes"] / calc.MiB,
        )
    tr, inf = acc["train_saving"], acc["infer_saving"]
    where = metrics.get("accelerator_source") or Msg("C21.source.unnamed")
    n_layers = (metrics.get("accelerator_model") or {}).get("offload_layers") or comp["offload_layers"]
    pred = acc.get("predicted_train_saving")
    near = SPEC.threshold("prediction_gap")
    prediction = (
        empty()
        if pred is None
        else Msg(
            "C21.reason.prediction",
            predicted=pred,
            train=tr,
            match=Msg("C21.reason.as_predicted" if abs(tr - pred) <= near else "C21.reason.not_as_predicted"),
        )
    )
    nums = Msg(
        "C21.reason.numbers",
        train=tr,
        train_time=acc["train_time_ratio"],
        infer=inf,
        n_layers=n_layers,
        infer_time=acc["infer_time_ratio"],
        where=where,
        prediction=prediction,
    )
    params = {"numbers": nums, "threshold": thr, "train": tr, "predicted": pred, "n_layers": n_layers}
    if tr >= thr and inf >= thr and (pred is None or abs(tr - pred) <= near):
        return out.branch(Label.SUPPORTED, "C21.verdict.supported", **params)
    if tr >= thr and inf >= thr:
        return out.branch(Label.PARTLY, "C21.verdict.off_prediction", **params)
    if tr >= thr:
        return out.branch(Label.PARTLY, "C21.verdict.only_training", **params)
    if inf >= thr:
        return out.branch(Label.PARTLY, "C21.verdict.only_layers", **params)
    return out.branch(Label.NOT_SUPPORTED, "C21.verdict.neither", **params)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    limited: list[str] = [] if metrics.get("accelerator") else [Msg("C21.limited.no_gpu")]
    part = SPEC.part("offloading_saves")
    assert part.primary is not None
    return _verdict(metrics, VerdictOf(Kind.EXPERIMENT, Msg(part.primary.text), limited))
