"""C05's figures, tables and literature checks, drawn from the measurements and metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from whylab import plotting
from whylab.concepts._bench_figures import curve
from whylab.concepts.c05_scaling.arms import SCALE_NAMES
from whylab.concepts.c05_scaling.verdict import mechanism, training_runs
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Spread

HEAD_COLUMNS = ("heads", "d_k", "scaling", "score_var_scaled", "entropy_norm", "max_prob", "grad_query")


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    s = ctx.settings
    dk_rows: list[dict[str, Any]] = measured.whole["synthetic_dk"]
    head_rows: list[dict[str, Any]] = measured.whole["synthetic_heads"]
    runs = training_runs(measured)
    histories: dict[str, list[Any]] = {}
    for run in runs:
        histories.setdefault(run["variant"], []).append(curve(run["curve"]))
    dk = pd.DataFrame(dk_rows)
    raw = dk[dk.scaling == "none"].sort_values("d_k")
    scaled = dk[dk.scaling == "sqrt_dk"].sort_values("d_k")
    figures = [
        _figure_variance(ctx, raw, scaled),
        _figure_softmax(ctx, dk, float(s["saturation_max_prob"])),
        _figure_heads(ctx, pd.DataFrame(head_rows)),
        _figure_training(ctx, histories),
    ]
    tables = [
        Table.from_records(
            "synthetic_dk",
            Msg("C05.table.synthetic_dk.caption", n_keys=s["n_keys"], samples=s["samples"]),
            [_round(r) for r in dk_rows],
        ),
        Table.from_records(
            "synthetic_heads",
            Msg("C05.table.synthetic_heads.caption", d_model=s["heads_d_model"]),
            [_round({k: r[k] for k in HEAD_COLUMNS}) for r in head_rows],
        ),
        Table.from_records("training", Msg("C05.table.training.caption"), _training_rows(pd.DataFrame(runs))),
    ]
    v = metrics["synthetic"]
    return Evidence(
        method=Msg("C05.method", d_min=min(s["d_k_values"]), d_max=max(s["d_k_values"])),
        metrics=metrics,
        seeds=[int(r["seed"]) for r in measured.per_seed],
        tables=tables,
        figures=figures,
        literature=literature(metrics),
        skipped=[] if len(v["d_k"]) > 1 else [Msg("C05.skipped.one_dk")],
    )


def _round(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}


def _fmt(values: pd.Series) -> str:
    ok = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not ok:
        return "n/a"
    sp = Spread.of(ok)
    return f"{sp.mean:.3f}" if sp.n < 2 else f"{sp.mean:.3f} ± {sp.std:.3f}"


def _training_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for _, g in frame.groupby(["d_k", "scaling"], sort=True):
        rows.append(
            {
                "d_k": int(g["d_k"].iloc[0]),
                "heads": int(g["heads"].iloc[0]),
                "scaling": SCALE_NAMES[str(g["scaling"].iloc[0])],
                "final loss (nats/token)": _fmt(g["final_eval_loss"]),
                "‖∂L/∂W_q‖ at init": _fmt(g["grad_wq_init"]),
                "attention entropy at init": _fmt(g["attention_entropy_init"]),
                "attention entropy after": _fmt(g["attention_entropy_final"]),
                "diverged runs": int(g["diverged"].sum()),
                "seeds": len(g),
            }
        )
    return rows


# --------------------------------------------------------------------------- figures


def _plain_ticks(ax: Any) -> None:
    """Plain-number tick labels on log axes (mathtext's minus sign is missing from the report fonts)."""
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())


def _figure_variance(ctx: ConceptContext, raw: pd.DataFrame, scaled: pd.DataFrame) -> Any:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(raw["d_k"], raw["var_raw"], "o-", label="q·k (no scaling)")
    ax.plot(scaled["d_k"], scaled["std_scaled"] ** 2, "s-", label="q·k / √d_k")
    ax.plot(raw["d_k"], raw["d_k"], "k--", lw=1, label="theory: var = d_k")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("head dimension d_k (components)")
    ax.set_ylabel("variance of the score (unitless)")
    ax.legend()
    _plain_ticks(ax)
    return plotting.save_figure(fig, ctx.outdir, "C05.figure.variance_vs_dk")


def _figure_softmax(ctx: ConceptContext, dk: pd.DataFrame, threshold: float) -> Any:
    frame = dk.assign(scaling=dk["scaling"].map(SCALE_NAMES))
    fig, grid = plt.subplots(2, 2, figsize=(11, 8.5))
    axes = grid.ravel()
    panels = [
        ("max_prob", "largest softmax weight (probability)"),
        ("entropy_norm", "softmax entropy / log(keys) (unitless)"),
        ("grad_logits", "gradient norm at the scores (median, loss/score)"),
        ("grad_query", "gradient norm at the query q (median, loss/unit q)"),
    ]
    for ax, (col, label) in zip(axes, panels, strict=True):
        sns.lineplot(data=frame, x="d_k", y=col, hue="scaling", marker="o", ax=ax)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("head dimension d_k (components)")
        ax.set_ylabel(label)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    axes[0].axhline(threshold, color="grey", ls=":", lw=1)
    for ax in axes[2:]:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    for ax in axes:
        _plain_ticks(ax)
    return plotting.save_figure(fig, ctx.outdir, "C05.figure.softmax_vs_dk")


def _figure_heads(ctx: ConceptContext, heads: pd.DataFrame) -> Any:
    frame = heads.assign(scaling=heads["scaling"].map(SCALE_NAMES))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sns.lineplot(data=frame, x="heads", y="score_var_scaled", hue="scaling", marker="o", ax=axes[0])
    axes[0].set_yscale("log", base=2)
    axes[0].axhline(1.0, color="grey", ls=":", lw=1)
    axes[0].set_ylabel("score variance after scaling (unitless)")
    sns.lineplot(data=frame, x="heads", y="entropy_norm", hue="scaling", marker="o", ax=axes[1])
    axes[1].set_ylabel("softmax entropy / log(keys) (unitless)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("attention heads h (d_k = d_model / h)")
        _plain_ticks(ax)
    d_model = int(heads["d_k"].max() * heads["heads"].min())
    return plotting.save_figure(fig, ctx.outdir, "C05.figure.scale_dimension_vs_heads", d_model=d_model)


def _figure_training(ctx: ConceptContext, histories: Mapping[str, list[Any]]) -> Any:
    rows = []
    for variant, hists in histories.items():
        for i, h in enumerate(hists):
            for step, loss in zip(h.eval_steps, h.eval_loss, strict=True):
                rows.append({"variant": variant, "run": i, "step": step, "loss": float(loss)})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=frame, x="step", y="loss", hue="variant", errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation loss (nats/token)")
    return plotting.save_figure(fig, ctx.outdir, "C05.figure.training_curves")


def literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    holds, n = mechanism(m)
    checks = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.1 and footnote 4",
            Msg("C05.literature.variance.finding"),
            holds,
            Msg(
                "C05.literature.variance.note",
                slope=n["slope"],
                d_k=n["d_k"],
                saturated=n["saturated_raw"],
                grad_ratio=n["grad_ratio"],
            ),
        )
    ]
    gaps = {}
    for d_k, t in m.get("training", {}).items():
        sc = t["scalings"]
        if {"sqrt_dk", "none"} <= set(sc):
            a, b = sc["none"]["final_eval_loss"]["mean"], sc["sqrt_dk"]["final_eval_loss"]["mean"]
            if a is not None and b is not None:
                gaps[int(d_k)] = a - b
    agrees: bool | None = None
    note = Msg("C05.literature.trend.one_dk")
    if len(gaps) >= 2:
        lo, hi = min(gaps), max(gaps)
        agrees = gaps[hi] > gaps[lo]
        note = Msg("C05.literature.trend.note", gap_lo=gaps[lo], lo=lo, gap_hi=gaps[hi], hi=hi)
    checks.append(
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.1",
            Msg("C05.literature.trend.finding"),
            agrees,
            note,
        )
    )
    return checks
