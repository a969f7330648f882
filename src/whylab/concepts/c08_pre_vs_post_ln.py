"""C08: LayerNorm before attention and the FFN (Pre-LN) trains better than after them (Post-LN).

Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture") show that in the
original Post-LN transformer the gradients of the parameters near the output are large at
initialisation, so it needs a learning-rate warm-up, while Pre-LN trains without one. The
experiment trains the same bench language model both ways over a grid of learning rates, depths
and with/without warm-up, several seeds per cell, and records the final validation loss, how
often a run diverges, and the gradient norm of every block at initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from whylab.concepts import ConceptContext
from whylab.concepts import _bench_common as bench
from whylab.errors import InputError
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Label, Verdict, clearly_less

CLAIM_ID = "C08"
POSITIONS = ("pre", "post")
NAMES = {"pre": "Pre-LN", "post": "Post-LN"}


def capped_loss(final_eval_loss: float, cap: float) -> float:
    """A run's final loss for comparisons: a run that blew up (NaN) or ended worse than a
    uniform guess counts as the uniform guess, ln(vocab)."""
    if not math.isfinite(final_eval_loss):
        return cap
    return min(float(final_eval_loss), cap)


def cell_name(cell: Mapping[str, Any]) -> str:
    warm = f"warm-up {cell['warmup']}" if cell["warmup"] else "no warm-up"
    return f"lr {cell['lr']:g}, {cell['depth']} layers, {warm}"


def _grid(settings: Mapping[str, Any]) -> tuple[list[float], list[int], list[int]]:
    lrs = [float(v) for v in settings.get("lrs", [3e-3, 1e-2, 3e-2])]
    depths = [int(v) for v in settings.get("depths", [2, 4])]
    warmup = int(settings.get("warmup_steps", 20))
    steps = settings.get("steps")
    if steps is not None and warmup >= int(steps):
        raise InputError(f"mechanisms.C08.warmup_steps: {warmup} must be below steps ({steps})")
    return lrs, depths, [0, warmup] if warmup > 0 else [0]


def run(ctx: ConceptContext) -> Evidence:
    from whylab.bench.data import lm_batches
    from whylab.bench.train import bench_config, per_layer_grad_norms, train_settings

    s = ctx.settings
    corpus = bench.load_corpus(ctx.inputs)
    cap = math.log(corpus.vocab_size)
    lrs, depths, warmups = _grid(s)
    overrides = bench.given(s, ("d_model", "n_heads", "init_std"))
    train_over = bench.given(s, ("steps", "batch_size", "seq_len", "eval_every"))

    cells: list[dict[str, Any]] = []
    histories: dict[tuple[float, int], dict[str, list[Any]]] = {}  # (lr, depth) -> variant -> runs
    for depth in depths:
        for lr in lrs:
            for warmup in warmups:
                cell: dict[str, Any] = {"lr": lr, "depth": depth, "warmup": warmup}
                for pos in POSITIONS:
                    finals, diverged = [], 0
                    for seed in ctx.seeds:
                        _, _, hist = bench.train_on_corpus(
                            s,
                            corpus,
                            seed,
                            ctx.device,
                            {"n_layers": depth, "norm": "layer", "norm_position": pos, **overrides},
                            {"lr": lr, "warmup_steps": warmup, **train_over},
                        )
                        finals.append(capped_loss(hist.final_eval_loss, cap))
                        diverged += int(hist.diverged)
                        label = f"{NAMES[pos]}, {'warm-up' if warmup else 'no warm-up'}"
                        histories.setdefault((lr, depth), {}).setdefault(label, []).append(hist)
                    cell[pos] = {"loss": bench.summary(finals), "diverged": diverged, "runs": len(finals)}
                cells.append(cell)

    # gradient norm of each block at initialisation: the grid's init and a Xavier-like one
    d_model = int(overrides.get("d_model", s.get("model", {}).get("d_model", 64)))
    grid_std = float(overrides.get("init_std", s.get("model", {}).get("init_std", 0.02)))
    stds = {"grid init": grid_std, "Xavier-like init": 1.0 / math.sqrt(d_model)}
    seq_len = train_settings(s.get("train", {}), **train_over).seq_len
    probe_depths = sorted({int(d) for d in s.get("grad_probe_depths", [2, 6, 12])})
    grads: dict[str, dict[str, dict[str, list[float]]]] = {}
    for init_name, std in stds.items():
        grads[init_name] = {}
        for pos in POSITIONS:
            grads[init_name][pos] = {}
            for depth in probe_depths:
                cfg = bench_config(
                    s.get("model", {}),
                    vocab_size=corpus.vocab_size,
                    n_layers=depth,
                    norm="layer",
                    norm_position=pos,
                    **{**overrides, "init_std": std},
                )
                per_seed = []
                for seed in ctx.seeds:
                    model = bench.build_model(cfg, seed, ctx.device)
                    x, y = next(
                        lm_batches(
                            corpus.train,
                            batch_size=16,
                            seq_len=seq_len,
                            generator=torch.Generator().manual_seed(seed),
                        )
                    )
                    per_seed.append(per_layer_grad_norms(model, x, y))
                grads[init_name][pos][str(depth)] = [
                    sum(col) / len(col) for col in zip(*per_seed, strict=True)
                ]

    metrics: dict[str, Any] = {
        "cells": cells,
        "loss_cap": cap,
        "init_stds": stds,
        "grad_norms_at_init": grads,
        "divergence_margin": float(s.get("divergence_margin", 0.25)),
    }
    return Evidence(
        method=(
            "The same bench language model is trained with LayerNorm before each sub-layer (Pre-LN: "
            "x + F(LN(x))) and after the residual sum (Post-LN: LN(x + F(x))) on every cell of a grid of "
            f"learning rates {', '.join(f'{v:g}' for v in lrs)}, depths {', '.join(map(str, depths))} "
            f"and warm-up {' or '.join(map(str, warmups))} steps, with {len(ctx.seeds)} seeds per cell. "
            "A cell counts for one placement when its final validation loss is lower by more than two "
            "standard errors; a run that diverges counts as a uniform guess, ln(vocab). The gradient "
            "norm of each block is also measured once at initialisation (Xiong et al.'s argument)."
        ),
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=[_table(metrics), _grad_table(metrics, probe_depths)],
        figures=_figures(ctx.outdir, histories, metrics, lrs, probe_depths),
        literature=_xiong(metrics, probe_depths),
    )


def _table(metrics: Mapping[str, Any]) -> Table:
    records = []
    for cell in metrics["cells"]:
        pre, post = bench.values(cell["pre"]["loss"]), bench.values(cell["post"]["loss"])
        better = "Pre-LN" if clearly_less(pre, post) else "Post-LN" if clearly_less(post, pre) else "neither"
        records.append(
            {
                "lr": cell["lr"],
                "layers": cell["depth"],
                "warm-up steps": cell["warmup"],
                "Pre-LN loss (nats/token)": bench.fmt(cell["pre"]["loss"], 4),
                "Post-LN loss (nats/token)": bench.fmt(cell["post"]["loss"], 4),
                "Pre-LN diverged": f"{cell['pre']['diverged']}/{cell['pre']['runs']}",
                "Post-LN diverged": f"{cell['post']['diverged']}/{cell['post']['runs']}",
                "clearly better": better,
            }
        )
    return Table.from_records(
        "grid",
        "Final validation loss, mean ± std over seeds, per cell of the grid; 'clearly better' = "
        "lower by more than two standard errors of the difference.",
        records,
    )


def _grad_table(metrics: Mapping[str, Any], depths: Sequence[int]) -> Table:
    records = []
    for init_name, by_pos in metrics["grad_norms_at_init"].items():
        for pos, by_depth in by_pos.items():
            for depth in depths:
                norms = by_depth[str(depth)]
                records.append(
                    {
                        "init": f"{init_name} (std {metrics['init_stds'][init_name]:.3g})",
                        "placement": NAMES[pos],
                        "layers": depth,
                        "grad norm, first block": round(norms[0], 4),
                        "grad norm, last block": round(norms[-1], 4),
                        "last / first": round(norms[-1] / norms[0], 3) if norms[0] else None,
                    }
                )
    return Table.from_records(
        "grad_at_init",
        "Gradient norm of each block's parameters after one backward pass at "
        "initialisation (mean over seeds).",
        records,
    )


def largest_difference(cells: Sequence[Mapping[str, Any]]) -> tuple[float, int] | None:
    """(lr, depth) of the cell where Pre-LN and Post-LN differ most (mean over seeds)."""
    diffs = [
        (abs(c["post"]["loss"]["mean"] - c["pre"]["loss"]["mean"]), c["lr"], c["depth"])
        for c in cells
        if c["pre"]["loss"]["mean"] is not None and c["post"]["loss"]["mean"] is not None
    ]
    if not diffs:
        return None
    _, lr, depth = max(diffs)
    return lr, depth


def _figures(
    outdir: Path,
    histories: Mapping[tuple[float, int], Mapping[str, Sequence[Any]]],
    metrics: Mapping[str, Any],
    lrs: Sequence[float],
    probe_depths: Sequence[int],
) -> list[FigureRef]:
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from whylab import plotting

    hardest = (max(lrs), max(c["depth"] for c in metrics["cells"]))
    figs = [
        bench.plot_curves(
            histories[hardest],
            outdir,
            "training_curves",
            f"Pre-LN vs Post-LN at lr {hardest[0]:g}, {hardest[1]} layers",
            "Validation loss during training at the highest learning rate and largest depth of the grid, "
            "with and without warm-up; line = mean over seeds, band = ±1 standard deviation.",
        )
    ]
    widest = largest_difference(metrics["cells"])
    if widest is not None and widest != hardest:
        figs.append(
            bench.plot_curves(
                histories[widest],
                outdir,
                "training_curves_largest_gap",
                f"Pre-LN vs Post-LN at lr {widest[0]:g}, {widest[1]} layers",
                "Validation loss during training in the grid cell where the two placements differ most; line = "
                "mean over seeds, band = ±1 standard deviation.",
            )
        )

    rows = []
    for cell in metrics["cells"]:
        pre, post = cell["pre"]["loss"]["mean"], cell["post"]["loss"]["mean"]
        rows.append(
            {
                "setting": f"{cell['depth']} layers, " + ("warm-up" if cell["warmup"] else "no warm-up"),
                "lr": f"{cell['lr']:g}",
                "diff": (post - pre) if pre is not None and post is not None else None,
            }
        )
    frame = pd.DataFrame(rows).pivot(index="setting", columns="lr", values="diff")
    frame = frame[[f"{v:g}" for v in lrs]]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    sns.heatmap(frame.astype(float), annot=True, fmt=".3f", center=0.0, cmap="RdBu", cbar=False, ax=ax)
    ax.set_xlabel("peak learning rate (AdamW)")
    ax.set_ylabel("depth and warm-up")
    figs.append(
        plotting.save(
            fig,
            outdir,
            "loss_difference",
            "Where does Pre-LN win?",
            "Number in each cell: final validation loss of Post-LN minus Pre-LN (nats/token), mean over "
            "seeds (blue, positive: Pre-LN lower; red, negative: Post-LN lower). Whether a difference is "
            "clear of the seed noise is in the table.",
        )
    )

    rows = []
    deep = str(max(probe_depths))
    for init_name, by_pos in metrics["grad_norms_at_init"].items():
        for pos, by_depth in by_pos.items():
            for i, v in enumerate(by_depth[deep]):
                rows.append({"block": i + 1, "grad": v, "placement": NAMES[pos], "init": init_name})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(
        data=pd.DataFrame(rows), x="block", y="grad", hue="placement", style="init", marker="o", ax=ax
    )
    ax.set_yscale("log")
    ax.set_xlabel("block (1 = next to the embedding, last = next to the output)")
    ax.set_ylabel("gradient norm at initialisation (L2, log scale)")
    figs.append(
        plotting.save(
            fig,
            outdir,
            "grad_norm_per_layer",
            f"Gradient norm per block at initialisation ({deep} layers)",
            "L2 norm of each block's parameter gradient after one backward pass at initialisation, mean over "
            "seeds, for the grid's init and a Xavier-like init (std 1/√d_model, Xiong et al.'s setting).",
        )
    )
    return figs


def _xiong(metrics: Mapping[str, Any], depths: Sequence[int]) -> list[LiteratureCheck]:
    """Xiong et al.'s two predictions, each read from this run: gradients at init (their analysis
    assumes a Xavier-like init, so that init decides; the grid's init is reported next to it) and
    warm-up (it should help Post-LN more than Pre-LN)."""
    deep = str(max(depths))
    notes, verdicts = [], {}
    for init_name, by_pos in metrics["grad_norms_at_init"].items():
        pre, post = by_pos["pre"][deep], by_pos["post"][deep]
        ratio_pre = pre[-1] / pre[0] if pre[0] else math.nan
        ratio_post = post[-1] / post[0] if post[0] else math.nan
        # Post-LN's last-block gradient larger than Pre-LN's, and relatively larger next to the output
        verdicts[init_name] = post[-1] > pre[-1] and ratio_post > ratio_pre
        notes.append(
            f"{init_name}: last-block gradient Post-LN {post[-1]:.3g} vs Pre-LN {pre[-1]:.3g}, "
            f"last/first Post-LN {ratio_post:.2f} vs Pre-LN {ratio_pre:.2f}"
        )
    grad_agrees = verdicts.get("Xavier-like init")
    flips = len(set(verdicts.values())) > 1
    checks = [
        LiteratureCheck(
            source="Xiong et al. 2020, On Layer Normalization in the Transformer Architecture (gradients at init)",
            finding="At initialisation Post-LN's gradients next to the output are large; Pre-LN's shrink with depth.",
            agrees=grad_agrees,
            note=(
                f"{deep}-layer models; "
                + "; ".join(notes)
                + "."
                + (
                    " The picture depends on the init: with the grid's small GPT-2-style init it does not hold, "
                    "with the Xavier-like init Xiong et al. analyse it does."
                    if flips
                    else ""
                )
            ),
        )
    ]

    helped: dict[str, int] = {"pre": 0, "post": 0}
    pairs = 0
    by_key = {(c["lr"], c["depth"], c["warmup"]): c for c in metrics["cells"]}
    for (lr, depth, warmup), cell in by_key.items():
        cold = by_key.get((lr, depth, 0))
        if warmup == 0 or cold is None:
            continue
        pairs += 1
        for pos in POSITIONS:
            if clearly_less(bench.values(cell[pos]["loss"]), bench.values(cold[pos]["loss"])):
                helped[pos] += 1
    warm_agrees: bool | None
    if pairs == 0 or helped["pre"] == helped["post"] == 0:
        warm_agrees = None
    else:
        warm_agrees = helped["post"] > helped["pre"]
    checks.append(
        LiteratureCheck(
            source="Xiong et al. 2020 (warm-up)",
            finding="Post-LN needs a learning-rate warm-up; Pre-LN trains as well without one.",
            agrees=warm_agrees,
            note=(
                f"Warm-up clearly lowered the final loss in {helped['post']}/{pairs} (lr, depth) settings for "
                f"Post-LN and {helped['pre']}/{pairs} for Pre-LN."
                + (
                    " In runs this short, warm-up also spends a share of the few updates at a low learning rate."
                    if warm_agrees is not True
                    else ""
                )
            ),
        )
    )
    return checks


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Count the grid cells each placement wins clearly, and compare divergence rates."""
    cells = metrics["cells"]
    margin = float(metrics["divergence_margin"])
    pre_wins = [
        c for c in cells if clearly_less(bench.values(c["pre"]["loss"]), bench.values(c["post"]["loss"]))
    ]
    post_wins = [
        c for c in cells if clearly_less(bench.values(c["post"]["loss"]), bench.values(c["pre"]["loss"]))
    ]
    runs_pre = sum(c["pre"]["runs"] for c in cells) or 1
    runs_post = sum(c["post"]["runs"] for c in cells) or 1
    div_pre = sum(c["pre"]["diverged"] for c in cells) / runs_pre
    div_post = sum(c["post"]["diverged"] for c in cells) / runs_post
    n = len(cells)
    counts = (
        f"Pre-LN clearly lower in {len(pre_wins)}/{n} cells, Post-LN in {len(post_wins)}/{n}; "
        f"divergence rate Pre-LN {div_pre:.0%}, Post-LN {div_post:.0%}"
    )
    if n == 0 or any(len(bench.values(c[p]["loss"])) < 2 for c in cells for p in POSITIONS):
        return Verdict(Label.INCONCLUSIVE, "Fewer than two seeds per cell: no spread to judge a difference.")
    pre_stabler, post_stabler = div_post - div_pre >= margin, div_pre - div_post >= margin
    if not pre_wins and not post_wins and not pre_stabler and not post_stabler:
        return Verdict(Label.INCONCLUSIVE, f"{counts}: no clear difference at this scale.")
    if not post_wins and not post_stabler and (len(pre_wins) * 2 >= n or pre_stabler):
        return Verdict(Label.SUPPORTED, f"{counts}.")
    if not pre_wins and not pre_stabler:
        where = "; ".join(cell_name(c) for c in post_wins[:3])
        return Verdict(Label.NOT_SUPPORTED, f"{counts}; Post-LN is better at: {where or 'no cell'}.")
    pre_where = "; ".join(cell_name(c) for c in pre_wins[:3]) or "no cell"
    post_where = "; ".join(cell_name(c) for c in post_wins[:3]) or "no cell"
    return Verdict(Label.PARTLY, f"{counts}. Pre-LN wins at: {pre_where}; Post-LN at: {post_where}.")
