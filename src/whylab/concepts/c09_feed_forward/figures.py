"""C09's figures, tables and literature checks, drawn from the measurements and the metrics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts import _bench_figures as bench_figures
from whylab.concepts import _bench_stats as stats
from whylab.concepts.c09_feed_forward.verdict import full_ffn, paired
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import effect


def _tables(metrics: Mapping[str, Any]) -> list[Table]:
    structure = [
        {
            "model": r["model"],
            "FFN path (leaf modules in call order)": r["path"],
            "linear layers": r["linear"],
            "activation": ", ".join(r["activation_types"]) or "none",
            "dropout modules": r["dropout"],
            "norm between the FFN's linear layers": "yes" if r["norm_between_linears"] else "no",
            "norm inside the library's FFN module": "yes" if r["norm_in_library_ffn_module"] else "no",
            "norm position": r["norm_position"],
            "residual check (max abs error)": f"{r['residual_check_error']:.1e}",
        }
        for r in metrics["structure"]
    ]
    shares = [
        {
            "model": r["model"],
            "parameters": r["total"],
            "FFN parameters": r["ffn"],
            "FFN share of all (%)": round(100 * r["ffn_share"], 1),
            "FFN share without embeddings (%)": round(100 * r["ffn_share_non_embedding"], 1),
        }
        for r in metrics["parameter_shares"]
    ]
    ablation = [
        {
            "variant": name,
            "validation loss (nats/token)": stats.fmt(a["loss"], 4),
            "parameters": a["params"],
            "FFN share (%)": round(100 * a["ffn_share"], 1),
            "FFN share without embeddings (%)": round(100 * a["ffn_share_non_embedding"], 1),
        }
        for name, a in metrics["ablation"].items()
    ]
    return [
        Table.from_records("structure", Msg("C09.table.structure.caption"), structure),
        Table.from_records("parameter_shares", Msg("C09.table.parameter_shares.caption"), shares),
        Table.from_records("ablation", Msg("C09.table.ablation.caption"), ablation),
    ]


def _ablation_loss(outdir: Path, metrics: Mapping[str, Any]) -> FigureRef:
    rows = [
        {"variant": name, "loss": v}
        for name, a in metrics["ablation"].items()
        for v in stats.values(a["loss"])
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=pd.DataFrame(rows), x="variant", y="loss", errorbar="sd", ax=ax, color="C0")
    sns.stripplot(data=pd.DataFrame(rows), x="variant", y="loss", ax=ax, color="black", size=4)
    low = min(r["loss"] for r in rows)
    ax.set_ylim(low - 0.3, max(r["loss"] for r in rows) + 0.1)
    ax.set_xlabel("feed-forward variant")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.tick_params(axis="x", labelrotation=20)
    return plotting.save_figure(fig, outdir, "C09.figure.ablation_loss")


def _parameter_share(outdir: Path, metrics: Mapping[str, Any]) -> FigureRef:
    shares = [
        (r["model"].split(" (")[0].replace(" ", "\n", 1), r["ffn_share"], r["ffn_share_non_embedding"])
        for r in metrics["parameter_shares"]
    ]
    base = metrics["ablation"][metrics["baseline"]]
    shares.append(("bench\n(baseline)", base["ffn_share"], base["ffn_share_non_embedding"]))
    rows = [
        {"model": m, "share": 100 * v, "counted over": over}
        for m, all_, body in shares
        for over, v in (("all parameters", all_), ("without embeddings and output layer", body))
    ]
    fig, ax = plt.subplots(figsize=(7, 4.4))
    sns.barplot(data=pd.DataFrame(rows), x="model", y="share", hue="counted over", ax=ax)
    ax.legend(title="counted over", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax.set_xlabel("model")
    ax.set_ylabel("feed-forward share of parameters (%)")
    return plotting.save_figure(fig, outdir, "C09.figure.ffn_parameter_share")


def _figures(outdir: Path, per_seed: list[dict[str, Any]], metrics: Mapping[str, Any]) -> list[FigureRef]:
    histories = {
        name: [bench_figures.curve(r["variants"][name]) for r in per_seed] for name in metrics["ablation"]
    }
    curves = bench_figures.plot_curves(
        histories,
        outdir,
        "training_curves",
        Msg("C09.figure.training_curves.title"),
        Msg("C09.figure.training_curves.caption"),
    )
    return [curves, _ablation_loss(outdir, metrics), _parameter_share(outdir, metrics)]


def literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    by_model = {r["model"]: r for r in metrics["structure"]}
    ablation = metrics["ablation"]
    relu = next((a for n, a in ablation.items() if n.startswith("relu")), None)
    swiglu = next((a for n, a in ablation.items() if n.startswith("swiglu")), None)
    base = ablation[metrics["baseline"]]
    checks = []
    bert = by_model.get("BERT")
    differing = [r["model"] for r in metrics["structure"] if r["norm_between_linears"] or not full_ffn(r)]
    if bert is not None:
        checks.append(
            LiteratureCheck(
                source="Vaswani et al. 2017, section 3.3",
                finding=Msg("C09.literature.vaswani.finding"),
                agrees=not differing,
                note=Msg(
                    "C09.literature.vaswani.note_differs",
                    models=differing,
                    error=bert["residual_check_error"],
                )
                if differing
                else Msg("C09.literature.vaswani.note", error=bert["residual_check_error"]),
            )
        )
    if swiglu is not None and relu is not None:
        test = paired(swiglu["loss"], relu["loss"])  # swiglu - relu, per seed
        eff = effect(test, float(metrics["min_effect"])) if test is not None else 0
        better, worse = eff < 0, eff > 0
        checks.append(
            LiteratureCheck(
                source="Shazeer 2020, GLU Variants Improve Transformer",
                finding=Msg("C09.literature.shazeer.finding"),
                agrees=True if better else (False if worse else None),
                note=Msg(
                    "C09.literature.shazeer.note",
                    swiglu=stats.fmt(swiglu["loss"], 4),
                    relu=stats.fmt(relu["loss"], 4),
                    baseline=stats.fmt(base["loss"], 4),
                    tail=empty() if better or worse else Msg("C09.literature.shazeer.within_noise"),
                ),
            )
        )
    return checks


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    seeds = [int(r["seed"]) for r in measured.per_seed]
    return Evidence(
        method=Msg("C09.method", n_seeds=len(seeds)),
        metrics=metrics,
        seeds=seeds,
        tables=_tables(metrics),
        figures=_figures(ctx.outdir, measured.per_seed, metrics),
        literature=literature(metrics),
    )
