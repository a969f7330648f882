"""C08: LayerNorm before attention and the FFN (Pre-LN) trains better than after them (Post-LN).

Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture") show that in the
original Post-LN transformer the gradients of the parameters near the output are large at
initialisation (their Figure 3: the gradient norm grows with the layer index for Post-LN and stays
flat for Pre-LN), so Post-LN needs a learning-rate warm-up, while Pre-LN trains without one.

The decision is pre-registered where they predict the difference: deeper stacks (``primary_cells``,
6 and 12 layers by default), a high learning rate, no warm-up and no gradient clipping, with their
Xavier-like initialisation (std 1/√d_model). In each primary cell both placements are trained from
the same seeds (same initial weights, same batches); the per-seed loss differences are tested
(paired t) and Holm-corrected across the cells. The gradient norm per block at initialisation
(their Figure 3 trend) is measured per seed and enters the verdict. The same cells with a warm-up
are shown as an illustration (does warm-up rescue Post-LN?) and do not decide.
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
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Label, Verdict

CLAIM_ID = "C08"
POSITIONS = ("pre", "post")
NAMES = {"pre": "Pre-LN", "post": "Post-LN"}


def capped_loss(final_eval_loss: float | None, cap: float) -> float:
    """A run's final loss for comparisons: a run that blew up (NaN) or ended worse than a
    uniform guess counts as the uniform guess, ln(vocab)."""
    if final_eval_loss is None or not math.isfinite(final_eval_loss):
        return cap
    return min(float(final_eval_loss), cap)


def cell_key(cell: Mapping[str, Any]) -> str:
    return f"{cell['depth']}L-lr{cell['lr']:g}-wu{cell['warmup']}"


def cell_name(cell: Mapping[str, Any]) -> Msg:
    warm = Msg("C08.cell.warmup", steps=cell["warmup"]) if cell["warmup"] else Msg("C08.cell.no_warmup")
    return Msg("C08.cell.name", depth=cell["depth"], lr=cell["lr"], warm=warm)


def cells_of(settings: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(primary cells, warm-up illustration cells) from the config."""
    primary = [
        {"depth": int(c["depth"]), "lr": float(c["lr"]), "warmup": 0}
        for c in settings.get("primary_cells", [{"depth": 6, "lr": 1e-2}, {"depth": 12, "lr": 1e-2}])
    ]
    if not primary:
        raise InputError("mechanisms.C08.primary_cells: at least one cell is needed")
    warmup = int(settings.get("warmup_steps", 0))
    steps = settings.get("steps")
    if steps is not None and warmup >= int(steps):
        raise InputError(f"mechanisms.C08.warmup_steps: {warmup} must be below steps ({steps})")
    depths = {int(d) for d in settings.get("warmup_depths", [])}
    extra = [{**c, "warmup": warmup} for c in primary if warmup > 0 and c["depth"] in depths]
    return primary, extra


def _overrides(s: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], float]:
    model_over = bench.given(s, ("d_model", "n_heads"))
    d_model = int(model_over.get("d_model", s.get("model", {}).get("d_model", 64)))
    std = s.get("init_std")
    init_std = float(std) if std is not None else 1.0 / math.sqrt(d_model)  # Xiong et al.: Xavier-like
    train_over = {**bench.given(s, ("steps", "batch_size", "seq_len", "eval_every")), "grad_clip": None}
    return {**model_over, "init_std": init_std}, train_over, init_std


# --------------------------------------------------------------------------- one seed


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Every cell in both placements from ``seed`` (same initial weights and batches), and the
    gradient norm of every block at initialisation at each probe depth."""
    from whylab.bench.data import lm_batches
    from whylab.bench.train import bench_config, per_layer_grad_norms, train_settings

    s = ctx.settings
    corpus = bench.load_corpus(ctx.inputs)
    primary, extra = cells_of(s)
    model_over, train_over, _ = _overrides(s)
    runs: dict[str, dict[str, Any]] = {}
    for cell in primary + extra:
        runs[cell_key(cell)] = {}
        for pos in POSITIONS:
            _, _, hist = bench.train_on_corpus(
                s,
                corpus,
                seed,
                ctx.device,
                {"n_layers": cell["depth"], "norm": "layer", "norm_position": pos, **model_over},
                {"lr": cell["lr"], "warmup_steps": cell["warmup"], **train_over},
            )
            runs[cell_key(cell)][pos] = {
                "final_eval_loss": bench.finite(hist.final_eval_loss),
                "diverged": bool(hist.diverged),
                "curve": bench.history_dict(hist),
            }
    seq_len = train_settings(s.get("train", {}), **train_over).seq_len
    x, y = next(
        lm_batches(
            corpus.train, batch_size=16, seq_len=seq_len, generator=torch.Generator().manual_seed(seed)
        )
    )
    grads: dict[str, dict[str, list[float]]] = {}
    for pos in POSITIONS:
        grads[pos] = {}
        for depth in sorted({int(d) for d in s.get("grad_probe_depths", [2, 6, 12])}):
            cfg = bench_config(
                s.get("model", {}),
                vocab_size=corpus.vocab_size,
                n_layers=depth,
                norm="layer",
                norm_position=pos,
                **model_over,
            )
            grads[pos][str(depth)] = per_layer_grad_norms(bench.build_model(cfg, seed, ctx.device), x, y)
    return {"seed": seed, "runs": runs, "grad_norms_at_init": grads}


# --------------------------------------------------------------------------- combine


def grad_trend(norms: Sequence[float]) -> float | None:
    """log(last block / first block) of the gradient norms at initialisation: > 0 when the gradient
    grows towards the output (Xiong et al.'s Post-LN), about 0 when flat (their Pre-LN)."""
    if len(norms) < 2 or norms[0] <= 0 or norms[-1] <= 0:
        return None
    return math.log(norms[-1] / norms[0])


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    from whylab.verdict import holm

    s = ctx.settings
    corpus = bench.load_corpus(ctx.inputs)
    cap = math.log(corpus.vocab_size)
    primary, extra = cells_of(s)
    _, train_over, init_std = _overrides(s)
    floor = float(s.get("min_loss_gain", 0.05))
    seeds = [int(r["seed"]) for r in per_seed]

    def cell_metrics(cell: Mapping[str, Any]) -> dict[str, Any]:
        key = cell_key(cell)
        loss = {
            pos: [capped_loss(r["runs"][key][pos]["final_eval_loss"], cap) for r in per_seed]
            for pos in POSITIONS
        }
        return {
            **cell,
            "key": key,
            **{
                pos: {
                    "loss": bench.summary(loss[pos]),
                    "diverged": sum(int(r["runs"][key][pos]["diverged"]) for r in per_seed),
                    "runs": len(per_seed),
                }
                for pos in POSITIONS
            },
            # positive: Pre-LN reaches the lower loss
            "post_minus_pre": bench.paired(loss["post"], loss["pre"], floor),
        }

    cells = [cell_metrics(c) for c in primary]
    pvals = {c["key"]: (c["post_minus_pre"]["test"] or {}).get("p") or math.nan for c in cells}
    rejected = holm(pvals)
    for c in cells:
        c["holm_rejected"] = bool(rejected[c["key"]])
    probe_depths = sorted({int(d) for d in s.get("grad_probe_depths", [2, 6, 12])})
    deep = str(max(probe_depths))
    trends = {pos: [grad_trend(r["grad_norms_at_init"][pos][deep]) for r in per_seed] for pos in POSITIONS}
    grad_min = float(s.get("min_grad_log_ratio", math.log(1.5)))
    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "cells": cells,
        "warmup_cells": [cell_metrics(c) for c in extra],
        "loss_cap": cap,
        "min_loss_gain": floor,
        "init_std": init_std,
        "steps": int(train_over.get("steps", s.get("train", {}).get("steps", 200))),
        "grad_norms_at_init": {
            pos: {
                str(d): [
                    sum(col) / len(col)
                    for col in zip(*[r["grad_norms_at_init"][pos][str(d)] for r in per_seed], strict=True)
                ]
                for d in probe_depths
            }
            for pos in POSITIONS
        },
        "grad_probe_depth": int(deep),
        "grad_trend": {
            pos: bench.summary([math.nan if v is None else v for v in vals]) for pos, vals in trends.items()
        },
        # Xiong et al.'s Figure 3 trend, paired by seed: log(last/first) of Post-LN minus Pre-LN
        "paired_grad_trend": bench.paired(trends["post"], trends["pre"], grad_min),
    }
    histories = {
        cell_key(c): {
            NAMES[pos]: [bench.curve(r["runs"][cell_key(c)][pos]["curve"]) for r in per_seed]
            for pos in POSITIONS
        }
        for c in primary + extra
    }
    return Evidence(
        method=Msg(
            "C08.method",
            cells=[cell_name(c) for c in primary],
            init_std=init_std,
            steps=metrics["steps"],
            seeds=len(seeds),
            floor=floor,
            depth=deep,
            illustration=Msg("C08.method_illustration") if extra else empty(),
        ),
        metrics=metrics,
        seeds=seeds,
        tables=[_table(metrics), _grad_table(metrics, probe_depths)],
        figures=_figures(ctx.outdir, histories, metrics, probe_depths),
        literature=_xiong(metrics),
    )


def _table(metrics: Mapping[str, Any]) -> Table:
    records = []
    for cell in [*metrics["cells"], *metrics["warmup_cells"]]:
        p = cell["post_minus_pre"]
        records.append(
            {
                "cell": str(cell_name(cell)),
                "role": "primary" if "holm_rejected" in cell else "illustration",
                "Pre-LN loss (nats/token)": bench.fmt(cell["pre"]["loss"], 4),
                "Post-LN loss (nats/token)": bench.fmt(cell["post"]["loss"], 4),
                "Post − Pre, paired": bench.describe(p, "nats/token"),
                "Holm: clear": ("yes" if cell["holm_rejected"] else "no") if "holm_rejected" in cell else "—",
                "diverged (Pre / Post)": f"{cell['pre']['diverged']}/{cell['pre']['runs']} / "
                f"{cell['post']['diverged']}/{cell['post']['runs']}",
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
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from whylab import plotting

    figs = []
    deepest = max(metrics["cells"], key=lambda c: (c["depth"], c["lr"]))
    curves = {f"{k}, no warm-up": v for k, v in histories[deepest["key"]].items()}
    for c in metrics["warmup_cells"]:
        if c["depth"] == deepest["depth"] and c["lr"] == deepest["lr"]:
            curves.update({f"{k}, warm-up": v for k, v in histories[c["key"]].items()})
    figs.append(
        bench.plot_curves(
            curves,
            outdir,
            "training_curves",
            Msg("C08.figure.training_curves.title", depth=deepest["depth"], lr=deepest["lr"]),
            Msg("C08.figure.training_curves.caption"),
        )
    )

    rows = []
    for c in [*metrics["cells"], *metrics["warmup_cells"]]:
        t = c["post_minus_pre"].get("test")
        if t:
            rows.append(
                {
                    "cell": f"{c['depth']} layers, lr {c['lr']:g}\n"
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
    grad_agrees = True if g["effect"] == 1 else False if g["effect"] == -1 or g["equivalent"] else None
    warm_notes: list[Msg] = []
    by_cell = {(c["depth"], c["lr"]): c for c in metrics["cells"]}
    for w in metrics["warmup_cells"]:
        cold = by_cell.get((w["depth"], w["lr"]))
        if cold is not None:
            warm_notes.append(
                Msg(
                    "C08.literature.warmup.cell",
                    depth=w["depth"],
                    cold=bench.describe(cold["post_minus_pre"], "nats/token"),
                    warm=bench.describe(w["post_minus_pre"], "nats/token"),
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
                post=bench.fmt(metrics["grad_trend"]["post"], 3),
                pre=bench.fmt(metrics["grad_trend"]["pre"], 3),
                delta=bench.describe(g, ""),
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


# --------------------------------------------------------------------------- verdict


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Training decides (primary cells, paired, Holm); the gradient trend at initialisation
    (Xiong et al.'s mechanism) qualifies it.

    Pre-LN clearly better in some primary cell and Post-LN in none: supported, or partly when the
    gradient trend is clearly the opposite of Xiong et al.'s. Post-LN clearly better and Pre-LN in no
    cell: not supported. Both: partly. Neither: inconclusive (the training part is a limit of this
    run). An unclear gradient trend is a limit, never lowering the label.
    """
    from whylab.verdict import Kind, VerdictOf

    cells = metrics["cells"]
    floor = float(metrics["min_loss_gain"])
    steps = metrics.get("steps", "?")
    out = VerdictOf(Kind.EXPERIMENT, Msg("C08.primary", seeds=metrics["n_seeds"], steps=steps))

    if not cells or metrics["n_seeds"] < 2 or any(c["post_minus_pre"]["n"] < 2 for c in cells):
        return out.branch(Label.INCONCLUSIVE, "C08.verdict.one_seed")

    def diff(c: Mapping[str, Any]) -> float:
        return float(c["post_minus_pre"]["test"]["mean_diff"])

    pre_wins = [c for c in cells if c["holm_rejected"] and diff(c) > floor]
    post_wins = [c for c in cells if c["holm_rejected"] and diff(c) < -floor]
    g = metrics["paired_grad_trend"]
    grad_text = Msg(
        "C08.reason.gradient",
        post=bench.fmt(metrics["grad_trend"]["post"], 2),
        pre=bench.fmt(metrics["grad_trend"]["pre"], 2),
        delta=bench.describe(g, ""),
    )
    div = {p: sum(c[p]["diverged"] for c in cells) for p in POSITIONS}
    runs = sum(c["pre"]["runs"] for c in cells)
    cells_text = [
        Msg(
            "C08.reason.cell",
            cell=cell_name(c),
            delta=bench.describe(c["post_minus_pre"], "nats/token"),
            holm=Msg("C08.reason.holm_clear") if c["holm_rejected"] else empty(),
        )
        for c in cells
    ]
    numbers = Msg(
        "C08.reason.numbers",
        cells=cells_text,
        div_pre=div["pre"],
        div_post=div["post"],
        runs=runs,
        gradient=grad_text,
    )
    grad_opposite = g["effect"] == -1
    if g["effect"] == 0:
        out.limited.append(Msg("C08.limited.gradient_unclear"))
    if pre_wins and not post_wins:
        if grad_opposite:
            return out.branch(Label.PARTLY, "C08.verdict.gradient_opposite", numbers=numbers)
        return out.branch(Label.SUPPORTED, "C08.verdict.pre_wins", numbers=numbers)
    if post_wins and not pre_wins:
        return out.branch(Label.NOT_SUPPORTED, "C08.verdict.post_wins", numbers=numbers)
    if pre_wins and post_wins:
        return out.branch(Label.PARTLY, "C08.verdict.both_win", numbers=numbers)
    out.limited.append(Msg("C08.limited.training", steps=steps))
    return out.branch(Label.INCONCLUSIVE, "C08.verdict.no_clear_cell", numbers=numbers)
