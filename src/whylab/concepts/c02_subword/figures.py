"""C02's figures, tables and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from whylab import plotting
from whylab.concepts.c02_subword.verdict import NOTES_WORDS, SPEC, with_expectations
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table

JUDGED = ("monotone", "frequent_whole", "rare_split", "holds")  # in the metrics' rows, not the table's
PER_BAND = (
    ("pieces_per_word", "pieces per word (tokens)", "pieces_per_band"),
    ("share_whole", "share kept whole (fraction)", "whole_share_per_band"),
)


def band_figures(ctx: ConceptContext, band_rows: list[dict[str, Any]]) -> list[FigureRef]:
    """Pieces per word and the share kept whole per band, for tokenizers of the word's language."""
    labels = [label for _, label in sorted({r["band_index"]: r["band"] for r in band_rows}.items())]
    bands = pd.DataFrame(band_rows)
    bands[["pieces_per_word", "share_whole"]] = bands[["pieces_per_word", "share_whole"]].astype(float)
    own = bands[(bands["scope"] == bands["language"]) | (bands["scope"] == "joint")].copy()
    own["tokenizer scope"] = own["scope"].where(own["scope"] == "joint", "own language")
    figures = []
    for value, ylabel, name in PER_BAND:
        grid = sns.relplot(
            own,
            x="band_index",
            y=value,
            hue="algorithm",
            style="vocab_size",
            col="language",
            kind="line",
            marker="o",
            height=3.6,
            aspect=1.2,
        )
        grid.set_axis_labels("word frequency band (count in training split)", ylabel)
        for ax in grid.axes.flat:
            ax.set_xticks(range(len(labels)), labels)
        grid.figure.subplots_adjust(top=0.85)
        title, caption = Msg(f"C02.figure.{name}.title"), Msg(f"C02.figure.{name}.caption")
        figures.append(plotting.save(grid.figure, ctx.outdir, name, title, caption))
    return figures


def compression_figure(ctx: ConceptContext, configs: pd.DataFrame) -> FigureRef:
    """Characters per token by vocabulary size; unknown tokens, subword vs word-level vocabulary."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), layout="constrained")
    sns.lineplot(
        configs,
        x="vocab_size",
        y="chars_per_token",
        hue="algorithm",
        style="language",
        marker="o",
        ax=axes[0],
    )
    axes[0].set_xlabel("vocabulary size (tokens)")
    axes[0].set_ylabel("characters per token (chars)")
    # the curves fill the panel (a larger vocabulary lifts every one), so the legend goes below it
    sns.move_legend(axes[0], "upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False, fontsize=8)
    unk = configs.melt(
        id_vars=["language", "vocab_size"],
        value_vars=["subword_unk_rate", "word_level_oov_rate"],
        var_name="vocabulary",
        value_name="rate",
    )
    sns.barplot(unk, x="language", y="rate", hue="vocabulary", ax=axes[1])
    axes[1].set_xlabel("language")
    axes[1].set_ylabel("unknown tokens in validation (fraction)")
    return plotting.save_figure(fig, ctx.outdir, "C02.figure.compression_and_unknowns")


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    frequent_min = int(ctx.settings["example_frequent_min"])
    per_language: dict[str, dict[str, Any]] = metrics["per_language"]
    config_rows = [{k: v for k, v in c.items() if k not in JUDGED} for c in metrics["configs"]]
    examples = with_expectations(measured.whole["examples"], frequent_min)
    holds_share = SPEC.threshold("holds_share")
    agrees = per_language and all(v["share_monotone"] >= holds_share for v in per_language.values())
    ordered = sorted(examples, key=lambda r: (r["language"] != "ko", r["word"] not in NOTES_WORDS))
    figures = band_figures(ctx, measured.whole["bands"])
    figures.append(compression_figure(ctx, pd.DataFrame(config_rows)))
    return Evidence(
        method=Msg("C02.method", frequent_min=frequent_min),
        metrics=metrics,
        tables=[
            Table.from_records(
                "notes_examples",
                Msg("C02.table.notes_examples.caption"),
                [r for r in ordered if r["word"] in NOTES_WORDS],
            ),
            Table.from_records("examples", Msg("C02.table.examples.caption"), ordered),
            Table.from_records(
                "per_language",
                Msg("C02.table.per_language.caption"),
                [{"language": k, **v} for k, v in per_language.items()],
            ),
            Table.from_records("configs", Msg("C02.table.configs.caption"), config_rows),
        ],
        figures=figures,
        literature=[
            LiteratureCheck(
                "Sennrich et al. 2016; Kudo 2018",
                Msg("C02.literature.subword.finding"),
                bool(agrees),
                Msg("C02.literature.subword.note"),
            )
        ],
    )
