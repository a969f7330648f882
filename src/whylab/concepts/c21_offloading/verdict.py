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
from whylab.memory.planner import load_model_config
from whylab.memory.training_plan import GiB, Setup, plan
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, Power, part_reason, published_numbers, run_label
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C21"
SPEC = load_spec(CLAIM_ID)
# the regime the notes speak of: Llama-2-7B, mixed-precision AdamW, batch 1 x 2048 (the planner, validated)
REAL_SCALE: dict[str, Any] = {"model": "llama-2-7b", "batch": 1, "seq": 2048}


def real_scale() -> dict[str, Any]:
    """The planner's peak of a Llama-2-7B training step with everything on the GPU and with the
    optimizer offloaded (ZeRO-Offload: master, Adam state, gradients and the update on the CPU)."""
    name, cfg = load_model_config(str(REAL_SCALE["model"]))
    out: dict[str, Any] = dict(REAL_SCALE)
    for key, offload in (("plain", "none"), ("offload", "optimizer")):
        p = plan(
            cfg, Setup(batch=int(REAL_SCALE["batch"]), seq=int(REAL_SCALE["seq"]), offload=offload), name
        )
        out[f"peak_{key}_gib"] = p.peak / GiB
    out["saving"] = 1 - out["peak_offload_gib"] / out["peak_plain_gib"]
    return out


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
        "layer_placement": w.get("layer_placement"),
        "real_scale": real_scale(),
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


def layers_field() -> FieldAnswer:
    """What the published descriptions say CPU offloading moves: every source moves layers ->
    supported, none -> not supported, some -> partly (value 1 = moves layers, 0 = does not)."""
    published = published_numbers(SPEC.part("layers"))
    moves = [float(p.value) == 1.0 for p in published]
    label = Label.SUPPORTED if all(moves) else Label.NOT_SUPPORTED if not any(moves) else Label.PARTLY
    return FieldAnswer(
        label, part_reason("C21.part.layers.field", moving=sum(moves), sources=len(moves)), published
    )


def layers_part(metrics: Mapping[str, Any]) -> PartVerdict:
    """A definition check on accelerate's device map: does its CPU offload move whole decoder
    layers, some and not all? And the training offload measured here moves none (what moves)."""
    part = SPEC.part("layers")
    lp = metrics.get("layer_placement")
    eq = metrics["equivalence"]
    if not lp:
        reason = part_reason("C21.part.layers.run.not_run")
        return PartVerdict(
            "layers", part.words, Kind.DEFINITION, Label.INCONCLUSIVE, reason, None, layers_field()
        )
    on_cpu, total = int(lp["decoder_layers_on_cpu"]), int(lp["decoder_layers"])
    some = 0 < on_cpu < total and bool(lp["layers_placed_whole"])
    grads_down = eq.get("optimizer_offload_bytes_to_host_per_step")
    label = Label.NOT_SUPPORTED if not some else Label.SUPPORTED if grads_down is None else Label.PARTLY
    reason = part_reason(
        "C21.part.layers.run.found",
        library=lp["library"],
        on_cpu=on_cpu,
        total=total,
        whole=Msg("C21.part.layers.whole" if lp["layers_placed_whole"] else "C21.part.layers.split"),
        training=empty()
        if grads_down is None
        else Msg("C21.part.layers.training", grads_mib=float(grads_down) / calc.MiB),
    )
    return PartVerdict("layers", part.words, Kind.DEFINITION, label, reason, None, layers_field())


def saves_field(threshold: float) -> FieldAnswer:
    """Ren et al. 2021: the largest model one GPU trains with ZeRO-Offload over PyTorch's; a ratio of
    at least 1 / (1 - threshold) means offloading freed at least ``threshold`` of the memory."""
    published = published_numbers(SPEC.part("saves_memory"))
    size, ratio = (float(p.value) for p in published)
    label = Label.SUPPORTED if ratio >= 1 / (1 - threshold) else Label.NOT_SUPPORTED
    return FieldAnswer(label, part_reason("C21.part.saves.field", size=size, ratio=ratio), published)


def saves_part(metrics: Mapping[str, Any], decided: Label) -> PartVerdict:
    """Peak accelerator memory with and without offloading: one deterministic measurement of one
    seed (a saving seen counts; a missing one is limited), or none on a CPU-only machine."""
    part = SPEC.part("saves_memory")
    field = saves_field(float(metrics["min_saving"]))
    r = metrics.get("real_scale") or real_scale()
    scale = Msg(
        "C21.part.saves.real_scale",
        batch=r["batch"],
        seq=r["seq"],
        p0=r["peak_plain_gib"],
        p1=r["peak_offload_gib"],
        saving=r["saving"],
    )
    acc = metrics.get("accelerator")
    if not acc:
        reason = part_reason("C21.part.saves.run.no_gpu", real_scale=scale)
        return PartVerdict(
            "saves_memory", part.words, Kind.EXPERIMENT, Label.INCONCLUSIVE, reason, None, field
        )
    power = Power.paired(0.0, 1, "share saved", predicted=acc.get("predicted_train_saving"))
    reason = part_reason(
        "C21.part.saves.run.measured", train=acc["train_saving"], infer=acc["infer_saving"], real_scale=scale
    )
    return PartVerdict(
        "saves_memory", part.words, Kind.EXPERIMENT, run_label(decided, power), reason, power, field
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    has_acc = bool(metrics.get("accelerator"))
    limited: list[str] = [] if has_acc else [Msg("C21.limited.no_gpu")]
    part = SPEC.part("saves_memory")
    assert part.primary is not None
    layers = layers_part(metrics)
    if has_acc:
        out = VerdictOf(Kind.EXPERIMENT, Msg(part.primary.text), limited)
        decided = _verdict(metrics, out)
        out.parts.extend([layers, saves_part(metrics, decided.label)])
        return _verdict(metrics, out)
    # no GPU: the claim is a definition ("some layers move to the CPU"), judged on accelerate's device
    # map; the accelerator measurement is what this run could not do
    out = VerdictOf(
        Kind.DEFINITION, Msg("C21.primary_layers", n=metrics["computed"]["offload_layers"]), limited
    )
    out.parts.extend([layers, saves_part(metrics, Label.INCONCLUSIVE)])
    eq = metrics["equivalence"]
    if not eq["optimizer_offload_equivalent"] or eq["layer_offload_max_logit_diff"] > SPEC.threshold(
        "layer_offload_max_logit_diff"
    ):
        return _verdict(metrics, out)
    if layers.run is Label.INCONCLUSIVE:  # no device map was read (an older measurement)
        return _verdict(metrics, out)
    comp = metrics["computed"]
    return out.branch(
        layers.run,
        "C21.verdict.definition",
        layers=layers.reason,
        state_mib=comp["optimizer_state_leaving_accelerator_bytes"] / calc.MiB,
        saving=comp["estimated_train_saving"],
        transfer_mib=comp["transfer_per_step_bytes"] / calc.MiB,
    )
