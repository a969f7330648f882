"""C21: CPU offloading moves some layers (or optimizer state) to the CPU to save accelerator memory.

Two real mechanisms (whylab.memory.offload): ZeRO-Offload-style AdamW (FP32 master weights and Adam
moments in host memory; gradients down, weights up every step) for training, and accelerate's
cpu_offload of the first N decoder layers (weights fetched per forward) for inference. What the
claim is about, peak accelerator memory, can only be measured with an accelerator: on CUDA this
rule measures peak allocated memory and time with and without each; on a CPU-only machine it says
so, checks that both mechanisms compute the same results as the plain model, and computes from
the model the bytes that would leave the accelerator and the bytes moved per step. A result of a
GPU run can be passed in (memory.C21.recorded_gpu_run) and is then reported as recorded.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.files import read_json
from whylab.memory import calculator as calc
from whylab.memory import measure, offload, provenance, training
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C21"


def _precision(s: Mapping[str, Any]) -> tuple[str, str]:
    """(weight precision, the plain optimizer): mixed_bf16 trains BF16 weights with an FP32 master copy."""
    prec = str(s.get("precision", "mixed_bf16"))
    return prec, ("mixed_adamw" if prec == "mixed_bf16" else "adamw")


def computed(s: Mapping[str, Any], model: torch.nn.Module, device: str) -> dict[str, Any]:
    """What offloading would move, and the calculator's predicted peaks, from the model's shapes."""
    shape = calc.LlamaShape.from_model_cfg(s["model"])
    shapes = training.param_shapes(model)
    b, q = int(s["batch_size"]), int(s["seq_len"])
    prec, opt_name = _precision(s)
    plain = calc.training_estimate(shapes, shape, b, q, opt_name, prec, step_bytes=0)
    # ZeRO-Offload: optimizer state and FP32 master on the host, gradients streamed there during backward;
    # the device keeps the weights, the activations and the loss gradients at the start of backward
    offloaded_peak = plain.weights + plain.activations + plain.loss_grads
    p = plain.params
    n_off = min(int(s["offload_layers"]), int(s["model"]["num_layers"]))
    layer_bytes = offload.layer_weight_bytes(model, n_off)
    return {
        "params": p,
        "precision": prec,
        "weights_bytes": plain.weights,
        "optimizer_state_offloaded_bytes": plain.optimizer + (4 * p if prec == "fp32" else 0),
        "optimizer_state_leaving_accelerator_bytes": plain.optimizer,
        "transfer_per_step_bytes": plain.gradients + plain.weights,  # gradients down, weights up
        "estimated_train_peak_plain": plain.phase_peak,
        "estimated_train_peak_offload": offloaded_peak,
        "estimated_train_saving": 1 - offloaded_peak / plain.phase_peak,
        "offload_layers": n_off,
        "layer_weights_offloaded_bytes": layer_bytes,
        "layer_transfer_per_forward_bytes": layer_bytes,
        "inference_weights_bytes": 4 * p,  # the forward-pass measurement runs the FP32 model
        "layer_share_of_weights": layer_bytes / (4 * p),
    }


def equivalence(s: Mapping[str, Any], seed: int, device: str) -> dict[str, Any]:
    """Offloaded training and inference compute what the plain model computes."""
    vocab, b, q = int(s["model"]["vocab_size"]), int(s["batch_size"]), int(s["seq_len"])
    prec, opt_name = _precision(s)
    plain = training.build_llama(s["model"], seed, prec, device)
    again = training.build_llama(s["model"], seed, prec, device)  # the same run twice: the noise floor
    other = training.build_llama(s["model"], seed, prec, device)
    start = [p.detach().cpu().float().clone() for p in plain.parameters()]
    opt_a = training.make_optimizer(plain, opt_name)
    opt_a2 = training.make_optimizer(again, opt_name)
    opt_b = offload.CPUOffloadAdamW(other.parameters(), lr=1e-3)
    losses: dict[str, list[float]] = {"plain": [], "offload": []}
    for step in range(int(s["steps"])):
        ids = training.random_ids(vocab, b, q, seed + step, device)
        losses["plain"].append(training.train_step(plain, opt_a, ids))
        training.train_step(again, opt_a2, ids)
        losses["offload"].append(training.train_step(other, opt_b, ids))

    def params(m: torch.nn.Module, opt: Any = None) -> list[torch.Tensor]:
        """The weights the optimizer updates: the FP32 master copy when the model is 16-bit (a 1-ulp
        FP32 difference between two AdamW kernels can flip a bf16 rounding, which is not a lost update)."""
        if isinstance(opt, offload.CPUOffloadAdamW):
            return [w.detach().cpu() for w in opt.master]
        if isinstance(opt, training.MixedPrecisionAdamW):
            return [
                opt.state[p]["master"].detach().cpu() if opt.state[p] else p.detach().cpu().float()
                for p in m.parameters()
            ]
        return [p.detach().cpu() for p in m.parameters()]

    def norm_diff(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> float:
        return sum(float((x.double() - y.double()).pow(2).sum()) for x, y in zip(xs, ys, strict=True)) ** 0.5

    ref, off, rerun = params(plain, opt_a), params(other, opt_b), params(again, opt_a2)
    update = norm_diff(ref, start)  # how far training moved the weights
    diff, floor = norm_diff(off, ref), norm_diff(rerun, ref)
    max_abs = max(float((x - y).abs().max()) for x, y in zip(off, ref, strict=True))
    del again, opt_a2, start
    # CPU and GPU AdamW kernels round differently (1 ulp); Adam's normalised update amplifies that on
    # near-zero gradients, so a few elements can differ by a fraction of the learning rate. What must
    # hold is that the offloaded run makes the same update: its distance from the plain run is under 1%
    # of how far the weights moved (a lost or stale update would be of the order of the update itself).
    rel = diff / update if update else 0.0
    plain.eval()
    other.eval()
    ids = training.random_ids(vocab, b, q, seed, device)
    with torch.no_grad():
        ref = plain(input_ids=ids).logits
        moved = offload.offload_layers(plain, int(s["offload_layers"]), device)
        got = plain(input_ids=ids).logits
    loss_gap = max(abs(x - y) / abs(x) for x, y in zip(losses["plain"], losses["offload"], strict=True))
    return {
        "optimizer_offload_max_param_diff": max_abs,
        "optimizer_offload_diff_over_update": rel,
        "plain_rerun_diff_over_update": floor / update if update else 0.0,
        "optimizer_offload_max_rel_loss_gap": loss_gap,
        "optimizer_offload_equivalent": rel <= max(10 * floor / update if update else 0.0, 1e-2),
        "optimizer_offload_bytes_to_host_per_step": opt_b.bytes_to_host / int(s["steps"]),
        "optimizer_offload_bytes_to_device_per_step": opt_b.bytes_to_device / int(s["steps"]),
        "layer_offload_max_logit_diff": float((ref - got).abs().max()),
        "layer_offload_moved_bytes": moved,
    }


def accelerator(s: Mapping[str, Any], seed: int, device: str, repeats: int) -> dict[str, Any]:
    """Peak allocated accelerator memory and time, with and without each kind of offloading (CUDA)."""
    vocab, b, q = int(s["model"]["vocab_size"]), int(s["batch_size"]), int(s["seq_len"])
    ids = training.random_ids(vocab, b, q, seed, device)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device == "cuda" else device}
    for name in ("plain", "offload"):
        gc.collect()
        torch.cuda.empty_cache()
        # what an earlier case left on the device: it must be (near) zero for the peaks to compare
        out[f"train_leftover_before_{name}"] = int(torch.cuda.memory_allocated())
        prec, opt_name = _precision(s)
        model = training.build_llama(s["model"], seed, prec, device)
        opt: Any = (
            training.make_optimizer(model, opt_name)
            if name == "plain"
            else offload.CPUOffloadAdamW(model.parameters(), lr=1e-3)
        )
        training.train_step(model, opt, ids)  # state exists
        step = functools.partial(training.train_step, model, opt, ids)
        peak = measure.tracked_peak(step, [], device, use_tracker=False)
        times = Spread.of(measure.time_calls(step, repeats, device))
        out[f"train_peak_{name}"] = peak.peak_bytes
        out[f"train_reserved_{name}"] = peak.extra.get("max_memory_reserved")
        out["cuda_context"] = peak.extra.get("cuda_context")
        out[f"train_time_{name}_mean_s"], out[f"train_time_{name}_std_s"] = times.mean, times.std
        if isinstance(opt, offload.CPUOffloadAdamW):
            opt.remove_hooks()
        del model, opt
    for name in ("plain", "offload"):
        gc.collect()
        torch.cuda.empty_cache()
        out[f"infer_leftover_before_{name}"] = int(torch.cuda.memory_allocated())
        model = training.build_llama(s["model"], seed, "fp32", device)
        model.eval()
        if name == "offload":
            offload.offload_layers(model, int(s["offload_layers"]), device)

        def fwd(m: torch.nn.Module = model) -> None:
            with torch.no_grad():
                m(input_ids=ids)

        fwd()
        peak = measure.tracked_peak(fwd, [], device, use_tracker=False)
        times = Spread.of(measure.time_calls(fwd, repeats, device))
        out[f"infer_peak_{name}"] = peak.peak_bytes
        out[f"infer_time_{name}_mean_s"], out[f"infer_time_{name}_std_s"] = times.mean, times.std
        del model
    out["train_saving"] = 1 - out["train_peak_offload"] / out["train_peak_plain"]
    out["infer_saving"] = 1 - out["infer_peak_offload"] / out["infer_peak_plain"]
    out["train_time_ratio"] = out["train_time_offload_mean_s"] / out["train_time_plain_mean_s"]
    out["infer_time_ratio"] = out["infer_time_offload_mean_s"] / out["infer_time_plain_mean_s"]
    return out


CODE = [
    "src/whylab/concepts/c21_offloading.py",
    "src/whylab/memory/offload.py",
    "src/whylab/memory/measure.py",
]


def _recorded(path: Path) -> tuple[dict[str, Any] | None, Msg, dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"memory.C21.recorded_gpu_run: {str(path)!r} does not exist")
    record = read_json(path)
    acc = record.get("metrics", {}).get("accelerator")
    if record.get("claim_id") != CLAIM_ID or not acc:
        raise InputError(
            f"memory.C21.recorded_gpu_run: {str(path)!r} is not a C21 result with accelerator measurements"
        )
    model = dict(record.get("config", {}).get("model", {}))
    model["offload_layers"] = record.get("config", {}).get("offload_layers")
    model["_provenance"] = record.get("metrics", {}).get("provenance")
    model["_computed"] = record.get("metrics", {}).get("computed")
    return (
        acc,
        Msg(
            "C21.source.recorded",
            device=record["environment"]["device"],
            finished=record.get("finished_at", "?"),
            file=path.name,
            model=_describe(model),
        ),
        model,
    )


def _describe(model: Mapping[str, Any]) -> str:
    keys = ("num_layers", "hidden_size", "vocab_size")
    return ", ".join(f"{k}={model[k]}" for k in keys if k in model) or "unknown"


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    seed, device, repeats = ctx.seeds[0], ctx.device, int(s["repeats"])
    skipped: list[str] = []
    model = training.build_llama(s["model"], seed, "fp32", device)
    comp = computed(s, model, device)
    del model
    eq = equivalence(s, seed, device)
    acc: dict[str, Any] | None = None
    source: Msg | None = None
    acc_model: dict[str, Any] = {**s["model"], "offload_layers": int(s["offload_layers"])}
    if device.startswith("cuda"):
        acc = accelerator(s, seed, device, repeats)
        source = Msg("C21.source.this_run", device=torch.cuda.get_device_name(0))
    else:
        skipped.append(Msg("C21.skipped.no_accelerator"))
        if "recorded_gpu_run" in ctx.inputs:
            acc, source, acc_model = _recorded(ctx.inputs["recorded_gpu_run"])
            for w in provenance.warnings(acc_model.pop("_provenance", None), s, CODE):
                skipped.append(Msg("C21.skipped.recorded_warning", warning=w))
            recorded_comp = acc_model.pop("_computed", None)
            if recorded_comp and acc is not None:
                acc["predicted_train_saving"] = recorded_comp.get("estimated_train_saving")
    if (
        acc is not None
        and "predicted_train_saving" not in acc
        and source
        and source.key == "C21.source.this_run"
    ):
        acc["predicted_train_saving"] = comp["estimated_train_saving"]
    metrics = {
        "provenance": provenance.record(s),
        "computed": comp,
        "equivalence": eq,
        "accelerator": acc,
        "accelerator_source": source,
        "accelerator_model": acc_model if acc is not None else None,
        "min_saving": float(s["min_saving"]),
        "device": device,
    }
    tables = [
        Table.from_records(
            "computed",
            Msg("C21.table.computed.caption"),
            [
                {
                    "quantity": k,
                    "value": v if isinstance(v, (int, str)) else round(v, 4),
                    "MiB": round(v / calc.MiB, 3) if k.endswith(("bytes", "plain", "offload")) else "",
                }
                for k, v in comp.items()
            ],
        ),
        Table.from_records(
            "equivalence",
            Msg("C21.table.equivalence.caption"),
            [{"check": k, "value": v} for k, v in eq.items()],
        ),
    ]
    figures = [_computed_figure(ctx, comp)]
    if acc is not None:
        tables.append(
            Table.from_records(
                "accelerator",
                Msg("C21.table.accelerator.caption", source=source or Msg("C21.source.unnamed")),
                [
                    {
                        "case": case,
                        "kind": kind,
                        "peak (MiB)": round(acc[f"{kind}_peak_{case}"] / calc.MiB, 2),
                        "reserved peak (MiB)": round(acc[f"{kind}_reserved_{case}"] / calc.MiB, 2)
                        if acc.get(f"{kind}_reserved_{case}")
                        else "not recorded",
                        "left over before (MiB)": round(acc[f"{kind}_leftover_before_{case}"] / calc.MiB, 3)
                        if f"{kind}_leftover_before_{case}" in acc
                        else "not recorded",
                        "time (ms)": f"{1e3 * acc[f'{kind}_time_{case}_mean_s']:.2f} ± {1e3 * acc[f'{kind}_time_{case}_std_s']:.2f}",
                    }
                    for kind in ("train", "infer")
                    for case in ("plain", "offload")
                ],
            )
        )
        figures.append(_figure(ctx, acc, source or Msg("C21.source.unnamed")))
    method = Msg("C21.method")
    lit_agrees = None if acc is None else acc["train_saving"] >= float(s["min_saving"])
    literature = [
        LiteratureCheck(
            "Ren et al. 2021 (ZeRO-Offload)",
            Msg("C21.literature.ren.finding"),
            lit_agrees,
            Msg("C21.literature.ren.no_measurement")
            if acc is None
            else Msg(
                "C21.literature.ren.measured",
                train=acc["train_saving"],
                train_time=acc["train_time_ratio"],
                source=source or Msg("C21.source.unnamed"),
                threshold=float(s["min_saving"]),
            ),
        )
    ]
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=[seed],
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=skipped,
    )


def _computed_figure(ctx: ConceptContext, comp: Mapping[str, Any]) -> Any:
    """What offloading takes off the accelerator, computed from the model (no accelerator needed)."""
    rows = [
        {
            "workload": "training step (mixed-precision AdamW)",
            "case": "no offloading",
            "MiB": comp["estimated_train_peak_plain"],
        },
        {
            "workload": "training step (mixed-precision AdamW)",
            "case": "offloaded",
            "MiB": comp["estimated_train_peak_offload"],
        },
        {
            "workload": "weights resident (forward, FP32)",
            "case": "no offloading",
            "MiB": comp.get("inference_weights_bytes", comp["weights_bytes"]),
        },
        {
            "workload": "weights resident (forward, FP32)",
            "case": "offloaded",
            "MiB": comp.get("inference_weights_bytes", comp["weights_bytes"])
            - comp["layer_weights_offloaded_bytes"],
        },
    ]
    frame = pd.DataFrame(rows)
    frame["MiB"] = frame["MiB"] / calc.MiB
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(frame, x="workload", y="MiB", hue="case", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.75)

    ax.set_xlabel("workload")
    ax.set_ylabel("accelerator memory, computed (MiB)")
    return plotting.save(
        fig,
        ctx.outdir,
        "offload_computed",
        Msg("C21.figure.offload_computed.title"),
        Msg(
            "C21.figure.offload_computed.caption",
            n_layers=comp["offload_layers"],
            transfer_mib=comp["transfer_per_step_bytes"] / calc.MiB,
        ),
    )


def _figure(ctx: ConceptContext, acc: Mapping[str, Any], source: Msg) -> Any:
    frame = pd.DataFrame(
        [
            {
                "kind": {"train": "training step", "infer": "forward (inference)"}[k],
                "case": {"plain": "no offloading", "offload": "offloaded"}[c],
                "MiB": acc[f"{k}_peak_{c}"] / calc.MiB,
            }
            for k in ("train", "infer")
            for c in ("plain", "offload")
        ]
    )
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(frame, x="kind", y="MiB", hue="case", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.75)

    ax.set_xlabel("workload")
    ax.set_ylabel("peak allocated accelerator memory (MiB)")
    return plotting.save_figure(fig, ctx.outdir, "C21.figure.offload_peak", source=source)


def _verdict(metrics: Mapping[str, Any], out: VerdictOf) -> Verdict:
    eq, comp, acc = metrics["equivalence"], metrics["computed"], metrics.get("accelerator")
    thr = metrics["min_saving"]
    if not eq["optimizer_offload_equivalent"] or eq["layer_offload_max_logit_diff"] > 1e-4:
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
    prediction = (
        empty()
        if pred is None
        else Msg(
            "C21.reason.prediction",
            predicted=pred,
            train=tr,
            match=Msg("C21.reason.as_predicted" if abs(tr - pred) <= 0.1 else "C21.reason.not_as_predicted"),
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
    if tr >= thr and inf >= thr and (pred is None or abs(tr - pred) <= 0.1):
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
    return _verdict(metrics, VerdictOf(Kind.EXPERIMENT, Msg("C21.primary"), limited))
