"""C20's figures, tables, method and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Spread

MiB = 2**20


def memory_method_text(method: str) -> str:
    """How peak memory was measured: the tracker's description as a message (both languages), or a
    method name that is code (``torch.cuda.max_memory_allocated``) as it is."""
    text = Msg("C20.memory_method.tracker")
    return text if text == method else method


def _tables(
    cases: list[str], diffs: list[dict[str, Any]], mem: list[dict[str, Any]], micros: list[int], repeats: int
) -> list[Table]:
    rows = []
    for case in cases:
        for m in micros:
            sel = [d for d in diffs if d["case"] == case and d["micro"] == m]
            rel = Spread.of([d["rel_diff"] for d in sel])
            loss_gap = Spread.of([d["loss_accumulated"] - d["loss_full"] for d in sel])
            rows.append(
                {
                    "case": case,
                    "micro-batch": m,
                    "‖Δg‖/‖g‖": f"{rel.mean:.2e} ± {rel.std:.1e}",
                    "max |Δg|": f"{max(d['max_abs_diff'] for d in sel):.2e}",
                    "loss gap (nats/token)": f"{loss_gap.mean:+.2e} ± {loss_gap.std:.1e}",
                }
            )
    return [
        Table.from_records("gradients", Msg("C20.table.gradients.caption", repeats=repeats), rows),
        Table.from_records(
            "memory",
            Msg("C20.table.memory.caption", method=memory_method_text(mem[0]["method"]), repeats=repeats),
            [
                {
                    "micro-batch": r["micro"],
                    "accumulation steps": r["accumulation_steps"],
                    "peak (MiB)": round(r["peak_bytes"] / MiB, 3),
                    "activations at peak (MiB)": round(r["activations_at_peak"] / MiB, 3),
                    "step time (ms)": f"{1e3 * r['time_mean_s']:.1f} ± {1e3 * r['time_std_s']:.1f}",
                }
                for r in mem
            ],
        ),
    ]


def _figures(ctx: ConceptContext, diffs: list[dict[str, Any]], mem: list[dict[str, Any]]) -> list[FigureRef]:
    frame = pd.DataFrame(
        [
            {"case": d["case"], "micro-batch": d["micro"], "rel": d["rel_diff"]}
            for d in diffs
            if d["micro"] < max(x["micro"] for x in diffs)
        ]
    )
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.lineplot(frame, x="micro-batch", y="rel", hue="case", marker="o", errorbar="sd", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.68)

    ax.set_yscale("log")
    ax.set_xlabel("micro-batch size (sequences)")
    ax.set_ylabel("‖g_accumulated − g_batch‖ / ‖g_batch‖ (ratio, log)")
    f1 = plotting.save_figure(fig, ctx.outdir, "C20.figure.gradient_difference")
    mframe = pd.DataFrame(
        [
            {"micro-batch": r["micro"], "peak memory (MiB)": r["peak_bytes"] / MiB, "ms": 1e3 * t}
            for r in mem
            for t in r["times_s"]
        ]
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sns.lineplot(mframe, x="micro-batch", y="peak memory (MiB)", marker="o", ax=axes[0])
    axes[0].set_xlabel("micro-batch size (sequences)")
    axes[0].set_ylabel("peak memory of one step (MiB)")
    sns.lineplot(mframe, x="micro-batch", y="ms", marker="o", errorbar="sd", ax=axes[1])
    axes[1].set_xlabel("micro-batch size (sequences)")
    axes[1].set_ylabel("time per optimizer step (ms)")
    f2 = plotting.save_figure(fig, ctx.outdir, "C20.figure.memory_vs_micro")
    return [f1, f2]


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    s = measured.settings
    batch, repeats = int(s["batch_size"]), int(s["repeats"])
    micros: list[int] = measured.whole["micros"]
    diffs, mem = metrics["diffs"], metrics["memory"]
    method = Msg("C20.method", batch=batch, micros=[str(m) for m in micros], repeats=repeats)
    literature = [
        LiteratureCheck(
            "Hugging Face, 'Fixing Gradient Accumulation' (2024; transformers' num_items_in_batch)",
            Msg("C20.literature.hf_fix.finding"),
            metrics["hf_fix_agrees"],
            Msg(
                "C20.literature.hf_fix.note",
                mom=metrics["padded_mean_of_means_max_rel"],
                ts=metrics["padded_token_sum_max_rel"],
            ),
        )
    ]
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(measured.whole["seeds"]),
        tables=_tables(measured.whole["cases"], diffs, mem, micros, repeats),
        figures=_figures(ctx, diffs, mem),
        literature=literature,
    )
