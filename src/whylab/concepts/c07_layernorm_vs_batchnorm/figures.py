"""C07's figures, tables and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts import _bench_figures as bench_figures
from whylab.concepts import _bench_stats as bench_stats
from whylab.concepts._settle_figures import difference_figure, tuning_table
from whylab.concepts.c07_layernorm_vs_batchnorm.judged import early_text
from whylab.concepts.c07_layernorm_vs_batchnorm.verdict import per_seed_of
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table

NORM_NAMES = {
    "layer": "LayerNorm",
    "batch": "BatchNorm",
    "masked_batch": "masked BatchNorm",
    "rms": "RMSNorm",
    "none": "no norm",
}


def _table(metrics: Mapping[str, Any], norms: Sequence[str]) -> Table:
    records = []
    for norm in norms:
        m = metrics["norms"][norm]
        records.append(
            {
                "norm": NORM_NAMES[norm],
                "validation loss (nats/token)": bench_stats.fmt(m["eval_loss"], 4),
                "loss with batch statistics (nats/token)": bench_stats.fmt(m["batch_stats_loss"], 4),
                "eval-mode gap (nats/token)": bench_stats.fmt(m["mode_gap"], 3),
                "change, other sentences swapped": bench_stats.fmt(m["mates_padded"], 3),
                "change, other rows swapped, no PAD": bench_stats.fmt(m["mates_nopad"], 3),
                "change, extra PAD columns": bench_stats.fmt(m["padding"], 3),
                "change in eval mode": bench_stats.fmt(m["eval_mode"], 3),
                "change of earlier logits when later tokens change": bench_stats.fmt(m["future_leak"], 3),
            }
        )
    return Table.from_records(
        "norms",
        Msg("C07.table.norms.caption"),
        records,
    )


def _paired_table(metrics: Mapping[str, Any]) -> Table:
    names = {
        "reason_naive_minus_masked": "the reason: naive BatchNorm − masked BatchNorm",
        "preference_masked_minus_layer": "the preference: masked BatchNorm − LayerNorm",
        "naive_minus_layer": "(shown) naive BatchNorm − LayerNorm",
    }
    return Table.from_records(
        "paired",
        Msg("C07.table.paired.caption", min_gain=metrics["min_loss_gain"]),
        [
            {"comparison": names[k], "paired difference": bench_stats.describe(v, "nats/token")}
            for k, v in metrics["paired"].items()
        ],
    )


def _figures(
    outdir: Path, histories: Mapping[str, Sequence[Any]], metrics: Mapping[str, Any], norms: Sequence[str]
) -> list[FigureRef]:
    figs = [
        bench_figures.plot_curves(
            histories,
            outdir,
            "training_curves",
            Msg("C07.figure.training_curves.title"),
            Msg("C07.figure.training_curves.caption"),
        )
    ]

    floor = 1e-9
    rows = []
    for norm in norms:
        for point in metrics["padding_curves"][norm]:
            rows.append(
                {
                    "norm": NORM_NAMES[norm],
                    "PAD share of the batch (%)": 100 * point["pad_fraction"],
                    "change": max(point["change"], floor),
                }
            )
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(
        data=pd.DataFrame(rows), x="PAD share of the batch (%)", y="change", hue="norm", marker="o", ax=ax
    )
    ax.set_yscale("log")
    ax.axvline(100 * metrics["reference_pad_fraction"], color="grey", linestyle=":")
    ax.set_xlabel("PAD share of the batch (% of positions)")
    ax.set_ylabel("relative change of one sentence's logits (ratio)")
    figs.append(plotting.save_figure(fig, outdir, "C07.figure.change_vs_padding", floor=floor))

    rows = []
    labels = {
        "mates_padded": "other\nsentences\nswapped",
        "mates_nopad": "other rows\nswapped\n(no PAD)",
        "padding": "extra PAD\ncolumns",
        "eval_mode": "other\nsentences,\neval mode",
        "future_leak": "later\ntokens\nchanged",
    }
    for norm in norms:
        for key, label in labels.items():
            for v in bench_stats.values(metrics["norms"][norm][key]):
                rows.append({"norm": NORM_NAMES[norm], "batch change": label, "change": max(v, floor)})
    fig, ax = plt.subplots(figsize=(10, 4.6), layout="constrained")
    sns.barplot(data=pd.DataFrame(rows), x="batch change", y="change", hue="norm", errorbar="sd", ax=ax)
    ax.set_yscale("log")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="norm")
    ax.set_xlabel("what changes in the sentence's batch")
    ax.set_ylabel("relative change of the logits (ratio)")
    figs.append(plotting.save_figure(fig, outdir, "C07.figure.batch_dependence", floor=floor))
    return figs


def _settle_figure(outdir: Path, metrics: Mapping[str, Any]) -> FigureRef:
    names = {
        "reason": "the reason: naive BatchNorm − masked BatchNorm",
        "preference": "the preference: masked BatchNorm − LayerNorm",
    }
    return difference_figure(
        outdir,
        "C07.figure.settle",
        {names[k]: c for k, c in metrics["difference_curves"].items()},
        metrics["settle"],
        "paired validation-loss difference (nats/token)",
        margin=metrics["min_loss_gain"],
    )


def _shen(metrics: Mapping[str, Any]) -> LiteratureCheck:
    stats = metrics.get("batchnorm_statistics", {})
    fluct = stats.get("batch_fluctuation", {}).get("mean")
    shift = stats.get("pad_mean_shift", {}).get("mean")
    eff = metrics["paired"]["naive_minus_layer"]["effect"]
    agrees: bool | None = True if eff == 1 else False if eff == -1 else None
    not_measured = Msg("C07.literature.shen.not_measured")
    tail = (
        Msg("C07.literature.shen.within_noise")
        if agrees is None
        else Msg("C07.literature.shen.batchnorm_wins", trend=early_text(metrics))
        if agrees is False
        else empty()
    )
    return LiteratureCheck(
        source="Shen et al. 2020, PowerNorm: Rethinking Batch Normalization in Transformers",
        finding=Msg("C07.literature.shen.finding"),
        agrees=agrees,
        note=Msg(
            "C07.literature.shen.note",
            layer=bench_stats.fmt(metrics["norms"]["layer"]["eval_loss"], 4),
            batch=bench_stats.fmt(metrics["norms"]["batch"]["eval_loss"], 4),
            fluctuation=f"{fluct:.3f}" if fluct is not None else not_measured,
            shift=f"{shift:.3f}" if shift is not None else not_measured,
            tail=tail,
        ),
    )


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    per_seed = per_seed_of(measured)
    norms: list[str] = list(measured.settings["norms"])
    seeds = [int(r["seed"]) for r in per_seed]
    histories = {
        NORM_NAMES[n]: [bench_figures.curve(r["norms"][n]["curve"]) for r in per_seed] for n in norms
    }
    return Evidence(
        method=Msg(
            "C07.method",
            pad_share=metrics["pad_fraction_train"],
            n_seeds=len(seeds),
            rms=Msg("C07.method_rms") if "rms" in norms else empty(),
        ),
        metrics=metrics,
        seeds=seeds,
        tables=[
            _table(metrics, norms),
            _paired_table(metrics),
            tuning_table("tuning", Msg("C07.table.tuning.caption"), metrics["tuning"], NORM_NAMES),
        ],
        figures=[*_figures(ctx.outdir, histories, metrics, norms), _settle_figure(ctx.outdir, metrics)],
        literature=[_shen(metrics)],
    )
