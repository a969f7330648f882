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
from whylab.memory import calculator as calc
from whylab.memory import measure, training
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, Spread, Verdict

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
    row = {
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
        skipped.append(
            "peak RSS in a fresh process is a CPU measurement; on CUDA the allocator's peak is used"
        )

    metrics = _metrics(s, shape, grid, per_opt, rss_rows, noise)
    tables = _tables(grid, per_opt, rss_rows, noise)
    figures = [_figure_grid(ctx, grid), _figure_breakdown(ctx, per_opt), _figure_fraction(ctx, grid)]
    literature = _literature(metrics)
    method = (
        "A small LlamaForCausalLM (eager attention) is trained one step at a time; the peak of live tensor "
        f"memory in a step is measured ({grid[0]['method']}) with its breakdown into weights, gradients, "
        "optimizer state and activations, over a grid of batch sizes and sequence lengths (AdamW, FP32) and "
        "for each optimizer at one point, and once more as peak RSS growth of a fresh process. Each notes "
        "factor is checked on its own (bytes of optimizer state and gradients per parameter, activations / "
        "model size), and three estimates are set against the measured peak: the notes' formula as written "
        "(base × (opt + grad + act)), the same factors added per parameter, and an exact accounting model."
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=[seed],
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=skipped,
    )


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
    lo, hi = calc.NOTES_ACTIVATION_FRACTION
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
        "notes_literal_median_rel_err": statistics.median(r["notes_literal_rel_err"] for r in rows),
        "notes_literal_min_abs_rel_err": min(abs(r["notes_literal_rel_err"]) for r in rows),
        "notes_additive_median_abs_rel_err": statistics.median(
            abs(r["notes_additive_rel_err"]) for r in rows
        ),
        "activation_fraction_min": min(fractions),
        "activation_fraction_max": max(fractions),
        "activation_fraction_share_in_notes_band": sum(lo <= f <= hi for f in fractions) / len(fractions),
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
    }


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
            "Peak memory of one AdamW FP32 training step across batch × sequence: measured vs "
            "the exact accounting model (on CUDA plus the allocator's bytes beyond this model's tensors "
            "before the step: cuBLAS workspace and whatever earlier measurements left allocated), the sum of terms, and the notes' formula (as written, and "
            "with the factors added per parameter; activation factor 0.25).",
            [rec(g) for g in grid],
        ),
        Table.from_records(
            "optimizers",
            "Each optimizer at the reference point: measured bytes per parameter of "
            "optimizer state and gradients (the notes' factors), and the peak.",
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
                "Process-level check: peak RSS growth of one step in a fresh process (mean ± std over "
                f"repeats) vs the tracked step peak above resident weights and optimizer state; noise floor (RSS growth "
                f"of work that allocates nothing): {', '.join(str(n) for n in noise)} bytes.",
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
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
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
    ax.legend(fontsize=7)
    return plotting.save(
        fig,
        ctx.outdir,
        "peak_vs_tokens",
        "Training-step peak memory: measured vs estimates",
        "Measured peak of live tensor memory in one AdamW FP32 step (black dots) against the exact "
        "accounting model (one line per sequence length) and the notes' formula read two ways, which "
        "does not depend on batch or sequence length.",
    )


def _figure_breakdown(ctx: ConceptContext, per_opt: list[dict[str, Any]]) -> Any:
    recs = []
    for r in per_opt:
        for cat in ("parameters", "gradients", "optimizer", "activations", "temporaries"):
            recs.append(
                {
                    "optimizer": f"{r['optimizer']} ({r['precision']})",
                    "category": cat,
                    "MiB": r["breakdown"].get(cat, 0) / calc.MiB,
                }
            )
    frame = pd.DataFrame(recs).pivot(index="optimizer", columns="category", values="MiB")
    fig, ax = plt.subplots(figsize=(7.5, 4))
    frame.plot(kind="barh", stacked=True, ax=ax, color=sns.color_palette("colorblind", frame.shape[1]))
    ax.set_xlabel("memory at the step's peak (MiB)")
    ax.set_ylabel("optimizer (weight precision)")
    return plotting.save(
        fig,
        ctx.outdir,
        "breakdown_by_optimizer",
        "What the peak is made of, per optimizer",
        "Live tensor bytes at the peak of one step, by category (MemTracker's categories; "
        "gradients are released before the next step, so at the peak they are not yet allocated).",
    )


def _figure_fraction(ctx: ConceptContext, grid: list[dict[str, Any]]) -> Any:
    frame = pd.DataFrame(
        [{"batch size": g["batch"], "seq": g["seq"], "ratio": g["activation_over_model"]} for g in grid]
    )
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lo, hi = calc.NOTES_ACTIVATION_FRACTION
    ax.axhspan(lo, hi, color="grey", alpha=0.3, label="notes: 0.20–0.30")
    sns.lineplot(frame, x="seq", y="ratio", hue="batch size", marker="o", palette="viridis", ax=ax)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens, log₂ scale)")
    ax.set_ylabel("activation bytes / weight bytes (ratio, log scale)")
    ax.legend(fontsize=8)
    return plotting.save(
        fig,
        ctx.outdir,
        "activation_fraction",
        "Activation memory relative to model size",
        "Bytes saved for backward divided by the model's weight bytes, per batch size; the grey "
        "band is the notes' 0.20–0.30, stated as if independent of batch and sequence length.",
    )


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    mixed = m.get("mixed_model_state_bytes_per_param")
    fit = m["korthikanti_fit"]
    return [
        LiteratureCheck(
            "Rajbhandari et al. 2020 (ZeRO), §3.1: mixed-precision Adam holds 16 bytes per parameter "
            "(2 + 2 for 16-bit weights and gradients, 12 for FP32 master weights, momentum, variance)",
            "Weights + gradients + optimizer state per parameter, measured for AdamW with BF16 weights "
            "and an FP32 master copy.",
            None if mixed is None else abs(mixed - 16) <= 0.5,
            "not measured" if mixed is None else f"measured {mixed:.3f} B/param (agreement: within 0.5)",
        ),
        LiteratureCheck(
            "Korthikanti et al. 2022, eq. 1: activations per layer = s·b·h·(34 + 5·a·s/h) bytes "
            "(GPT layer, 16-bit, with dropout)",
            "The same form fitted to the measured per-layer bytes of this FP32 SwiGLU Llama layer "
            "(no dropout): per-layer bytes/(s·b·h) = c0 + c1·a·s/h.",
            None if math.isnan(fit["c0"]) else fit["max_residual"] < 0.01,
            f"fit c0 = {fit['c0']:.2f}, c1 = {fit['c1']:.2f} (paper: 34, 5 at 16 bits with dropout masks and "
            f"a 4h GeLU MLP); max relative residual {fit['max_residual']:.2e} (agreement: the form fits "
            "to within 1%)",
        ),
    ]


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    tol = metrics["tolerance"]
    exact = metrics["exact_max_abs_rel_err"]
    if exact > tol:
        return Verdict(
            Label.INCONCLUSIVE,
            f"The exact accounting model misses the measured peak by up to "
            f"{100 * exact:.1f}% (tolerance {100 * tol:g}%), so the notes' formula cannot be judged "
            "against a trusted breakdown.",
        )
    adam = metrics.get("adam_state_bytes_per_param")
    grad = metrics.get("fp32_gradient_bytes_per_param")
    factors_ok = adam is not None and abs(adam - 8) <= 0.5 and grad is not None and abs(grad - 4) <= 0.1
    literal = metrics["notes_literal_median_rel_err"]
    additive = metrics["notes_additive_median_abs_rel_err"]
    lo, hi = metrics["activation_fraction_min"], metrics["activation_fraction_max"]
    band = metrics["activation_fraction_share_in_notes_band"]
    if abs(literal) <= tol and band >= 0.5:
        return Verdict(
            Label.SUPPORTED,
            f"The notes' formula is within {100 * abs(literal):.1f}% of the measured "
            f"peak (median) and activations are 20–30% of the model at {100 * band:.0f}% of points.",
        )
    facts = (
        f"as written it is off by a median {100 * literal:+.0f}% (it multiplies bytes by bytes per parameter), "
        f"adding the factors per parameter is off by {100 * additive:.0f}%, and activations are "
        f"{lo:.2f}–{hi:.2f}× the model (not 0.20–0.30) across the grid"
    )
    if factors_ok:
        return Verdict(
            Label.PARTLY,
            f"The per-parameter factors hold (Adam state {adam:.2f} B/param, FP32 gradients "
            f"{grad:.2f} B/param; exact model within {100 * exact:.2f}%), but the formula does not: {facts}.",
        )
    return Verdict(
        Label.NOT_SUPPORTED,
        f"Neither the factors (Adam state {adam} B/param, gradients {grad} B/param) "
        f"nor the formula hold: {facts}.",
    )
