"""C11's figures, tables and literature checks, drawn from the measurements and the metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from whylab import plotting
from whylab.concepts.c11_cross_attention.verdict import SPEC, TOLERANCE, ci, sources
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Spread

PARTS = ("Q", "K", "V", "weights")
INTERVENTIONS = {"memory": "noise on the encoder output", "decoder": "noise on the decoder input"}
WIRINGS = {
    "standard": "standard (Q from the decoder; K, V from the encoder)",
    "notes": "the notes' (Q, K from the encoder; V from the decoder)",
}


def _task_term(task: str, term: str) -> Msg:
    """The task's name in a sentence: ``term`` is "task" (reverse / copy), "example" (reversal /
    copy) or "diagonal" (the anti-diagonal / the diagonal)."""
    return Msg(f"C11.term.{term}.{'reverse' if task == 'reverse' else 'copy'}")


def _tables(metrics: Mapping[str, Any], changes: pd.DataFrame, n_seeds: int, noise: float) -> list[Table]:
    test = metrics["paired_standard_minus_notes"]
    tables = [
        Table.from_records(
            "library_roles",
            Msg(
                "C11.table.library_roles.caption",
                source=metrics["library"][0]["source_length"] if metrics["library"] else "–",
            ),
            [_library_row(r) for r in metrics["library"]],
        )
        if metrics["library"]
        else None,
        Table.from_records(
            "wirings",
            Msg("C11.table.wirings.caption", mean_diff=test["mean_diff"], ci=ci(test)),
            [
                {
                    "seed": seed,
                    "token accuracy, standard": round(a, 4),
                    "token accuracy, notes' wiring": round(b, 4),
                    "sequence accuracy, standard": round(c, 4),
                    "sequence accuracy, notes' wiring": round(d, 4),
                    "token accuracy, standard with cross-attention off": round(e, 4),
                }
                for seed, a, b, c, d, e in zip(
                    range(n_seeds),
                    metrics["token_accuracy"]["standard"],
                    metrics["token_accuracy"]["notes"],
                    metrics["sequence_accuracy"]["standard"],
                    metrics["sequence_accuracy"]["notes"],
                    metrics["token_accuracy_cross_off"],
                    strict=True,
                )
            ],
        ),
        Table.from_records(
            "unequal_lengths",
            Msg("C11.table.unequal_lengths.caption"),
            [
                {
                    "source length": metrics["unequal_lengths"]["source_length"],
                    "target length": metrics["unequal_lengths"]["target_length"],
                    "runs": "yes" if metrics["unequal_lengths"]["runs"] else "no",
                    "error": metrics["unequal_lengths"]["error"],
                    "where": metrics["unequal_lengths"]["where"],
                }
            ],
        ),
    ]
    summary = (
        changes.groupby(["intervention", "layer", "part"])["relative_change"]
        .agg(["mean", "std", "max"])
        .reset_index()
    )
    shapes = metrics["shapes"]
    tables += [
        Table.from_records(
            "interventions",
            Msg("C11.table.interventions.caption", seeds=n_seeds, noise=noise),
            [
                {
                    "intervention": INTERVENTIONS[str(r["intervention"])],
                    "layer": int(r["layer"]),
                    "part": r["part"],
                    "mean": f"{r['mean']:.3g}",
                    "std": "" if pd.isna(r["std"]) else f"{r['std']:.2g}",
                    "max": f"{r['max']:.3g}",
                }
                for r in summary.to_dict("records")
            ],
        ),
        Table.from_records(
            "shapes",
            Msg("C11.table.shapes.caption"),
            [
                {"projection": "W_q (query)", "input shape": str(shapes["q_input"])},
                {"projection": "W_k (key)", "input shape": str(shapes["k_input"])},
                {"projection": "W_v (value)", "input shape": str(shapes["v_input"])},
                {
                    "projection": "source / decoder input length",
                    "input shape": f"{shapes['source_length']} / {shapes['target_length']}",
                },
            ],
        ),
    ]
    return [t for t in tables if t is not None]


def _library_row(r: Mapping[str, Any]) -> dict[str, Any]:
    def num(v: Any) -> str:
        return "–" if v is None else f"{float(v):.2g}"

    row: dict[str, Any] = {
        "model": r["model"],
        "decoder layers with cross-attention": f"{r['cross_attention_layers']}/{r['decoder_layers']}",
    }
    if r["cross_attention_layers"]:
        for p in ("q", "k", "v"):
            row[f"W_{p} input length"] = r[f"{p}_input_length"]
            row[f"W_{p} vs encoder output"] = num(r[f"{p}_vs_encoder_output"])
            row[f"W_{p} moved by source / decoder"] = (
                f"{num(r[f'{p}_moved_by_source'])} / {num(r[f'{p}_moved_by_decoder'])}"
            )
    return row


def _figure_accuracy(ctx: ConceptContext, metrics: Mapping[str, Any]) -> FigureRef:
    rows = [
        {"wiring": WIRINGS[name].split(" (")[0], "seed": i, "measure": measure, "accuracy": v}
        for measure, key in (
            ("token (teacher-forced)", "token_accuracy"),
            ("whole sequence (greedy)", "sequence_accuracy"),
        )
        for name in WIRINGS
        for i, v in enumerate(metrics[key][name])
    ]
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True, layout="constrained")
    for ax, (measure, g) in zip(axes, frame.groupby("measure", sort=False), strict=True):
        for _, pair in g.groupby("seed"):
            ax.plot(pair["wiring"], pair["accuracy"], color="grey", lw=1, alpha=0.7)
        sns.stripplot(
            data=g, x="wiring", y="accuracy", hue="wiring", ax=ax, size=7, jitter=False, legend=False
        )
        ax.axhline(float(metrics["chance_accuracy"]), color="black", ls=":", lw=1)
        if str(measure).startswith("token") and metrics.get("notes_ceiling") is not None:
            ax.axhline(float(metrics["notes_ceiling"]), color="C1", ls="--", lw=1)
        ax.set_title(str(measure))
        ax.set_xlabel("cross-attention wiring")
        ax.set_ylabel("held-out accuracy (fraction)")
        ax.set_ylim(-0.02, 1.05)
    test = metrics["paired_standard_minus_notes"]
    return plotting.save(
        fig,
        ctx.outdir,
        "wirings",
        Msg("C11.figure.wirings.title"),
        Msg(
            "C11.figure.wirings.caption",
            task=_task_term(metrics["task"], "task"),
            symbols=metrics["symbols"],
            mean_diff=test["mean_diff"],
            ci=ci(test),
            n=test["n"],
        ),
    )


def draw_maps(maps: Sequence[np.ndarray], src: Sequence[int], reverse: bool) -> Figure:
    """Heatmaps of the cross-attention per decoder layer, tick labels "position: symbol", upright."""
    fig, axes = plt.subplots(
        1, len(maps), figsize=(4.8 * len(maps) + 1, 4.6), squeeze=False, layout="constrained"
    )
    src_labels = [f"{i}: {tok}" for i, tok in enumerate(src)]
    body = list(src)[::-1] if reverse else list(src)
    tgt_labels = [f"{t}: {tok}" for t, tok in enumerate(body)]
    for i, (ax, w) in enumerate(zip(axes[0], maps, strict=True)):
        sns.heatmap(
            w,
            ax=ax,
            cmap="viridis",
            vmin=0,
            vmax=1,
            cbar=i == len(maps) - 1,
            cbar_kws={"label": "attention weight (probability)"},
        )
        ax.set_xticks(np.arange(len(src_labels)) + 0.5, src_labels, rotation=90)
        ax.set_yticks(np.arange(len(tgt_labels)) + 0.5, tgt_labels, rotation=0)
        ax.set_title(f"decoder layer {i + 1}")
        ax.set_xlabel("source position: symbol (keys, values)")
        ax.set_ylabel("target position: symbol it predicts (queries)")
    return fig


def _figure_maps(ctx: ConceptContext, maps: list[np.ndarray], src: list[int], task: str) -> FigureRef:
    fig = draw_maps(maps, src, task == "reverse")
    name = "reverse" if task == "reverse" else "copy"
    return plotting.save(
        fig,
        ctx.outdir,
        "cross_attention_maps",
        Msg("C11.figure.cross_attention_maps.title"),
        Msg(
            "C11.figure.cross_attention_maps.caption",
            example=_task_term(name, "example"),
            diagonal=_task_term(name, "diagonal"),
        ),
    )


def _figure_interventions(ctx: ConceptContext, changes: pd.DataFrame) -> FigureRef:
    frame = changes.assign(
        intervention=changes["intervention"].map(INTERVENTIONS),
        layer=changes["layer"].map(lambda v: f"layer {v}"),
    )
    grid = sns.catplot(
        data=frame,
        x="part",
        y="relative_change",
        hue="intervention",
        col="layer",
        kind="bar",
        errorbar="sd",
        order=list(PARTS),
        height=3.8,
        aspect=1.1,
    )
    grid.set_titles("{col_name}")
    sns.move_legend(grid, "upper center", bbox_to_anchor=(0.5, 0.02), ncol=2, title=None, frameon=False)
    for ax in grid.axes.flat:
        ax.set_yscale("symlog", linthresh=TOLERANCE)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.0e}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("what is measured in the cross-attention")
    grid.axes.flat[0].set_ylabel("relative change (unitless)")
    grid.figure.tight_layout()
    grid.figure.subplots_adjust(top=0.84)  # room for the title
    return plotting.save_figure(grid.figure, ctx.outdir, "C11.figure.interventions")


def _figure_curves(ctx: ConceptContext, per_seed: Sequence[Mapping[str, Any]]) -> FigureRef:
    rows = [
        {"wiring": WIRINGS[name].split(" (")[0], "seed": r["seed"], "step": st, "loss": float(v)}
        for r in per_seed
        for name in WIRINGS
        for st, v in zip(r[name]["eval_steps"], r[name]["eval_loss"], strict=True)
        if v is not None
    ]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.lineplot(data=pd.DataFrame(rows), x="step", y="loss", hue="wiring", errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("held-out loss (nats/token)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), title="wiring", frameon=False)
    return plotting.save_figure(fig, ctx.outdir, "C11.figure.training_curves")


def _flag(value: bool) -> Msg:
    return Msg(f"C11.term.flag.{'yes' if value else 'no'}")


def literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    src = sources(metrics)
    agrees = src["q_from_decoder"] and src["k_from_encoder"] and src["v_from_encoder"]
    align = [max(a) for a in metrics["alignment"]]
    over_chance = float(SPEC.threshold("alignment_over_chance"))
    checks = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.3",
            Msg("C11.literature.vaswani.finding"),
            bool(agrees),
            Msg(
                "C11.literature.vaswani.note",
                q=_flag(src["q_from_decoder"]),
                k=_flag(src["k_from_encoder"]),
                v=_flag(src["v_from_encoder"]),
            ),
        ),
        LiteratureCheck(
            "Bahdanau et al. 2015 (attention as soft alignment)",
            Msg("C11.literature.bahdanau.finding"),
            bool(min(align) > over_chance * float(metrics["alignment_chance"])) if align else None,
            Msg(
                "C11.literature.bahdanau.note",
                spread=str(Spread.of(align)),
                chance=float(metrics["alignment_chance"]),
            )
            if align
            else empty(),
        ),
    ]
    return checks


def _changes_frame(per_seed: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long table of the standard model's interventions: seed, intervention, part, layer, change."""
    return pd.DataFrame(
        [
            {"seed": r["seed"], "intervention": name, "part": part, "layer": layer + 1, "relative_change": v}
            for r in per_seed
            for name, parts in r["standard"]["changes"].items()
            for part, values in parts.items()
            for layer, v in enumerate(values)
        ]
    )


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    s = ctx.settings
    per_seed = measured.per_seed
    seeds = [int(r["seed"]) for r in per_seed]
    changes = _changes_frame(per_seed)
    maps = [np.asarray(m) for m in per_seed[0]["standard"]["example_maps"]]
    figures = [
        _figure_accuracy(ctx, metrics),
        _figure_maps(ctx, maps, per_seed[0]["example_source"], s["task"]),
        _figure_interventions(ctx, changes),
        _figure_curves(ctx, per_seed),
    ]
    return Evidence(
        method=Msg(
            "C11.method",
            layers=int(s["n_layers"]),
            width=int(s["d_model"]),
            task=_task_term(s["task"], "task"),
            length=int(s["length"]),
            steps=int(s["steps"]),
            seeds=len(seeds),
        ),
        metrics=metrics,
        seeds=seeds,
        tables=_tables(metrics, changes, len(seeds), float(s["noise"])),
        figures=figures,
        literature=literature(metrics),
        skipped=[] if measured.whole["library"] is not None else [Msg("C11.skipped.library_check")],
    )
