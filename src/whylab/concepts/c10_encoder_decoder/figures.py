"""C10's figures, tables and literature checks, drawn from the measurements and the metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, NullFormatter

from whylab import plotting
from whylab.concepts.c10_encoder_decoder.verdict import (
    KIND_TERMS,
    encoder_min_leak,
    kind_of,
    leaks,
    library_parts,
)
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Spread


def _fmt(values: pd.Series, pattern: str) -> str:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return ""
    sp = Spread.of(vals)
    return pattern.format(sp.mean) + ("" if sp.n < 2 else " ± " + pattern.format(sp.std))


def _figure_offsets(ctx: ConceptContext, frame: pd.DataFrame, tol: float) -> FigureRef:
    fig, ax = plt.subplots(figsize=(8.5, 4))
    sns.lineplot(data=frame, x="offset", y="delta", hue="kind", style="stage", errorbar="sd", ax=ax)
    ax.set_yscale("symlog", linthresh=tol)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.0e}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axvline(0, color="grey", ls=":", lw=1)
    ax.set_xlabel("position relative to the changed token, j − p (tokens)")
    ax.set_ylabel("mean max |Δ logit| at position j (logit units)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)  # never over the data
    return plotting.save_figure(fig, ctx.outdir, "C10.figure.change_by_offset")


def _figure_maps(ctx: ConceptContext, maps: Mapping[str, np.ndarray]) -> FigureRef:
    fig, axes = plt.subplots(1, len(maps), figsize=(5.4 * len(maps), 4.6))
    axes = np.atleast_1d(axes)
    vmax = float(np.quantile(np.concatenate([w.ravel() for w in maps.values()]), 0.98))
    for i, (ax, (kind, w)) in enumerate(zip(axes, maps.items(), strict=True)):
        last = i == len(maps) - 1
        sns.heatmap(
            w,
            ax=ax,
            cmap="viridis",
            vmin=0,
            vmax=vmax,
            square=True,
            cbar=last,
            cbar_kws={"label": "attention weight (probability; top 2% clipped)"},
        )
        step = max(1, w.shape[0] // 8)
        ax.set_xticks(np.arange(0, w.shape[0], step) + 0.5, np.arange(0, w.shape[0], step))
        ax.set_yticks(np.arange(0, w.shape[0], step) + 0.5, np.arange(0, w.shape[0], step))
        ax.set_title(kind)
        ax.set_xlabel("key position (token index)")
        ax.set_ylabel("query position (token index)")
    return plotting.save_figure(fig, ctx.outdir, "C10.figure.attention_maps")


def _loss(value: Any) -> float:
    return math.nan if value is None else float(value)


def _figure_curves(ctx: ConceptContext, curves: Mapping[str, list[dict[str, Any]]]) -> FigureRef:
    rows = [
        {"kind": kind, "run": i, "step": st, "loss": _loss(v)}
        for kind, hists in curves.items()
        for i, h in enumerate(hists)
        for st, v in zip(h["eval_steps"], h["eval_loss"], strict=True)
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=pd.DataFrame(rows), x="step", y="loss", hue="kind", errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation next-token loss (nats/token)")
    final = {
        kind: Spread.of([_loss(h["final_eval_loss"]) for h in hists]).mean for kind, hists in curves.items()
    }
    gap = [Msg("C10.reason.final_loss", kind=Msg(KIND_TERMS[kind]), loss=v) for kind, v in final.items()]
    return plotting.save_figure(fig, ctx.outdir, "C10.figure.training_curves", losses=gap)


def _library_table(library: Mapping[str, Mapping[str, Any]]) -> Table:
    return Table.from_records(
        "library",
        Msg("C10.table.library.caption"),
        [
            {
                "model": k,
                "role": v["role"],
                "relative leak": f"{v['relative_leak']:.2e}",
                "attention to later tokens": f"{v['future_attention_share']:.3f}",
                "heads per layer (forward)": v["heads_in_forward"],
                "heads of the real model": f"{v['real_heads']} ({v['real_model']})",
                "largest difference between heads' weights": f"{v['head_difference']:.2g}",
            }
            for k, v in library.items()
        ],
    )


def _causality_table(frame: pd.DataFrame) -> Table:
    rows = [
        {
            "model": kind,
            "stage": stage,
            "max |Δ logit| before p": _fmt(g["earlier_max_abs"], "{:.2e}"),
            "mean |Δ logit| at/after p": _fmt(g["later_mean_abs"], "{:.3f}"),
            "relative leak": _fmt(g["relative_leak"], "{:.2e}"),
            "attention to later tokens": _fmt(g["future_attention_share"], "{:.3f}"),
            "final loss (nats/token)": _fmt(g["final_eval_loss"], "{:.3f}") if stage == "trained" else "",
            "seeds": len(g),
        }
        for (kind, stage), g in frame.groupby(["kind", "stage"], sort=False)
    ]
    return Table.from_records("causality", Msg("C10.table.causality.caption"), rows)


def literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    tol = float(metrics["leak_tolerance"])
    min_leak = encoder_min_leak()
    dec, enc = leaks(kind_of(metrics, True)), leaks(kind_of(metrics, False))
    checks = [
        LiteratureCheck(
            "Vaswani et al. 2017, sections 3.1 and 3.2.3",
            Msg("C10.literature.mask.finding"),
            (max(dec) <= tol and min(enc) >= min_leak) if dec and enc else None,
            Msg("C10.literature.mask.note", dec_leak=max(dec), enc_leak=min(enc))
            if dec and enc
            else Msg("C10.literature.mask.no_runs"),
        )
    ]
    lib = metrics.get("library")
    if lib:
        bert, gpt2 = lib["BERT"]["relative_leak"], lib["GPT-2"]["relative_leak"]
        checks.append(
            LiteratureCheck(
                "Devlin et al. 2019 (BERT, bidirectional encoder); Radford et al. 2019 (GPT-2, causal decoder), "
                "as implemented in transformers",
                Msg("C10.literature.bert_gpt2.finding"),
                bool(gpt2 <= tol and bert >= min_leak),
                Msg("C10.literature.bert_gpt2.note", gpt2=gpt2, bert=bert),
            )
        )
        multi = library_parts(metrics)["holds"]["multi-head"]
        checks.append(
            LiteratureCheck(
                "Vaswani et al. 2017, section 3.2.2 (multi-head attention)",
                Msg("C10.literature.multi_head.finding"),
                bool(multi),
                Msg(
                    "C10.literature.multi_head.note",
                    heads=[f"{k} {v['heads_in_forward']}" for k, v in lib.items()],
                ),
            )
        )
    return checks


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    whole = measured.whole
    rows = [{**r, "relative_leak": float(r["relative_leak"])} for r in whole["rows"]]
    tol = float(ctx.settings["leak_tolerance"])
    maps = {kind: np.asarray(w) for kind, w in whole["maps"].items()}
    figures = [_figure_offsets(ctx, pd.DataFrame(whole["offsets"]), tol), _figure_maps(ctx, maps)]
    if whole["curves"]:
        figures.append(_figure_curves(ctx, whole["curves"]))
    tables = [_library_table(metrics["library"])] if "library" in metrics else []
    tables.append(_causality_table(pd.DataFrame(rows)))
    return Evidence(
        method=Msg("C10.method", steps=int(ctx.settings["steps"])),
        metrics=metrics,
        seeds=measured.seeds,
        tables=tables,
        figures=figures,
        literature=literature(metrics),
        skipped=[] if "library" in metrics else [Msg("C10.skipped.library_check")],
    )
