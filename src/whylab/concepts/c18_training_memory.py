"""C18: training memory = base memory × (optimizer + gradient + activation factors).

The notes give per-parameter factors (Adam 8 B, AdaFactor 2-4 B, SGD 0; gradients 4 B in FP32,
2 B in FP16; activations "proportional to batch and sequence, about 20-30 % of the model") and
multiply the model's bytes by their sum. This experiment measures real training steps of a small
LlamaForCausalLM (peak live tensor bytes, broken down into weights / gradients / optimizer state /
activations) across batch sizes, sequence lengths and optimizers, checks each factor on its own,
and holds three estimates against the measured peak: the notes' formula as written, the same
factors added per parameter, and the exact accounting model of :mod:`whylab.memory.calculator`.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.memory import calculator as calc
from whylab.memory import measure, planner, training
from whylab.memory.presets import PRESETS
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C18"
NOTES_OPT = {
    "adamw": "adamw",
    "adam": "adam",
    "sgd": "sgd",
    "sgd_momentum": "sgd",
    "adafactor": "adafactor",
    "mixed_adamw": "adamw",
}
PRECISION_OF = {"mixed_adamw": "mixed_bf16"}


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    seen: dict[int, int] = {}
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.device.type != "meta":
                st = value.untyped_storage()
                seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def _grad_bytes(model: torch.nn.Module) -> int:
    return sum(p.grad.untyped_storage().nbytes() for p in model.parameters() if p.grad is not None)


def measure_point(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    shape: calc.LlamaShape,
    batch: int,
    seq: int,
    optimizer: str,
    precision: str,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """One measured training step at (batch, seq), after the optimizer state exists."""
    ids = training.random_ids(shape.vocab, batch, seq, seed, device)
    saved, out = measure.saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids).loss)
    out.backward()
    grads = _grad_bytes(model)
    opt.zero_grad(set_to_none=True)
    del out
    peak = measure.tracked_peak(lambda: training.train_step(model, opt, ids), [model, opt, ids], device)
    est = calc.training_estimate(
        training.param_shapes(model),
        shape,
        batch,
        seq,
        optimizer,
        precision,
        step_bytes=0 if device.startswith("cuda") else 4,
    )
    p = est.params
    # what the allocator holds before the step beyond the model's own tensors (CUDA: library workspaces)
    resident = (
        est.weights
        + est.optimizer
        + ids.numel() * ids.element_size()
        + sum(b.numel() * b.element_size() for b in model.buffers())
    )
    overhead = max(0, peak.baseline_bytes - resident) if device.startswith("cuda") else 0
    weights = calc.precision(precision).weight * p
    notes_dtype = "fp32" if precision == "fp32" else "bf16"
    row: dict[str, Any] = {
        "batch": batch,
        "seq": seq,
        "tokens": batch * seq,
        "optimizer": optimizer,
        "precision": precision,
        "params": p,
        "measured_peak": peak.peak_bytes,
        "breakdown": peak.breakdown,
        "method": peak.method,
        "saved_activations": saved,
        "gradient_bytes": grads,
        "optimizer_state_bytes": _state_bytes(opt),
        "allocator_overhead": overhead,
        # CUDA only: what the caching allocator reserved at most, and the CUDA context beside it
        "reserved_peak": peak.extra.get("max_memory_reserved"),
        "cuda_context": peak.extra.get("cuda_context"),
        "tracker_peak": peak.tracker_peak_bytes,
        "estimate": est.to_dict(),
        "activation_over_model": saved / weights,
        "notes_literal": calc.notes_training_bytes(p, notes_dtype, NOTES_OPT[optimizer], 0.25, "literal"),
        "notes_additive": calc.notes_training_bytes(p, notes_dtype, NOTES_OPT[optimizer], 0.25, "additive"),
    }
    for key in ("notes_literal", "notes_additive"):
        row[f"{key}_rel_err"] = (row[key] - peak.peak_bytes) / peak.peak_bytes
    row["exact_rel_err"] = (est.phase_peak + overhead - peak.peak_bytes) / peak.peak_bytes
    row["sum_rel_err"] = (est.sum_of_terms - peak.peak_bytes) / peak.peak_bytes
    return row


def notes_model_rows(points: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The validated calculator on the notes' models: mixed-precision (bf16) AdamW fine-tuning, sdpa attention.

    Per point: the exact terms, the notes' formula (as written and with its factors added per parameter)
    and activations / weight bytes, the quantity the notes put at 20–30%.
    """
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for pt in points:
        name, batch, seq = str(pt["model"]), int(pt["batch"]), int(pt["seq"])
        attention = str(pt.get("attention", "sdpa"))
        cfg = PRESETS[name]
        try:
            plan = planner.plan(cfg, planner.Setup(batch=batch, seq=seq, attention=attention), name)
        except InputError as exc:
            skipped.append(Msg("C18.skipped.notes_model", name=name, batch=batch, seq=seq, error=str(exc)))
            continue
        c = plan.components
        n = plan.params
        literal = calc.notes_training_bytes(n, "bf16", "adamw", 0.25, "literal")
        additive = calc.notes_training_bytes(n, "bf16", "adamw", 0.25, "additive")
        rows.append(
            {
                "model": name,
                "batch": batch,
                "seq": seq,
                "attention": attention,
                "params": n,
                "weights": c["weights"],
                "master": c["master copy"],
                "gradients": c["gradients"],
                "optimizer": c["optimizer state"],
                "activations": c["activations"],
                "logits": c["logits"],
                "peak": plan.peak,
                "activation_over_model": c["activations"] / c["weights"],
                "model_state_bytes_per_param": (
                    c["weights"] + c["master copy"] + c["gradients"] + c["optimizer state"]
                )
                / n,
                "notes_literal": literal,
                "notes_additive": additive,
                "notes_literal_rel_err": (literal - plan.peak) / plan.peak,
                "notes_additive_rel_err": (additive - plan.peak) / plan.peak,
            }
        )
    return rows, skipped


def plan_rows(entries: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The planner's answer for each ``memory.plan`` entry (GiB per component, fits on 24/40/80 GB)."""
    out = []
    for e in entries:
        name = str(e["model"])
        setup = planner.Setup(
            batch=int(e.get("batch", 1)),
            seq=int(e.get("seq", 512)),
            dtype=str(e.get("dtype", "bf16")),
            optimizer=str(e.get("optimizer", "adamw")),
            checkpointing=bool(e.get("checkpointing", False)),
            lora=int(e.get("lora", 0)),
            qlora=bool(e.get("qlora", False)),
            offload=str(e.get("offload", "none")),
        )
        p = planner.plan(PRESETS[name], setup, name)
        trick = ", ".join(
            t
            for t in (
                f"LoRA r={setup.lora}" if setup.lora and not setup.qlora else "",
                f"QLoRA r={setup.lora}" if setup.qlora else "",
                "checkpointing" if setup.checkpointing else "",
                f"offload {setup.offload}" if setup.offload != "none" else "",
                setup.optimizer if setup.optimizer != "adamw" else "",
            )
            if t
        )
        out.append(
            {
                "label": f"{name} b{setup.batch}×{setup.seq} {setup.dtype}"
                + (f" + {trick}" if trick else ""),
                "model": name,
                "params": p.params,
                "components": p.components,
                "host": p.host,
                "peak": p.peak,
                "fits": p.fits,
                "accelerate_total": p.accelerate["total_size"],
                "accelerate_training": p.accelerate["training_using_adam"],
            }
        )
    return out


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    seed, device = ctx.seeds[0], ctx.device
    shape = calc.LlamaShape.from_model_cfg(s["model"])
    skipped: list[str] = []

    # 1. the activation grid: AdamW, FP32, every (batch, seq)
    model = training.build_llama(s["model"], seed, "fp32", device)
    opt = training.make_optimizer(model, "adamw")
    training.train_step(model, opt, training.random_ids(shape.vocab, 1, 8, seed, device))
    grid = [
        measure_point(model, opt, shape, b, q, "adamw", "fp32", seed, device)
        for b in s["batch_sizes"]
        for q in s["seq_lens"]
    ]
    del model, opt

    # 2. every optimizer at the reference point
    rb, rs = s["reference_point"]
    per_opt = []
    for name in s["optimizers"]:
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        prec = PRECISION_OF.get(name, "fp32")
        model = training.build_llama(s["model"], seed, prec, device)
        opt = training.make_optimizer(model, name)
        training.train_step(model, opt, training.random_ids(shape.vocab, rb, rs, seed, device))
        row = measure_point(model, opt, shape, rb, rs, name, prec, seed, device)
        row["optimizer_bytes_per_param"] = row["optimizer_state_bytes"] / row["params"]
        row["gradient_bytes_per_param"] = row["gradient_bytes"] / row["params"]
        row["model_state_bytes_per_param"] = (
            calc.precision(prec).weight * row["params"] + row["gradient_bytes"] + row["optimizer_state_bytes"]
        ) / row["params"]
        per_opt.append(row)
        del model, opt

    # 3. the process-level check: peak RSS growth of a step in a fresh process
    rss_rows = []
    if device == "cpu":
        for b, q in s["rss_points"]:
            deltas = [
                measure.rss_peak(
                    "whylab.memory.training:step_work",
                    {
                        "model_cfg": dict(s["model"]),
                        "batch": b,
                        "seq": q,
                        "optimizer": "adamw",
                        "precision": "fp32",
                        "seed": seed,
                    },
                    threads=ctx.threads,
                )["peak_delta_bytes"]
                for _ in range(int(s["repeats"]))
            ]
            tracked = next((g for g in grid if g["batch"] == b and g["seq"] == q), None)
            if tracked is None:
                m2 = training.build_llama(s["model"], seed, "fp32", device)
                o2 = training.make_optimizer(m2, "adamw")
                training.train_step(m2, o2, training.random_ids(shape.vocab, b, q, seed, device))
                tracked = measure_point(m2, o2, shape, b, q, "adamw", "fp32", seed, device)
            resident = (
                tracked["breakdown"]["parameters"]
                + tracked["breakdown"]["optimizer"]
                + tracked["breakdown"]["buffers"]
                + tracked["breakdown"]["other"]
            )
            spread = Spread.of(deltas)
            rss_rows.append(
                {
                    "batch": b,
                    "seq": q,
                    "rss_peak_delta_mean": spread.mean,
                    "rss_peak_delta_std": spread.std,
                    "n": spread.n,
                    "tracked_step_delta": tracked["measured_peak"] - resident,
                    "rss_over_tracked": spread.mean / (tracked["measured_peak"] - resident),
                }
            )
        noise = [
            measure.rss_peak("whylab.memory.measure:null_work", threads=ctx.threads)["peak_delta_bytes"]
            for _ in range(int(s["repeats"]) if rss_rows else 0)
        ]
    else:
        noise = []
        skipped.append(Msg("C18.skipped.rss_cpu_only"))

    notes_rows, notes_skipped = notes_model_rows(list(s["notes_models"]))
    skipped.extend(notes_skipped)
    plans = plan_rows(list(s.get("plan", [])))
    metrics = _metrics(s, shape, grid, per_opt, rss_rows, noise)
    metrics.update(_notes_metrics(notes_rows))
    metrics["plan"] = plans
    tables = _tables(grid, per_opt, rss_rows, noise) + _notes_tables(notes_rows, plans)
    figures = [
        _figure_grid(ctx, grid),
        _figure_breakdown(ctx, per_opt),
        _figure_fraction(ctx, grid),
        _figure_notes_models(ctx, notes_rows),
    ]
    if plans:
        figures.append(_figure_plan(ctx, plans))
    literature = _literature(metrics)
    method = Msg("C18.method", measured_by=_measured_by(grid[0]["method"]))
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=[seed],
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=skipped,
    )


# the measurement methods of whylab.memory.measure, named in the method text
MEASURED_BY = {
    "MemTracker (dispatch-level live tensor bytes)": "C18.measured_by.memtracker",
    "torch.cuda.max_memory_allocated": "C18.measured_by.cuda_max_allocated",
}


def _measured_by(method: str) -> str:
    """A measurement method's name as a catalogue message (an unknown one as it is)."""
    key = MEASURED_BY.get(method)
    return Msg(key) if key else method


def _fit_korthikanti(grid: list[dict[str, Any]], shape: calc.LlamaShape) -> dict[str, float]:
    """Per-layer activation bytes / (s·b·h) = c0 + c1·(a·s/h), fitted over the grid (Korthikanti's form)."""
    xs, ys = [], []
    for g in grid:
        head = calc.llama_head_activation_bytes(shape, g["batch"], g["seq"], 4)
        per_layer = (g["saved_activations"] - head) / shape.layers
        xs.append(shape.heads * g["seq"] / shape.hidden)
        ys.append(per_layer / (g["seq"] * g["batch"] * shape.hidden))
    if len(set(xs)) < 2:
        return {"c0": math.nan, "c1": math.nan, "max_residual": math.nan}
    c1, c0 = np.polyfit(xs, ys, 1)
    resid = max(abs(y - (c0 + c1 * x)) / y for x, y in zip(xs, ys, strict=True))
    return {"c0": float(c0), "c1": float(c1), "max_residual": float(resid)}


def _metrics(
    s: Mapping[str, Any],
    shape: calc.LlamaShape,
    grid: list[dict[str, Any]],
    per_opt: list[dict[str, Any]],
    rss_rows: list[dict[str, Any]],
    noise: list[int],
) -> dict[str, Any]:
    rows = grid + per_opt
    by_opt = {r["optimizer"]: r for r in per_opt}
    fractions = [g["activation_over_model"] for g in grid]
    # activations ∝ batch: A(b, s) / (b · A(1, s)) for the smallest batch as the unit
    b0 = min(s["batch_sizes"])
    batch_dev = []
    for g in grid:
        base = next(x for x in grid if x["batch"] == b0 and x["seq"] == g["seq"])
        batch_dev.append(abs(g["saved_activations"] * b0 / (base["saved_activations"] * g["batch"]) - 1))
    seq_exp = []
    for b in s["batch_sizes"]:
        pts = sorted((g["seq"], g["saved_activations"]) for g in grid if g["batch"] == b)
        if len(pts) >= 2:
            seq_exp.append(math.log(pts[-1][1] / pts[0][1]) / math.log(pts[-1][0] / pts[0][0]))
    return {
        "grid": grid,
        "per_optimizer": per_opt,
        "rss": rss_rows,
        "rss_noise_floor_bytes": noise,
        "params": grid[0]["params"],
        "exact_max_abs_rel_err": max(abs(r["exact_rel_err"]) for r in rows),
        "sum_of_terms_median_rel_err": statistics.median(r["sum_rel_err"] for r in rows),
        # over the AdamW FP32 grid only: the rows the formula's Adam factor is about
        "small_notes_literal_median_rel_err": statistics.median(r["notes_literal_rel_err"] for r in grid),
        "small_notes_additive_median_abs_rel_err": statistics.median(
            abs(r["notes_additive_rel_err"]) for r in grid
        ),
        "small_activation_fraction_min": min(fractions),
        "small_activation_fraction_max": max(fractions),
        "activation_batch_proportionality_max_dev": max(batch_dev),
        "activation_seq_exponent": statistics.fmean(seq_exp) if seq_exp else None,
        "adam_state_bytes_per_param": by_opt.get("adamw", by_opt.get("adam", {})).get(
            "optimizer_bytes_per_param"
        ),
        "sgd_state_bytes_per_param": by_opt.get("sgd", {}).get("optimizer_bytes_per_param"),
        "sgd_momentum_state_bytes_per_param": by_opt.get("sgd_momentum", {}).get("optimizer_bytes_per_param"),
        "adafactor_state_bytes_per_param": by_opt.get("adafactor", {}).get("optimizer_bytes_per_param"),
        "fp32_gradient_bytes_per_param": by_opt.get("adamw", per_opt[0])["gradient_bytes_per_param"],
        "mixed_model_state_bytes_per_param": by_opt.get("mixed_adamw", {}).get("model_state_bytes_per_param"),
        "mixed_gradient_bytes_per_param": by_opt.get("mixed_adamw", {}).get("gradient_bytes_per_param"),
        "korthikanti_fit": _fit_korthikanti(grid, shape),
        "rss_over_tracked_max_dev": max((abs(r["rss_over_tracked"] - 1) for r in rss_rows), default=None),
        "tolerance": float(s["tolerance"]),
        # CUDA: points share one process; the allocator's leftover before each point (bytes beyond the
        # model's own tensors: library workspaces and what earlier points left) is measured and bounded here
        "cuda_allocator_leftover_max": max((r["allocator_overhead"] for r in rows), default=0),
        "cuda_reserved_peak_max": max((r["reserved_peak"] or 0 for r in rows), default=0) or None,
        "cuda_context_bytes": next(
            (r["cuda_context"] for r in rows if r.get("cuda_context") is not None), None
        ),
    }


def _notes_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The primary numbers: the notes' formula and activation band on the notes' models."""
    lo, hi = calc.NOTES_ACTIVATION_FRACTION
    if not rows:
        return {"notes_models": [], "activation_fraction_share_in_notes_band": None}
    fr = [r["activation_over_model"] for r in rows]
    return {
        "notes_models": rows,
        "notes_literal_median_rel_err": statistics.median(r["notes_literal_rel_err"] for r in rows),
        "notes_additive_median_abs_rel_err": statistics.median(
            abs(r["notes_additive_rel_err"]) for r in rows
        ),
        "activation_fraction_min": min(fr),
        "activation_fraction_max": max(fr),
        "activation_fraction_share_in_notes_band": sum(lo <= f <= hi for f in fr) / len(fr),
        "notes_models_state_bytes_per_param": statistics.median(
            r["model_state_bytes_per_param"] for r in rows
        ),
        "notes_points": len(rows),
    }


def _gib(x: float) -> float:
    return round(x / calc.GiB, 2)


def _notes_tables(rows: list[dict[str, Any]], plans: list[dict[str, Any]]) -> list[Table]:
    out = [
        Table.from_records(
            "notes_models",
            Msg("C18.table.notes_models.caption"),
            [
                {
                    "model": r["model"],
                    "batch × seq": f"{r['batch']}×{r['seq']}",
                    "weights": _gib(r["weights"]),
                    "FP32 master": _gib(r["master"]),
                    "gradients": _gib(r["gradients"]),
                    "Adam state": _gib(r["optimizer"]),
                    "activations": _gib(r["activations"]),
                    "logits": _gib(r["logits"]),
                    "peak (GiB)": _gib(r["peak"]),
                    "notes as written (GiB)": _gib(r["notes_literal"]),
                    "notes err (%)": round(100 * r["notes_literal_rel_err"], 1),
                    "notes added (GiB)": _gib(r["notes_additive"]),
                    "added err (%)": round(100 * r["notes_additive_rel_err"], 1),
                    "activations / weights": round(r["activation_over_model"], 2),
                }
                for r in rows
            ],
        )
    ]
    if plans:
        comps = list(plans[0]["components"])
        out.append(
            Table.from_records(
                "plan",
                Msg("C18.table.plan.caption"),
                [
                    {
                        "setup": p["label"],
                        **{k: _gib(p["components"].get(k, 0)) for k in comps},
                        "peak (GiB)": _gib(p["peak"]),
                        **{f"fits {k}": "yes" if v else "no" for k, v in p["fits"].items()},
                        "accelerate total (GiB)": _gib(p["accelerate_total"]),
                        "accelerate training (GiB)": _gib(p["accelerate_training"]),
                    }
                    for p in plans
                ],
            )
        )
    return out


def _figure_notes_models(ctx: ConceptContext, rows: list[dict[str, Any]]) -> Any:
    frame = pd.DataFrame(
        [
            {
                "point": f"{r['model'].removesuffix('-uncased')}\n{r['batch']}×{r['seq']}",
                "activations / weights": r["activation_over_model"],
            }
            for r in rows
        ]
    )
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lo, hi = calc.NOTES_ACTIVATION_FRACTION
    ax.axhspan(lo, hi, color="grey", alpha=0.3, label="notes: 0.20–0.30")
    if not frame.empty:
        sns.barplot(frame, x="point", y="activations / weights", color="tab:blue", ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("model, batch × sequence length (tokens)")
    ax.set_ylabel("activation bytes / weight bytes (ratio, log scale)")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.8)
    return plotting.save_figure(fig, ctx.outdir, "C18.figure.notes_models_activation_fraction")


def _figure_plan(ctx: ConceptContext, plans: list[dict[str, Any]]) -> Any:
    comps = list(plans[0]["components"])
    frame = pd.DataFrame(
        [{"setup": p["label"], **{k: p["components"].get(k, 0) / calc.GB for k in comps}} for p in plans]
    ).set_index("setup")
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(plans) + 2.2))
    frame.plot(kind="barh", stacked=True, ax=ax, color=sns.color_palette("colorblind", len(comps)), width=0.7)
    for g in planner.GPU_SIZES_GB:
        ax.axvline(g, color="black", linestyle="--", linewidth=0.8)
        ax.text(g, 1.0, f"{g} GB", transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accelerator memory (GB = 10⁹ bytes)")
    ax.set_ylabel("model and training setup")
    ax.legend(title="component", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.78)
    return plotting.save_figure(fig, ctx.outdir, "C18.figure.memory_plan")


def _mib(x: float) -> float:
    return round(x / calc.MiB, 3)


def _tables(
    grid: list[dict[str, Any]],
    per_opt: list[dict[str, Any]],
    rss_rows: list[dict[str, Any]],
    noise: list[int],
) -> list[Table]:
    def rec(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "optimizer": r["optimizer"],
            "precision": r["precision"],
            "batch": r["batch"],
            "seq": r["seq"],
            "measured peak (MiB)": _mib(r["measured_peak"]),
            "exact model (MiB)": _mib(r["estimate"]["phase_peak"] + r["allocator_overhead"]),
            "exact err (%)": round(100 * r["exact_rel_err"], 2),
            "allocator overhead (MiB)": _mib(r["allocator_overhead"]),
            "reserved peak (MiB)": _mib(r["reserved_peak"]) if r.get("reserved_peak") else "CPU: n/a",
            "CUDA context (MiB)": _mib(r["cuda_context"])
            if r.get("cuda_context") is not None
            else "CPU: n/a",
            "sum of terms (MiB)": _mib(r["estimate"]["sum_of_terms"]),
            "notes as written (MiB)": _mib(r["notes_literal"]),
            "notes err (%)": round(100 * r["notes_literal_rel_err"], 1),
            "notes additive (MiB)": _mib(r["notes_additive"]),
            "additive err (%)": round(100 * r["notes_additive_rel_err"], 1),
            "activations (MiB)": _mib(r["saved_activations"]),
            "activations / model": round(r["activation_over_model"], 3),
        }

    tables = [
        Table.from_records(
            "grid",
            Msg("C18.table.grid.caption"),
            [rec(g) for g in grid],
        ),
        Table.from_records(
            "optimizers",
            Msg("C18.table.optimizers.caption"),
            [
                {
                    **rec(r),
                    "optimizer state (B/param)": round(r["optimizer_bytes_per_param"], 4),
                    "notes' optimizer factor (B/param)": "–".join(
                        f"{v:g}" for v in sorted(set(calc.NOTES_OPTIMIZER_BYTES[NOTES_OPT[r["optimizer"]]]))
                    ),
                    "gradients (B/param)": round(r["gradient_bytes_per_param"], 4),
                    "weights+grads+state (B/param)": round(r["model_state_bytes_per_param"], 3),
                }
                for r in per_opt
            ],
        ),
    ]
    if rss_rows:
        tables.append(
            Table.from_records(
                "rss_check",
                Msg("C18.table.rss_check.caption", noise=list(noise)),
                [
                    {
                        "batch": r["batch"],
                        "seq": r["seq"],
                        "RSS peak growth (MiB)": f"{_mib(r['rss_peak_delta_mean'])} ± {_mib(r['rss_peak_delta_std'])}",
                        "tracked step growth (MiB)": _mib(r["tracked_step_delta"]),
                        "RSS / tracked": round(r["rss_over_tracked"], 4),
                    }
                    for r in rss_rows
                ],
            )
        )
    return tables


def _figure_grid(ctx: ConceptContext, grid: list[dict[str, Any]]) -> Any:
    recs = []
    for g in grid:
        for label, value in (
            ("measured", g["measured_peak"]),
            ("exact model", g["estimate"]["phase_peak"]),
            ("notes, as written", g["notes_literal"]),
            ("notes, factors added", g["notes_additive"]),
        ):
            recs.append(
                {
                    "tokens per step (batch × seq)": g["tokens"],
                    "seq": g["seq"],
                    "source": label,
                    "peak memory (MiB)": value / calc.MiB,
                }
            )
    frame = pd.DataFrame(recs)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    lines = frame[frame["source"] != "measured"]
    sns.lineplot(
        lines,
        x="tokens per step (batch × seq)",
        y="peak memory (MiB)",
        hue="source",
        units="seq",
        estimator=None,
        palette=["tab:blue", "tab:green", "tab:red"],
        ax=ax,
    )
    measured = frame[frame["source"] == "measured"]
    ax.scatter(
        measured["tokens per step (batch × seq)"],
        measured["peak memory (MiB)"],
        color="black",
        s=40,
        marker="o",
        zorder=5,
        label="measured",
    )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens per step, batch × sequence length (tokens, log₂ scale)")
    ax.set_ylabel("peak memory of one step (MiB)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.75)
    return plotting.save_figure(fig, ctx.outdir, "C18.figure.peak_vs_tokens")


def _figure_breakdown(ctx: ConceptContext, per_opt: list[dict[str, Any]]) -> Any:
    """Bytes per parameter of each term, per optimizer, measured from the tensors themselves."""
    recs = []
    for r in per_opt:
        n = r["params"]
        parts = {
            "weights": calc.precision(r["precision"]).weight,
            "gradients": r["gradient_bytes"] / n,
            "optimizer state (incl. FP32 master)": r["optimizer_state_bytes"] / n,
        }
        for cat, value in parts.items():
            recs.append({"optimizer": f"{r['optimizer']} ({r['precision']})", "term": cat, "B/param": value})
    frame = pd.DataFrame(recs).pivot(index="optimizer", columns="term", values="B/param")
    frame = frame[["weights", "gradients", "optimizer state (incl. FP32 master)"]]
    fig, ax = plt.subplots(figsize=(9, 4))
    frame.plot(kind="barh", stacked=True, ax=ax, color=sns.color_palette("colorblind", 3), width=0.7)
    for g, label in ((12, "notes: 2 + 2 + 8"), (16, "ZeRO: 16")):
        ax.axvline(g, color="black", linestyle=":", linewidth=0.8)
        ax.text(g, 1.0, label, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("bytes per parameter (B/param), measured from the tensors")
    ax.set_ylabel("optimizer (weight precision)")
    ax.legend(title="term", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.72)
    return plotting.save_figure(fig, ctx.outdir, "C18.figure.breakdown_by_optimizer")


def _figure_fraction(ctx: ConceptContext, grid: list[dict[str, Any]]) -> Any:
    frame = pd.DataFrame(
        [{"batch size": g["batch"], "seq": g["seq"], "ratio": g["activation_over_model"]} for g in grid]
    )
    fig, ax = plt.subplots(figsize=(8, 4))
    lo, hi = calc.NOTES_ACTIVATION_FRACTION
    ax.axhspan(lo, hi, color="grey", alpha=0.3, label="notes: 0.20–0.30")
    sns.lineplot(frame, x="seq", y="ratio", hue="batch size", marker="o", palette="viridis", ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens, log₂ scale)")
    ax.set_ylabel("activation bytes / weight bytes (ratio, log scale)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.75)
    return plotting.save_figure(fig, ctx.outdir, "C18.figure.activation_fraction")


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    mixed = m.get("mixed_model_state_bytes_per_param")
    fit = m["korthikanti_fit"]
    return [
        LiteratureCheck(
            "Rajbhandari et al. 2020 (ZeRO), §3.1",
            Msg("C18.literature.zero.finding"),
            None if mixed is None else abs(mixed - 16) <= 0.5,
            Msg("C18.literature.zero.not_measured")
            if mixed is None
            else Msg("C18.literature.zero.note", mixed=mixed),
        ),
        LiteratureCheck(
            "Korthikanti et al. 2022, eq. 1",
            Msg("C18.literature.korthikanti.finding"),
            None if math.isnan(fit["c0"]) else fit["max_residual"] < 0.01,
            Msg("C18.literature.korthikanti.note", c0=fit["c0"], c1=fit["c1"], residual=fit["max_residual"]),
        ),
    ]


def _per_param(value: float | None) -> Msg:
    """'8.00 B/param', or 'not measured' (for a correction)."""
    if value is None:
        return Msg("C18.reason.not_measured")
    return Msg("C18.reason.per_param", value=value)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    tol = metrics["tolerance"]
    exact = metrics["exact_max_abs_rel_err"]
    out = VerdictOf(Kind.EXPERIMENT, primary=Msg("C18.primary"))
    if exact > tol:
        return out.branch(Label.INCONCLUSIVE, "C18.verdict.calculator_off", exact=exact, tol_pct=100 * tol)
    share = metrics.get("activation_fraction_share_in_notes_band")
    if share is None:
        out.limited.append(Msg("C18.limited.notes_models"))
        return out.branch(Label.INCONCLUSIVE, "C18.verdict.no_notes_models")
    adam = metrics.get("adam_state_bytes_per_param")
    grad = metrics.get("fp32_gradient_bytes_per_param")
    sgd = metrics.get("sgd_state_bytes_per_param")
    ada = metrics.get("adafactor_state_bytes_per_param")
    mixed = metrics.get("mixed_model_state_bytes_per_param")
    factors_ok = (
        adam is not None
        and abs(adam - 8) <= 0.5
        and grad is not None
        and abs(grad - 4) <= 0.1
        and (sgd is None or sgd <= 0.01)
    )
    literal = metrics["notes_literal_median_rel_err"]
    additive = metrics["notes_additive_median_abs_rel_err"]
    lo, hi = metrics["activation_fraction_min"], metrics["activation_fraction_max"]
    n = metrics.get("notes_points", 0)
    omitted = (
        Msg("C18.reason.omitted_measured", mixed=mixed) if mixed is not None else Msg("C18.reason.omitted")
    )
    ada_text = (
        Msg("C18.reason.adafactor", ada=ada) if ada is not None else Msg("C18.reason.adafactor_missing")
    )
    facts = Msg(
        "C18.reason.facts",
        n=n,
        literal=literal,
        additive=additive,
        lo=lo,
        hi=hi,
        share=share,
        omitted=omitted,
        adafactor=ada_text,
    )
    small = metrics.get("small_notes_literal_median_rel_err")
    validated = Msg(
        "C18.reason.validated",
        exact=exact,
        small_part=Msg("C18.reason.validated_small", small=small) if small is not None else empty(),
    )
    common = {"facts": facts, "validated": validated}
    if abs(literal) <= tol and share >= 0.5 and factors_ok:
        return out.branch(Label.SUPPORTED, "C18.verdict.supported", **common)
    if factors_ok:
        return out.branch(Label.PARTLY, "C18.verdict.factors_hold", **common, adam=adam, grad=grad)
    return out.branch(
        Label.NOT_SUPPORTED,
        "C18.verdict.factors_wrong",
        **common,
        adam=adam,
        grad=grad,
        sgd=sgd,
        adam_m=_per_param(adam),
        grad_m=_per_param(grad),
        sgd_m=_per_param(sgd),
    )
