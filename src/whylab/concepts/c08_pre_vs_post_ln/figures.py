"""C08's figures, tables and literature checks, drawn from the measurements and metrics."""

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
from whylab.concepts.c08_pre_vs_post_ln.cells import POSITIONS, cell_key, cells_of
from whylab.concepts.c08_pre_vs_post_ln.judged import warmup_cell, warmup_pairs
from whylab.concepts.c08_pre_vs_post_ln.shapes import xiong_agreement
from whylab.concepts.c08_pre_vs_post_ln.verdict import cell_name, probe_depths
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table

NAMES = {"pre": "Pre-LN", "post": "Post-LN"}


def _gain(cell: Mapping[str, Any], key: str, holm_key: str) -> Msg | str:
    """A warm-up cell's paired gain (without − with warm-up) and its Holm decision; "—" elsewhere."""
    if key not in cell:
        return "—"
    clear = Msg("C08.reason.holm_clear") if cell.get(holm_key) else empty()
    return Msg("C08.table.gain", delta=bench_stats.describe(cell[key], "nats/token"), holm=clear)


def _table(metrics: Mapping[str, Any]) -> Table:
    records = []
    for cell in [*metrics["cells"], *metrics["warmup_cells"]]:
        p = cell["post_minus_pre"]
        records.append(
            {
                "cell": cell_name(cell),
                "role": "warm-up"
                if cell.get("warmup")
                else ("primary" if "holm_rejected" in cell else "illustration"),
                "Pre-LN loss (nats/token)": bench_stats.fmt(cell["pre"]["loss"], 4),
                "Post-LN loss (nats/token)": bench_stats.fmt(cell["post"]["loss"], 4),
                "Post − Pre, paired": bench_stats.describe(p, "nats/token"),
                "Holm: clear": "—" if cell["warmup"] else ("yes" if cell["holm_rejected"] else "no"),
                "diverged (Pre / Post)": f"{cell['pre']['diverged']}/{cell['pre']['runs']} / "
                f"{cell['post']['diverged']}/{cell['post']['runs']}",
                # the warm-up part: each placement's loss without − with warm-up, paired by seed
                "warm-up gain, Post-LN": _gain(cell, "rescue", "holm_rejected"),
                "warm-up gain, Pre-LN": _gain(cell, "pre_need", "pre_need_holm_rejected"),
            }
        )
    return Table.from_records(
        "cells",
        Msg("C08.table.cells.caption"),
        records,
    )


def _grad_table(metrics: Mapping[str, Any], depths: Sequence[int]) -> Table:
    records = []
    for pos, by_depth in metrics["grad_norms_at_init"].items():
        for depth in depths:
            norms = by_depth[str(depth)]
            records.append(
                {
                    "placement": NAMES[pos],
                    "layers": depth,
                    "grad norm, first block": round(norms[0], 4),
                    "grad norm, last block": round(norms[-1], 4),
                    "last / first": round(norms[-1] / norms[0], 3) if norms[0] else None,
                }
            )
    return Table.from_records(
        "grad_at_init",
        Msg("C08.table.grad_at_init.caption", init_std=metrics["init_std"]),
        records,
    )


def _figures(
    outdir: Path,
    histories: Mapping[str, Mapping[str, Sequence[Any]]],
    metrics: Mapping[str, Any],
    probe_depths: Sequence[int],
) -> list[FigureRef]:
    figs = []
    # the curves of the warm-up part's cells, else of the deepest primary cell
    pair = warmup_cell(metrics)
    deepest = pair[1] if pair else max(metrics["cells"], key=lambda c: (c["depth"], c["lr"]))
    curves = {f"{k}, no warm-up": v for k, v in histories[deepest["key"]].items()}
    if pair:
        curves.update({f"{k}, warm-up": v for k, v in histories[pair[0]["key"]].items()})
    figs.append(
        bench_figures.plot_curves(
            curves,
            outdir,
            "training_curves",
            Msg(
                "C08.figure.training_curves.title",
                depth=deepest["depth"],
                lr=deepest["lr"],
                init_std=float(deepest["init_std"]),
            ),
            Msg("C08.figure.training_curves.caption"),
        )
    )

    rows = []
    for c in [*metrics["cells"], *metrics["warmup_cells"]]:
        t = c["post_minus_pre"].get("test")
        if t:
            rows.append(
                {
                    "cell": f"{c['depth']} layers, lr {c['lr']:g}, init std {c['init_std']:.3g}\n"
                    + ("warm-up" if c["warmup"] else "no warm-up"),
                    "diff": t["mean_diff"],
                    "lo": t["ci_low"],
                    "hi": t["ci_high"],
                }
            )
    if rows:
        frame = pd.DataFrame(rows)
        fig, ax = plt.subplots(figsize=(6.4, 0.6 * len(rows) + 2.0))
        ax.errorbar(
            frame["diff"],
            range(len(frame)),
            xerr=[frame["diff"] - frame["lo"], frame["hi"] - frame["diff"]],
            fmt="o",
            capsize=4,
        )
        ax.axvline(0.0, color="grey", linestyle=":")
        for sign in (-1, 1):
            ax.axvline(sign * metrics["min_loss_gain"], color="grey", linestyle="--", linewidth=0.8)
        ax.set_yticks(range(len(frame)), frame["cell"])
        ax.set_ylim(-0.6, len(frame) - 0.4)
        ax.set_xlabel("Post-LN − Pre-LN final validation loss (nats/token; > 0: Pre-LN better)")
        ax.set_ylabel("cell")
        figs.append(plotting.save_figure(fig, outdir, "C08.figure.loss_difference"))

    rows = []
    deep = str(max(probe_depths))
    for pos, by_depth in metrics["grad_norms_at_init"].items():
        for i, v in enumerate(by_depth[deep]):
            rows.append({"block": i + 1, "grad": v, "placement": NAMES[pos]})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=pd.DataFrame(rows), x="block", y="grad", hue="placement", marker="o", ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("block (1 = next to the embedding, last = next to the output)")
    ax.set_ylabel("gradient norm at initialisation (L2, log scale)")
    figs.append(
        plotting.save(
            fig,
            outdir,
            "grad_norm_per_layer",
            Msg("C08.figure.grad_norm_per_layer.title", depth=deep),
            Msg("C08.figure.grad_norm_per_layer.caption", init_std=metrics["init_std"]),
        )
    )
    return figs


def _xiong(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    g = metrics["paired_grad_trend"]
    # the shapes of their Figure 3, each placement on its own (a difference of log ratios is not)
    agreement = xiong_agreement(metrics["grad_shape"])
    grad_agrees = {"agrees": True, "unclear": None}.get(agreement, False)
    warm_notes: list[Msg] = []
    for w, cold in warmup_pairs(metrics):
        warm_notes.append(
            Msg(
                "C08.literature.warmup.cell",
                depth=w["depth"],
                lr=w["lr"],
                init_std=float(w["init_std"]),
                cold=bench_stats.describe(cold["post_minus_pre"], "nats/token"),
                warm=bench_stats.describe(w["post_minus_pre"], "nats/token"),
            )
        )
    checks = [
        LiteratureCheck(
            source="Xiong et al. 2020, On Layer Normalization in the Transformer Architecture (Figure 3)",
            finding=Msg("C08.literature.gradient.finding"),
            agrees=grad_agrees,
            note=Msg(
                "C08.literature.gradient.note",
                depth=metrics["grad_probe_depth"],
                post=bench_stats.fmt(metrics["grad_trend"]["post"], 3),
                pre=bench_stats.fmt(metrics["grad_trend"]["pre"], 3),
                delta=bench_stats.describe(g, ""),
            ),
        )
    ]
    if warm_notes:
        checks.append(
            LiteratureCheck(
                source="Xiong et al. 2020 (warm-up)",
                finding=Msg("C08.literature.warmup.finding"),
                agrees=None,
                note=Msg("C08.literature.warmup.note", cells=warm_notes),
            )
        )
    return checks


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    per_seed = measured.per_seed
    primary, extra = cells_of(measured.settings)
    depths = probe_depths(measured.settings)
    seeds = [int(r["seed"]) for r in per_seed]
    histories = {
        cell_key(c): {
            NAMES[pos]: [bench_figures.curve(r["runs"][cell_key(c)][pos]["curve"]) for r in per_seed]
            for pos in POSITIONS
        }
        for c in primary + extra
    }
    return Evidence(
        method=Msg(
            "C08.method",
            cells=[cell_name(c) for c in primary],
            init_std=metrics["init_std"],
            steps=metrics["steps"],
            seeds=len(seeds),
            floor=metrics["min_loss_gain"],
            depth=str(max(depths)),
            illustration=Msg("C08.method_illustration") if extra else empty(),
        ),
        metrics=metrics,
        seeds=seeds,
        tables=[_table(metrics), _grad_table(metrics, depths)],
        figures=_figures(ctx.outdir, histories, metrics, depths),
        literature=_xiong(metrics),
    )
