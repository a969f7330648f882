"""C17's tables, figures and literature checks, drawn from the measurements and metrics."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts.c17_model_memory.verdict import NOTES_QUOTES, SPEC
from whylab.concepts.context import ConceptContext, Measured
from whylab.memory import calculator
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    counts: list[dict[str, Any]] = metrics["counts"]
    nrows: list[dict[str, Any]] = metrics["notes_rows"]
    fmts: dict[str, dict[str, Any]] = metrics["formats"]
    skipped: list[str] = []
    missing = [n for n in NOTES_QUOTES if n not in {c["model"] for c in counts}]
    if missing:
        skipped.append(Msg("C17.skipped.missing_examples", missing=missing))
    skipped += [Msg("C17.skipped.format_failed", **f) for f in measured.whole["failed_formats"]]
    figures = [_figure_models(ctx, counts, nrows)] + ([_figure_formats(ctx, fmts)] if fmts else [])
    return Evidence(
        method=Msg("C17.method"),
        metrics=metrics,
        seeds=measured.seeds[:1],
        tables=_tables(counts, nrows, fmts, int(measured.settings["repeats"])),
        figures=figures,
        literature=_literature(counts),
        skipped=skipped,
    )


def _tables(
    counts: list[dict[str, Any]], nrows: list[dict[str, Any]], fmts: dict[str, dict[str, Any]], repeats: int
) -> list[Table]:
    return [
        Table.from_records(
            "parameter_counts",
            Msg("C17.table.parameter_counts.caption"),
            [
                {
                    "model": c["model"],
                    "family": c["family"],
                    "analytic": c["analytic"],
                    "meta device": c["meta"],
                    "equal": c["match"],
                    "quoted": c["quoted"],
                    "quoted vs exact (%)": None
                    if c["quoted_rel_err"] is None
                    else round(100 * c["quoted_rel_err"], 2),
                    "source of quote": c["source"],
                }
                for c in counts
            ],
        ),
        Table.from_records(
            "notes_vs_exact",
            Msg("C17.table.notes_vs_exact.caption"),
            [
                {
                    "model": r["model"],
                    "dtype": r["dtype"],
                    "notes": f"{r['notes']:g} {r['unit']}",
                    "exact": f"{r['exact_decimal']:.1f} {r['unit']}",
                    "error (%)": round(100 * r["rel_err_decimal"], 2),
                    "exact (binary)": f"{r['exact_binary']:.1f} {r['binary_unit']}",
                    "error if read as binary (%)": round(100 * r["rel_err_if_binary"], 2),
                }
                for r in nrows
            ],
        ),
        Table.from_records(
            "measured_formats",
            Msg("C17.table.measured_formats.caption", repeats=repeats),
            [
                {
                    "format": k,
                    "library": v["library"],
                    "layout": v["description"],
                    "bits per weight (layers)": round(8 * v["layer_bytes_per_value"], 2),
                    "nominal B/value": v["nominal_bytes_per_value"],
                    "measured B/value (quantized layers)": round(v["layer_bytes_per_value"], 4),
                    "ratio (layers)": round(v["layer_ratio"], 4),
                    "model bytes": v["model_bytes"],
                    "params × nominal": int(v["model_nominal_bytes"]),
                    "ratio (whole model)": round(v["model_ratio"], 4),
                    "RSS growth (MiB)": _mib(v["rss_resident_mean"], v["rss_resident_std"], v["rss_n"]),
                }
                for k, v in fmts.items()
            ],
        ),
    ]


def _literature(counts: list[dict[str, Any]]) -> list[LiteratureCheck]:
    gpt3 = next((c for c in counts if c["model"] == "gpt3-175b"), None)
    return [
        LiteratureCheck(
            "Devlin et al. 2019 (BERT), §3",
            Msg("C17.literature.bert.finding"),
            _agree_count(counts, "bert-base"),
            _count_note(counts, "bert-base"),
        ),
        LiteratureCheck(
            "Brown et al. 2020 (GPT-3), Table 2.1",
            Msg("C17.literature.gpt3.finding"),
            _agree_count(counts, "gpt3-175b"),
            _count_note(counts, "gpt3-175b") if gpt3 else Msg("C17.literature.count.not_counted"),
        ),
    ]


def _mib(mean: float | None, std: float | None, n: int) -> str:
    if n == 0:
        return "not measured"
    # one repeat has no spread: NaN, None through JSON
    mean, std = (math.nan if x is None else x for x in (mean, std))
    return f"{mean / calculator.MiB:.2f} ± {std / calculator.MiB:.2f} (n={n})"


def _agree_count(counts: list[dict[str, Any]], name: str) -> bool | None:
    row = next((c for c in counts if c["model"] == name), None)
    if row is None or row["quoted_rel_err"] is None:
        return None
    return bool(abs(row["quoted_rel_err"]) <= SPEC.threshold("quoted_count_agreement"))


def _count_note(counts: list[dict[str, Any]], name: str) -> Msg:
    row = next((c for c in counts if c["model"] == name), None)
    if row is None:
        return Msg("C17.literature.count.not_counted_run")
    return Msg(
        "C17.literature.count.note", exact=row["meta"], quoted=row["quoted"], rel=row["quoted_rel_err"]
    )


def _figure_models(ctx: ConceptContext, counts: list[dict[str, Any]], nrows: list[dict[str, Any]]) -> Any:
    records = []
    for c in counts:
        for dtype in ("fp32", "fp16", "int8", "int4"):
            records.append(
                {
                    "model": c["model"],
                    "dtype": dtype,
                    "GB": calculator.model_bytes(c["meta"], dtype) / calculator.GB,
                }
            )
    frame = pd.DataFrame(records)
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    sns.barplot(frame, x="model", y="GB", hue="dtype", ax=ax)
    notes = pd.DataFrame(
        [
            {
                "model": r["model"],
                "dtype": r["dtype"],
                "GB": r["notes"] * (1e-3 if r["unit"] == "MB" else 1.0),
            }
            for r in nrows
        ]
    )
    if not notes.empty:
        order = list(frame["model"].unique())
        hues = ["fp32", "fp16", "int8", "int4"]
        width = 0.8 / len(hues)
        xs = [
            order.index(m) - 0.4 + width * (hues.index(d) + 0.5)
            for m, d in zip(notes["model"], notes["dtype"], strict=True)
        ]
        ax.scatter(xs, notes["GB"], color="black", marker="x", zorder=5, label="notes' number")
    ax.set_yscale("log")
    ax.set_xlabel("model (exact parameter count from its config)")
    ax.set_ylabel("model memory (GB = 10⁹ bytes, log scale)")
    ax.legend(title="dtype", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.8)
    return plotting.save_figure(fig, ctx.outdir, "C17.figure.model_memory_by_dtype")


def _figure_formats(ctx: ConceptContext, fmts: dict[str, dict[str, Any]]) -> Any:
    frame = pd.DataFrame(
        [
            {
                "format": k,
                "measured (quantized layers)": v["layer_bytes_per_value"],
                "nominal": v["nominal_bytes_per_value"],
                "whole model": v["model_bytes"] / v["params"],
            }
            for k, v in fmts.items()
        ]
    )
    long = frame.melt(
        id_vars="format",
        value_vars=["nominal", "measured (quantized layers)", "whole model"],
        var_name="quantity",
        value_name="bytes per value",
    )
    fig, ax = plt.subplots(figsize=(10, 4))
    sns.barplot(long, x="format", y="bytes per value", hue="quantity", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.72)

    ax.set_xlabel("storage format of the loaded model")
    ax.set_ylabel("bytes per parameter (B)")
    ax.tick_params(axis="x", rotation=20)
    return plotting.save_figure(fig, ctx.outdir, "C17.figure.measured_bytes_per_value")
