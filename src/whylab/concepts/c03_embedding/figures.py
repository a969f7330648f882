"""C03's figures, tables and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts._bench_figures import curve, plot_curves
from whylab.concepts._bench_stats import describe, fmt
from whylab.concepts.c03_embedding import FROZEN, FROZEN_UNIT, LEARNED
from whylab.concepts.c03_embedding.verdict import arms, nan_for_none, verdict
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Label

NAMES = {
    LEARNED: "learned embedding",
    FROZEN: "frozen random embedding (model init)",
    FROZEN_UNIT: "frozen random embedding (unit scale)",
}  # table cells and legend entries (data); in sentences the catalogue's C03.variant.<key>


def frozen_tables(st: Mapping[str, Any], ran: Sequence[str]) -> list[Msg]:
    """The frozen tables this run trained, each with the std it was drawn at."""
    stds = {FROZEN: st["model"].get("init_std", 0.02), FROZEN_UNIT: st.get("frozen_unit_std")}
    return [Msg(f"C03.method_table.{key}", std=stds[key]) for key in ran if key != LEARNED]


def method(st: Mapping[str, Any], ran: Sequence[str]) -> Msg:
    """The method text, naming exactly the frozen tables this run trained (and Holm over them)."""
    frozen = [key for key in ran if key != LEARNED]
    tables = frozen_tables(st, ran)
    holm = Msg("C03.method_holm", n=len(frozen)) if len(frozen) > 1 else empty()
    return Msg("C03.method", tables=tables, holm=holm)


def variant(key: str) -> Msg:
    """A variant's name in a sentence ("frozen random embedding (unit scale)")."""
    return Msg(f"C03.variant.{key}")


def _loss_rows(per_seed: Sequence[Mapping[str, Any]], comparisons: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "variant": NAMES[key],
            "loss before training": fmt(
                nan_for_none([r["runs"][key]["initial_loss"] for r in per_seed]), notation="f"
            ),
            "loss after training": fmt(
                nan_for_none([r["runs"][key]["eval_loss"] for r in per_seed]), notation="f"
            ),
            "paired Δ vs learned (nats/token)": (
                describe(comparisons[key], "") if key in comparisons else "(reference)"
            ),
            "embedding relative change": fmt([r["table_change"][key] for r in per_seed], notation="f"),
        }
        for key in arms(per_seed)
    ]


def _geometry_rows(per_seed: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    r0 = per_seed[0]
    overlap = metrics["neighbour_overlap"]
    k = overlap["k"]
    rows = [
        {
            "measure": Msg("C03.table.geometry.overlap", k=k, tokens=overlap["tokens"]),
            "value": fmt([r["overlap"] for r in per_seed], notation="f"),
            "reference": Msg("C03.table.geometry.overlap_reference", chance=k / (metrics["vocab_size"] - 1)),
        },
        {
            "measure": Msg("C03.table.geometry.spearman"),
            "value": fmt(nan_for_none([r["spearman"] for r in per_seed]), notation="f"),
            "reference": Msg("C03.table.geometry.spearman_reference"),
        },
    ]
    if r0["pairs"]:
        rows.append(
            {
                "measure": Msg("C03.table.geometry.pair_cosine", pairs=r0["pairs"]),
                "value": f"{fmt(nan_for_none([r['pair_cos_before'] for r in per_seed]), notation='f')} → "
                f"{fmt(nan_for_none([r['pair_cos_after'] for r in per_seed]), notation='f')}",
                "reference": Msg("C03.table.geometry.pair_cosine_reference"),
            }
        )
    return rows


def _neighbour_rows(r0: Mapping[str, Any], k: int) -> list[dict[str, Any]]:
    def words(texts: list[str]) -> str:
        return " | ".join(repr(t) for t in texts)

    counts = r0["token_counts"]
    return [
        {
            "token": repr(r0["sample_text"][i]),
            "frequency": int(counts[t]),
            f"{k} nearest before": words(r0["neighbours_before_text"][i]),
            f"{k} nearest after": words(r0["neighbours_after_text"][i]),
        }
        for i, t in enumerate(r0["sample"])
    ]


def _change_vs_frequency_figure(r: Mapping[str, Any], ctx: ConceptContext) -> FigureRef:
    counts = np.asarray(r["token_counts"], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "count": counts + 1,
            "change": np.asarray(r["row_change"], dtype=float),
            "seen in training": np.where(counts > 0, "yes", "no"),
        }
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(
        data=frame, x="count", y="change", hue="seen in training", s=12, alpha=0.6, ax=ax, linewidth=0
    )
    ax.set_xscale("log")
    ax.set_xlabel("token count in the training split + 1 (occurrences, log scale)")
    ax.set_ylabel("relative change of the token's row (‖Δe‖/‖e‖)")
    return plotting.save(
        fig,
        ctx.outdir,
        "change_vs_frequency",
        Msg("C03.figure.change_vs_frequency.title", seed=r["seed"]),
        Msg("C03.figure.change_vs_frequency.caption"),
    )


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    per_seed, st = measured.per_seed, ctx.settings
    seeds = [int(r["seed"]) for r in per_seed]
    r0 = per_seed[0]
    comparisons = metrics["paired_frozen_minus_learned"]
    tables = [
        Table.from_records("loss", Msg("C03.table.loss.caption"), _loss_rows(per_seed, comparisons)),
        Table.from_records("geometry", Msg("C03.table.geometry.caption"), _geometry_rows(per_seed, metrics)),
        Table.from_records(
            "neighbours",
            Msg("C03.table.neighbours.caption", seed=seeds[0]),
            _neighbour_rows(r0, int(st["n_neighbours"])),
        ),
    ]
    figures = [
        plot_curves(
            {NAMES[key]: [curve(r["runs"][key]["curve"]) for r in per_seed] for key in arms(per_seed)},
            ctx.outdir,
            "curves",
            Msg("C03.figure.curves.title"),
            Msg(
                "C03.figure.curves.caption",
                tables=frozen_tables(st, arms(per_seed)),
            ),
        ),
        _change_vs_frequency_figure(r0, ctx),
    ]
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.4",
            Msg("C03.literature.vaswani.finding"),
            agrees=(True if verdict(metrics).label is Label.SUPPORTED else None),
            note=Msg(
                "C03.literature.vaswani.note",
                parts=[
                    Msg("C03.literature.vaswani.part", variant=variant(key), delta=describe(c, "nats/token"))
                    for key, c in comparisons.items()
                ],
            ),
        )
    ]
    return Evidence(
        method=method(st, arms(per_seed)),
        metrics=metrics,
        seeds=seeds,
        tables=tables,
        figures=figures,
        literature=literature,
    )
