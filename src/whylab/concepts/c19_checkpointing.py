"""C19: gradient checkpointing saves activation memory.

Checkpointing keeps only some layers' inputs during the forward pass and recomputes the rest
during backward. If the claim holds, the peak memory of a forward + backward pass drops, more so
the deeper the model and the longer the sequence, and each step takes longer (the recomputation).
Measured on a LlamaForCausalLM across depth and sequence length, without checkpointing, with
transformers' per-layer checkpointing, and with Chen et al.'s sqrt(n) segments; gradients are
checked to be the same in every mode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.memory import calculator as calc
from whylab.memory import measure, training
from whylab.memory.checkpointing import apply_checkpointing
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

# how the peak was measured (measure.Peak.method), in words of the catalogue
MEASURE_METHODS = {
    "MemTracker (dispatch-level live tensor bytes)": "C19.measure_method.memtracker",
    "torch.cuda.max_memory_allocated": "C19.measure_method.cuda",
}


def measure_method(method: str) -> str:
    """The measuring method's name as a catalogue message (an unknown one as it is)."""
    key = MEASURE_METHODS.get(method)
    return Msg(key) if key else method


CLAIM_ID = "C19"


def measure_point(
    s: Mapping[str, Any], mode: str, depth: int, seq: int, seed: int, device: str, repeats: int
) -> dict[str, Any]:
    model = training.build_llama(s["model"], seed, "fp32", device, num_layers=depth)
    segment = apply_checkpointing(model, mode)
    batch = int(s["batch_size"])
    ids = training.random_ids(int(s["model"]["vocab_size"]), batch, seq, seed, device)

    def fwd_bwd() -> None:
        model(input_ids=ids, labels=ids).loss.backward()

    peak = measure.tracked_peak(fwd_bwd, [model, ids], device)
    grads = [p.grad.detach().clone().cpu() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)

    def timed() -> None:
        fwd_bwd()
        model.zero_grad(set_to_none=True)

    times = measure.time_calls(timed, repeats, device, warmup=1)
    weights = measure.tensor_bytes(model)
    shape = calc.LlamaShape.from_model_cfg(s["model"], layers=depth)
    estimate = (
        calc.llama_activation_bytes(shape, batch, seq)
        if segment == 0
        else calc.llama_checkpointed_activation_bytes(shape, batch, seq, segment=segment)
    )
    spread = Spread.of(times)
    return {
        "mode": mode,
        "depth": depth,
        "seq": seq,
        "batch": batch,
        "segment": segment,
        "peak_bytes": peak.peak_bytes,
        "working_bytes": peak.peak_bytes - max(peak.baseline_bytes, weights),
        "activations_at_peak": peak.breakdown["activations"],
        "breakdown": peak.breakdown,
        "activation_estimate": estimate,
        "step_times_s": times,
        "step_time_mean_s": spread.mean,
        "step_time_std_s": spread.std,
        "method": peak.method,
        "_grads": grads,
    }


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    seed, device, repeats = ctx.seeds[0], ctx.device, int(s["repeats"])
    modes = list(s["modes"])
    if "none" not in modes:
        modes.insert(0, "none")
    points = sorted(
        {("depth", d, int(s["seq_len_for_depths"])) for d in s["depths"]}
        | {("seq", int(s["depth_for_seq_lens"]), q) for q in s["seq_lens"]}
    )
    cache: dict[tuple[str, int, int], dict[str, Any]] = {}
    for _sweep, depth, seq in points:
        for mode in modes:
            if (mode, depth, seq) not in cache:
                cache[(mode, depth, seq)] = measure_point(s, mode, depth, seq, seed, device, repeats)

    rows, grad_diffs = [], []
    for (_mode, depth, seq), r in cache.items():
        base = cache[("none", depth, seq)]
        predicted = 1 - r["activation_estimate"] / base["activation_estimate"]
        diff = max(float((a - b).abs().max()) for a, b in zip(r["_grads"], base["_grads"], strict=True))
        scale = max(float(b.abs().max()) for b in base["_grads"])
        grad_diffs.append(diff / scale)
        time_ratio = [t / base["step_time_mean_s"] for t in r["step_times_s"]]
        rows.append(
            {k: v for k, v in r.items() if k != "_grads"}
            | {
                "saving": 1 - r["working_bytes"] / base["working_bytes"],
                "predicted_activation_saving": predicted,
                "measured_activation_saving": 1 - r["activations_at_peak"] / base["activations_at_peak"]
                if base["activations_at_peak"]
                else None,
                "time_ratio_mean": Spread.of(time_ratio).mean,
                "time_ratio_std": Spread.of(time_ratio).std,
                "grad_rel_max_diff": diff / scale,
                "in_depth_sweep": seq == int(s["seq_len_for_depths"]) and depth in s["depths"],
                "in_seq_sweep": depth == int(s["depth_for_seq_lens"]) and seq in s["seq_lens"],
            }
        )
    metrics, chen_note = _metrics(s, rows, grad_diffs)
    tables = [
        Table.from_records(
            "checkpointing",
            Msg(
                "C19.table.checkpointing.caption",
                batch=s["batch_size"],
                method=measure_method(rows[0]["method"]),
                repeats=repeats,
            ),
            [
                {
                    "mode": r["mode"],
                    "depth": r["depth"],
                    "seq": r["seq"],
                    "segment (layers)": r["segment"],
                    "peak (MiB)": round(r["peak_bytes"] / calc.MiB, 3),
                    "above weights (MiB)": round(r["working_bytes"] / calc.MiB, 3),
                    "saving (%)": round(100 * r["saving"], 1),
                    "activation saving predicted (%)": round(100 * r["predicted_activation_saving"], 1),
                    "activation estimate (MiB)": round(r["activation_estimate"] / calc.MiB, 3),
                    "step time (ms)": f"{1e3 * r['step_time_mean_s']:.1f} ± {1e3 * r['step_time_std_s']:.1f}",
                    "time vs none": f"{r['time_ratio_mean']:.2f} ± {r['time_ratio_std']:.2f}",
                    "grad max rel diff": f"{r['grad_rel_max_diff']:.1e}",
                }
                for r in sorted(rows, key=lambda r: (r["depth"], r["seq"], r["mode"]))
            ],
        )
    ]
    figures = _figures(ctx, rows)
    method = Msg("C19.method")
    literature = [
        LiteratureCheck(
            "Chen et al. 2016, 'Training Deep Nets with Sublinear Memory Cost'",
            Msg("C19.literature.chen.finding"),
            metrics["chen_agrees"],
            chen_note,
        )
    ]
    return Evidence(
        method=method, metrics=metrics, seeds=[seed], tables=tables, figures=figures, literature=literature
    )


def _metrics(
    s: Mapping[str, Any], rows: list[dict[str, Any]], grad_diffs: list[float]
) -> tuple[dict[str, Any], Msg]:
    """The claim's metrics, and the note on Chen et al.'s numbers (kept in English in the metrics)."""
    ck = [r for r in rows if r["mode"] != "none"]
    per_layer = [r for r in ck if r["mode"] == "per_layer"] or ck
    depth_rows = {(r["mode"], r["depth"]): r for r in rows if r["in_depth_sweep"]}
    depths = sorted(s["depths"])
    growth = {}
    for mode in {r["mode"] for r in rows}:
        lo, hi = depth_rows.get((mode, depths[0])), depth_rows.get((mode, depths[-1]))
        if lo and hi and len(depths) > 1:
            growth[mode] = hi["working_bytes"] / lo["working_bytes"]
    overhead = [r["time_ratio_mean"] - 1 for r in per_layer]
    # the calculator's checkpointed activation estimate, as a saving, vs the measured saving above the weights
    pred_gap = [abs(r["predicted_activation_saving"] - r["saving"]) for r in per_layer]
    sqrt_growth, none_growth = growth.get("sqrt"), growth.get("none")
    chen = None
    if overhead and sqrt_growth is not None and none_growth is not None:
        chen = 0.05 <= sum(overhead) / len(overhead) <= 0.6 and sqrt_growth < none_growth
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
        "time_overhead_median": sorted(overhead)[len(overhead) // 2] if overhead else None,
        "time_overhead_min": min(overhead, default=None),
        "time_overhead_max": max(overhead, default=None),
        "working_growth_over_depth": growth,
        "grad_rel_max_diff": max(grad_diffs),
        "min_saving_threshold": float(s["min_saving"]),
        "chen_agrees": chen,
        "chen_note": str(note),
    }, note


def _figures(ctx: ConceptContext, rows: list[dict[str, Any]]) -> list[Any]:
    frame = pd.DataFrame(
        [
            {
                "mode": r["mode"],
                "depth": r["depth"],
                "seq": r["seq"],
                "MiB": r["working_bytes"] / calc.MiB,
                "ms": 1e3 * t,
                "depth sweep": r["in_depth_sweep"],
                "seq sweep": r["in_seq_sweep"],
            }
            for r in rows
            for t in r["step_times_s"]
        ]
    )
    out = []
    for metric, ylabel, name, title, caption in (
        (
            "MiB",
            "peak memory above the weights (MiB)",
            "memory",
            Msg("C19.figure.checkpointing_memory.title"),
            Msg("C19.figure.checkpointing_memory.caption"),
        ),
        (
            "ms",
            "forward + backward time (ms)",
            "time",
            Msg("C19.figure.checkpointing_time.title"),
            Msg("C19.figure.checkpointing_time.caption"),
        ),
    ):
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4))
        sns.lineplot(
            frame[frame["depth sweep"]],
            x="depth",
            y=metric,
            hue="mode",
            marker="o",
            ax=axes[0],
            errorbar="sd",
        )
        axes[0].set_xlabel("decoder layers (count)")
        axes[0].set_ylabel(ylabel)
        sns.lineplot(
            frame[frame["seq sweep"]], x="seq", y=metric, hue="mode", marker="o", ax=axes[1], errorbar="sd"
        )
        if axes[0].get_legend() is not None:
            axes[0].get_legend().remove()  # one legend for both panels, outside the data
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
        fig.subplots_adjust(right=0.85, wspace=0.3)
        axes[1].set_xlabel("sequence length (tokens)")
        axes[1].set_ylabel(ylabel)
        out.append(plotting.save(fig, ctx.outdir, f"checkpointing_{name}", title, caption))
    return out


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    out = VerdictOf(Kind.EXPERIMENT, primary=Msg("C19.primary"))
    if not metrics.get("checked_modes") or metrics.get("min_saving") is None:
        return out.branch(Label.INCONCLUSIVE, "C19.verdict.no_run")
    if metrics["grad_rel_max_diff"] > 1e-4:
        return out.branch(Label.INCONCLUSIVE, "C19.verdict.grads_differ", diff=metrics["grad_rel_max_diff"])
    lo, hi, share = metrics["min_saving"], metrics["max_saving"], metrics["share_points_saving"]
    thr = metrics["min_saving_threshold"]
    gap = metrics.get("prediction_max_abs_gap")
    prediction = (
        Msg(
            "C19.reason.prediction",
            low=100 * metrics["predicted_saving_min"],
            high=100 * metrics["predicted_saving_max"],
            gap=100 * gap,
        )
        if gap is not None
        else empty()
    )
    cost = Msg(
        "C19.reason.cost",
        low=metrics["time_overhead_min"],
        high=metrics["time_overhead_max"],
        prediction=prediction,
    )
    # percentages (0-100): the texts show ranges such as "38–74%"
    numbers = {"lo": 100 * lo, "hi": 100 * hi, "share": 100 * share, "thr": 100 * thr, "cost": cost}
    if share == 1.0:
        return out.branch(Label.SUPPORTED, "C19.verdict.saves_everywhere", **numbers)
    if share > 0:
        return out.branch(Label.PARTLY, "C19.verdict.saves_somewhere", **numbers)
    return out.branch(Label.NOT_SUPPORTED, "C19.verdict.saves_nowhere", **numbers)
