"""C18's tables, figures and literature checks, drawn from the measurements and metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts.c18_training_memory.verdict import SPEC, notes_model_rows
from whylab.concepts.context import ConceptContext, Measured
from whylab.memory import calculator as calc
from whylab.memory import planner
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table

# the measurement methods of whylab.memory.measure, named in the method text
MEASURED_BY = {
    "MemTracker (dispatch-level live tensor bytes)": "C18.measured_by.memtracker",
    "torch.cuda.max_memory_allocated": "C18.measured_by.cuda_max_allocated",
}


def _measured_by(method: str) -> str:
    """A measurement method's name as a catalogue message (an unknown one as it is)."""
    key = MEASURED_BY.get(method)
    return Msg(key) if key else method


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
                        f"{v:g}"
                        for v in sorted(
                            set(calc.NOTES_OPTIMIZER_BYTES[calc.NOTES_OPTIMIZER_OF[r["optimizer"]]])
                        )
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
            None
            if mixed is None
            else abs(mixed - SPEC.threshold("zero_state_bytes_per_param"))
            <= SPEC.threshold("zero_state_tolerance"),
            Msg("C18.literature.zero.not_measured")
            if mixed is None
            else Msg("C18.literature.zero.note", mixed=mixed),
        ),
        LiteratureCheck(
            "Korthikanti et al. 2022, eq. 1",
            Msg("C18.literature.korthikanti.finding"),
            None if _nan(fit["c0"]) else fit["max_residual"] < SPEC.threshold("korthikanti_max_residual"),
            Msg("C18.literature.korthikanti.note", c0=fit["c0"], c1=fit["c1"], residual=fit["max_residual"]),
        ),
    ]


def _nan(x: float | None) -> bool:
    """NaN, or None (a NaN through JSON)."""
    return x is None or math.isnan(x)


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    s, w = measured.settings, measured.whole
    grid, per_opt, plans = metrics["grid"], metrics["per_optimizer"], metrics["plan"]
    notes_rows = metrics["notes_models"]
    skipped: list[str] = [] if w["device"] == "cpu" else [Msg("C18.skipped.rss_cpu_only")]
    skipped += notes_model_rows(list(s["notes_models"]))[1]
    tables = _tables(grid, per_opt, metrics["rss"], metrics["rss_noise_floor_bytes"]) + _notes_tables(
        notes_rows, plans
    )
    figures = [
        _figure_grid(ctx, grid),
        _figure_breakdown(ctx, per_opt),
        _figure_fraction(ctx, grid),
        _figure_notes_models(ctx, notes_rows),
    ]
    if plans:
        figures.append(_figure_plan(ctx, plans))
    return Evidence(
        method=Msg("C18.method", measured_by=_measured_by(grid[0]["method"])),
        metrics=metrics,
        seeds=measured.seeds[:1],
        tables=tables,
        figures=figures,
        literature=_literature(metrics),
        skipped=skipped,
    )
