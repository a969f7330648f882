"""C04's figures, tables, method and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts._bench_figures import attention_rows_figure, curve, plot_curves
from whylab.concepts._bench_stats import describe, fmt
from whylab.concepts.c04_qk_projection import KEYS
from whylab.concepts.c04_qk_projection.judged import SPEC
from whylab.concepts.c04_qk_projection.verdict import task_values, verdict
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Label

TASK_MEASURES = {
    "symmetric accuracy": "symmetric task\naccuracy",
    "accuracy": "directed task\naccuracy",
    "partner_attention": "attention\non σ(q)",
    "reverse_attention": "attention\non σ⁻¹(q)",
    "self_attention": "attention\non itself",
}  # measure (of the directed task; "symmetric accuracy": of the symmetric one) -> its label on the x axis
TASK_NAMES = {"task": "directed", "symmetric": "symmetric"}  # measurements' key -> the table's task cell
# judged.mechanism_group -> the mechanism table's group cell
GROUP_CELLS = {"toward": "attends to it", "away": "leaves it out", "mixed": "neither"}


def _summary_rows(per_seed: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    def cell(key: str, measure: str) -> str:
        return fmt(task_values(per_seed, key, measure, None if measure == "accuracy" else 0), notation="f")

    def symmetric(key: str) -> str:
        return fmt(task_values(per_seed, key, "accuracy", None, "symmetric"), notation="f")

    return [
        {
            "variant": v,
            "symmetric-task accuracy": symmetric(k),
            "directed-task accuracy": cell(k, "accuracy"),
            "attention on σ(q)": cell(k, "partner_attention"),
            "attention on σ⁻¹(q)": cell(k, "reverse_attention"),
            "attention on itself": cell(k, "self_attention"),
            "LM validation loss (nats/token)": fmt(metrics["lm_eval_loss"][k], notation="f"),
            "LM self-attention share": fmt([r["lm"][k]["self_share"][0] for r in per_seed], notation="f"),
        }
        for v, k in KEYS.items()
    ]


PAIRED_ROWS = {
    "symmetric task: probability of the right answer": ("paired_symmetric_probability", ""),
    "symmetric task: accuracy": ("paired_symmetric_accuracy", ""),
    "directed task: probability of the right answer": ("paired_task_probability", ""),
    "directed task: accuracy": ("paired_task_accuracy", ""),
    "LM validation loss": ("paired_lm_loss", "nats/token"),
}  # the paired table's rows: comparison -> (metric, unit)


def _mechanism_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task, name in TASK_NAMES.items():
        for variant, key in KEYS.items():
            mech = metrics["mechanism"][task][key]
            steps = metrics[f"{task}_steps_to_learn"][key]
            for i, seed in enumerate(mech["seeds"]):
                group = next(g for g, seeds in mech["groups"].items() if seed in seeds)
                rows.append(
                    {
                        "task": name,
                        "variant": variant,
                        "seed": seed,
                        "attention on the token looked for": round(mech["partner_attention"][i], 3),
                        "attention on itself": round(mech["self_attention"][i], 3),
                        "most attended (share)": round(mech["partner_most"][i], 3),
                        "least attended (share)": round(mech["partner_least"][i], 3),
                        "group": GROUP_CELLS[group],
                        "updates needed": "–" if steps[i] is None else steps[i],
                    }
                )
    return rows


def _tables(per_seed: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]) -> list[Table]:
    share = float(SPEC.threshold("mechanism_share"))
    return [
        Table.from_records("summary", Msg("C04.table.summary.caption"), _summary_rows(per_seed, metrics)),
        Table.from_records(
            "paired",
            Msg("C04.table.paired.caption"),
            [
                {"comparison": name, "paired difference": describe(metrics[key], unit)}
                for name, (key, unit) in PAIRED_ROWS.items()
            ],
        ),
        Table.from_records(
            "mechanism", Msg("C04.table.mechanism.caption", share=share), _mechanism_rows(metrics)
        ),
        Table.from_records(
            "illustration_ko",
            Msg("C04.table.illustration_ko.caption", seed=per_seed[0]["seed"]),
            per_seed[0]["illustration"],
        ),
    ]


def _accuracy_figure(per_seed: Sequence[Mapping[str, Any]], chance: float, ctx: ConceptContext) -> FigureRef:
    rows = []
    for r in per_seed:
        for v, k in KEYS.items():
            for m, label in TASK_MEASURES.items():
                value = r["symmetric"][k]["accuracy"] if m == "symmetric accuracy" else r["task"][k][m]
                rows.append(
                    {
                        "variant": v,
                        "seed": r["seed"],
                        "measure": label,
                        "value": float(value if "accuracy" in m else value[0]),
                    }
                )
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(8.5, 4.4))
    sns.barplot(data=frame, x="measure", y="value", hue="variant", errorbar="sd", ax=ax, alpha=0.7)
    sns.stripplot(
        data=frame,
        x="measure",
        y="value",
        hue="variant",
        dodge=True,
        ax=ax,
        palette="dark:black",
        size=4,
        legend=False,
    )
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1.25)
    ax.legend(loc="upper right", ncols=2, fontsize="small")
    ax.set_xlabel("measure on held-out task sequences")
    ax.set_ylabel("accuracy / attention weight (fraction, 0–1)")
    return plotting.save_figure(fig, ctx.outdir, "C04.figure.relation_task", chance=chance)


def _attention_map_figure(r: Mapping[str, Any], ctx: ConceptContext) -> FigureRef:
    panels = {
        v: (np.asarray(r["task"][k]["map_rows"], dtype=float), list(r["task"][k]["map_positions"]))
        for v, k in KEYS.items()
    }
    return attention_rows_figure(
        panels,
        ctx.outdir,
        "attention_maps",
        Msg("C04.figure.attention_maps.title", seed=r["seed"]),
        Msg("C04.figure.attention_maps.caption"),
        "key position (index; last = the query itself)",
    )


def _agrees(label: Label) -> bool | None:
    if label in (Label.SUPPORTED, Label.PARTLY):
        return True
    return False if label is Label.NOT_SUPPORTED else None


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    per_seed = measured.per_seed
    task_cfg = ctx.settings["task"]
    figures = [
        _accuracy_figure(per_seed, metrics["task"]["chance_accuracy"], ctx),
        _attention_map_figure(per_seed[0], ctx),
        plot_curves(
            {v: [curve(r["lm"][k]["curve"]) for r in per_seed] for v, k in KEYS.items()},
            ctx.outdir,
            "lm_curves",
            Msg("C04.figure.lm_curves.title"),
            Msg("C04.figure.lm_curves.caption"),
        ),
    ]
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.2",
            Msg("C04.literature.vaswani.finding"),
            agrees=_agrees(verdict(metrics).label),
            note=Msg(
                "C04.literature.vaswani.note",
                similar=describe(metrics["paired_symmetric_probability"], ""),
                task=describe(metrics["paired_task_probability"], ""),
                lm=describe(metrics["paired_lm_loss"], "nats/token"),
            ),
        )
    ]
    method = Msg(
        "C04.method",
        context_len=task_cfg["context_len"],
        n_heads=task_cfg["n_heads"],
        ffn=Msg("C04.method_part.ffn_with" if task_cfg["ffn"] else "C04.method_part.ffn_without"),
        init_std=task_cfg["init_std"],
        steps=task_cfg["steps"],
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=[int(r["seed"]) for r in per_seed],
        tables=_tables(per_seed, metrics),
        figures=figures,
        literature=literature,
    )
