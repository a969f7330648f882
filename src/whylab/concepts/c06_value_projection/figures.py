"""C06's figures, tables and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts._bench_figures import attention_rows_figure, curve, plot_curves
from whylab.concepts._bench_stats import describe, fmt
from whylab.concepts._settle_figures import difference_figure, tuning_table
from whylab.concepts.c06_value_projection.arms import TASK_ARMS
from whylab.concepts.c06_value_projection.verdict import (
    interventions,
    lm_loss,
    lm_runs,
    roles_separated,
    task_accuracy,
)
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table

# the rows of the roles table: (intervention, its attention change, its share, what the share counts)
ROLE_ROWS = (
    ("none", None, "accuracy", "answers correct"),
    (
        "value of the matched pair changed",
        "value_swap_attention_tv",
        "value_swap_follows_new_value",
        "answers that follow the new value",
    ),
    (
        "key of the matched pair changed",
        "key_swap_attention_tv",
        "key_swap_keeps_old_answer",
        "answers still giving the old value",
    ),
    (
        "W_v replaced by a random matrix (illustration)",
        "wv_random_attention_tv",
        "wv_random_accuracy",
        "answers correct",
    ),
)


def _roles_table(inter: list[dict[str, float]]) -> Table:
    rows = [
        {
            "intervention": intervention,
            "attention change": fmt([i[tv] for i in inter], notation="f") if tv else "0",
            "accuracy / share": fmt([i[share] for i in inter], notation="f"),
            "what the share counts": counts,
        }
        for intervention, tv, share, counts in ROLE_ROWS
    ]
    return Table.from_records("roles", Msg("C06.table.roles.caption"), rows)


def _ablation_table(measured: Measured, metrics: Mapping[str, Any], n_heads: int) -> Table:
    acc = task_accuracy(measured)
    loss = lm_loss(measured)
    rows = [
        {
            "variant": name,
            "task accuracy": fmt(acc[key], notation="f"),
            "LM validation loss (nats/token)": fmt(metrics["lm_eval_loss"][key], notation="f")
            if key in loss
            else "not trained",
        }
        for name, (key, _, _) in TASK_ARMS.items()
    ] + [
        {
            "variant": "shared baseline (reference)",
            "task accuracy": "not trained",
            "LM validation loss (nats/token)": fmt(metrics["lm_eval_loss"]["baseline"], notation="f"),
        },
        {
            "variant": "paired: W_v − V = X (accuracy); V = X − W_v (loss)",
            "task accuracy": describe(metrics["paired_task_accuracy"], ""),
            "LM validation loss (nats/token)": describe(metrics["paired_lm_loss"], ""),
        },
    ]
    return Table.from_records("ablation", Msg("C06.table.ablation.caption", n_heads=n_heads), rows)


LM_NAMES = {"w_v": "learned W_v (no W_o, 1 head)", "v_is_x": "V = X (no W_o, 1 head)"}


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    per_seed = measured.per_seed
    seeds = [int(r["seed"]) for r in per_seed]
    tc = ctx.settings["task"]
    inter = interventions(measured)
    roles = metrics["roles"]
    runs = lm_runs(measured)
    tables = [
        _roles_table(inter),
        _ablation_table(measured, metrics, ctx.settings["model"]["n_heads"]),
        tuning_table("tuning", Msg("C06.table.tuning.caption"), metrics["tuning"], LM_NAMES),
    ]
    figures = [
        _roles_figure(inter, ctx),
        _ablation_figure(per_seed, metrics["task"]["chance_accuracy"], ctx),
        _attention_figure(per_seed[0], ctx),
        plot_curves(
            {
                "learned W_v (no W_o, 1 head)": [curve(r["w_v"]["curve"]) for r in runs],
                "V = X (no W_o, 1 head)": [curve(r["v_is_x"]["curve"]) for r in runs],
                "shared baseline (reference)": [curve(r["baseline"]["curve"]) for r in runs],
            },
            ctx.outdir,
            "lm_curves",
            Msg("C06.figure.lm_curves.title"),
            Msg("C06.figure.lm_curves.caption"),
        ),
        difference_figure(
            ctx.outdir,
            "C06.figure.settle",
            {"V = X − learned W_v": metrics["difference_curve"]},
            {"lm": metrics["settle"]},
            "paired LM validation-loss difference (nats/token)",
            margin=metrics["thresholds"]["min_loss_gain"],
        ),
    ]
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2",
            Msg("C06.literature.vaswani.finding"),
            agrees=roles_separated(metrics) if len(seeds) > 1 else None,
            note=Msg(
                "C06.literature.vaswani.note",
                value_tv=roles["value_swap_attention_tv"]["mean"],
                follow=roles["value_swap_follows_new_value"]["mean"],
                key_tv=roles["key_swap_attention_tv"]["mean"],
            ),
        )
    ]
    method = Msg("C06.method", n_pairs=tc["n_pairs"], n_keys=tc["n_keys"], n_values=tc["n_values"])
    return Evidence(
        method=method, metrics=metrics, seeds=seeds, tables=tables, figures=figures, literature=literature
    )


def _roles_figure(inter: list[dict[str, float]], ctx: ConceptContext) -> Any:
    labels = {
        "value_swap": "value changed",
        "key_swap": "key changed",
        "wv_random": "W_v randomised\n(illustration)",
    }
    rows = []
    for i in inter:
        for key, label in labels.items():
            rows.append(
                {
                    "intervention": label,
                    "quantity": "attention change (TV)",
                    "value": i[f"{key}_attention_tv"],
                }
            )
        rows.append(
            {
                "intervention": "value changed",
                "quantity": "answer follows new value",
                "value": i["value_swap_follows_new_value"],
            }
        )
        rows.append(
            {
                "intervention": "key changed",
                "quantity": "answer still old value",
                "value": i["key_swap_keeps_old_answer"],
            }
        )
        rows.append(
            {"intervention": labels["wv_random"], "quantity": "accuracy", "value": i["wv_random_accuracy"]}
        )
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(9.5, 4.2), layout="constrained")
    sns.barplot(data=frame, x="intervention", y="value", hue="quantity", errorbar="sd", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="quantity")
    ax.set_xlabel("intervention on the trained model (learned W_v)")
    ax.set_ylabel("fraction (0–1)")
    return plotting.save_figure(fig, ctx.outdir, "C06.figure.roles")


def _ablation_figure(per_seed: list[dict[str, Any]], chance: float, ctx: ConceptContext) -> Any:
    frame = pd.DataFrame(
        [
            {"variant": name.replace(" (", "\n("), "accuracy": r["task"][key]["accuracy"]}
            for r in per_seed
            for name, (key, _, _) in TASK_ARMS.items()
        ]
    )
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.barplot(data=frame, x="variant", y="accuracy", errorbar="sd", ax=ax, alpha=0.7)
    sns.stripplot(data=frame, x="variant", y="accuracy", ax=ax, color="black", size=5)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("value path (one head)")
    ax.set_ylabel("task accuracy (fraction correct)")
    return plotting.save_figure(fig, ctx.outdir, "C06.figure.ablation", chance=chance)


def _attention_figure(r: Mapping[str, Any], ctx: ConceptContext) -> Any:
    t = r["task"]["w_v"]
    panels = {"learned W_v": (np.asarray(t["map_rows"], dtype=float), list(t["map_positions"]))}
    return attention_rows_figure(
        panels,
        ctx.outdir,
        "attention_map",
        Msg("C06.figure.attention_map.title", seed=r["seed"]),
        Msg("C06.figure.attention_map.caption"),
        "key position (index; last = the query token)",
    )
