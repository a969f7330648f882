"""The figures C12 and C13 share: size vs perplexity with its Pareto front, latency and speed-up
per variant, perplexity vs bits and vs INT4 group size, the loss change against the claimed band,
and the real-shape models' sizes and speed-ups. Drawn from the rows :mod:`whylab.quant.report`
summarizes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whylab.messages import Msg, empty
from whylab.quant.report import MB, REAL_MODELS, clock_latency, measured, tick_label
from whylab.results import FigureRef


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both size and perplexity (smaller is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 <= y) and (x2 < x or y2 < y) for j, (x2, y2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(rows: Sequence[Mapping[str, Any]], outdir: Path, highlight: str) -> FigureRef:
    """Size vs perplexity of every measured variant and their Pareto front; the ``highlight``
    family's points and FP32's carry their variant names."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    rows = measured(rows)
    xs = [r["size_bytes"] / MB for r in rows]
    ys = [r["valid_ppl"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    families = [r["family"] for r in rows]
    sns.scatterplot(x=xs, y=ys, hue=families, style=[r["runtime"] for r in rows], s=70, ax=ax)
    front = pareto_front(list(zip(xs, ys, strict=True)))
    ax.plot(
        [xs[i] for i in front],
        [ys[i] for i in front],
        color="grey",
        linestyle="--",
        linewidth=1,
        label="Pareto front",
    )
    for r, x, y in zip(rows, xs, ys, strict=True):
        if r["family"] == highlight or r["family"] == "fp32":
            ax.annotate(r["variant"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("size on disk (MB)")
    ax.set_ylabel("validation perplexity (per token, lower is better)")
    ax.legend(fontsize=7, loc="best")
    return plotting.save_figure(fig, outdir, "quant.figure.size_vs_perplexity", family=highlight.upper())


def plot_latency(
    rows: Sequence[Mapping[str, Any]],
    outdir: Path,
    name: str,
    title: str,
    caption: str,
    claimed: tuple[float, float] | None = None,
) -> FigureRef:
    import matplotlib.pyplot as plt

    from whylab import plotting

    rows = measured(rows)
    names = [r["variant"] for r in rows]
    y = np.arange(len(rows))
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.38 * len(rows) + 2.0), layout="constrained")
    clocked = [clock_latency(r) for r in rows]
    p50 = [c[0] for c in clocked]
    p90 = [c[1] for c in clocked]
    clock = "thread CPU time" if all(c[2] == "cpu" for c in clocked) else "wall time"
    colors = ["#0173b2" if r["runtime"] == "onnxruntime" else "#de8f05" for r in rows]
    left.barh(y, p50, color=colors)
    left.errorbar(p90, y, fmt="|", color="black", markersize=10)
    left.set_xscale("log")
    left.set_xlabel(f"batch-1 latency, p50 bar and p90 tick (ms of {clock})")
    left.set_ylabel("variant (blue: ONNX Runtime, orange: PyTorch)")
    rounds = [r.get("speedup_latency_rounds") or [1.0] for r in rows]
    right.boxplot(rounds, positions=y, vert=False, widths=0.6, showfliers=False)
    if claimed:
        right.axvspan(claimed[0], claimed[1], color="green", alpha=0.12, label="claimed speed-up")
    right.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    right.set_xlim(0, max([4.5, *(max(r) for r in rounds)]) * 1.05)
    right.set_xlabel("speed-up vs FP32 of the same runtime (×, per timing round)")
    right.set_ylabel("variant")
    for ax in (left, right):
        ax.set_yticks(y, names, fontsize=7)
        ax.set_ylim(-0.7, len(rows) - 0.3)
    left.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    for axis_formatter in (left.xaxis.set_major_formatter, left.xaxis.set_minor_formatter):
        axis_formatter(FormatStrFormatter("%g"))
    right.legend(fontsize=7, loc="lower right")
    return plotting.save(fig, outdir, name, title, caption)


def plot_bits_and_groups(
    rows: Sequence[Mapping[str, Any]], outdir: Path, name: str, title: str, caption: str
) -> FigureRef:
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    rows = measured(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    best: dict[tuple[str, int], float] = {}
    for r in rows:
        key = (r["runtime"], int(r["bits"]))
        best[key] = min(best.get(key, math.inf), float(r["valid_ppl"]))
    for runtime in sorted({k[0] for k in best}):
        pts = sorted((b, p) for (rt, b), p in best.items() if rt == runtime)
        left.plot([b for b, _ in pts], [p for _, p in pts], marker="o", label=runtime)
    left.set_xscale("log", base=2)
    left.set_xticks([4, 8, 16, 32], ["4", "8", "16", "32"])
    left.set_xlabel("bits per weight (best variant at each width)")
    left.set_ylabel("validation perplexity (per token, lower is better)")
    left.legend(fontsize=8)
    int4 = [r for r in rows if r["family"] == "int4"]
    if int4:
        sns.lineplot(
            x=[r["block_size"] for r in int4],
            y=[r["ppl_change_pct_vs_fp32"] for r in int4],
            hue=[r["algorithm"] for r in int4],
            marker="o",
            ax=right,
        )
        right.set_xscale("log", base=2)
        sizes = sorted({int(r["block_size"]) for r in int4})
        right.set_xticks(sizes, [str(s) for s in sizes])
    right.set_xlabel("INT4 group (block) size (weights per scale)")
    right.set_ylabel("perplexity change vs FP32 (%)")
    return plotting.save(fig, outdir, name, title, caption)


def plot_loss_change(
    variants: Sequence[Mapping[str, Any]],
    outdir: Path,
    family: str,
    claimed: tuple[float, float],
    primary: str | None,
) -> FigureRef:
    """Perplexity change (%) with its 95% interval for every variant of ``family``, the claimed band shaded.

    The x axis always spans 0 to past the claimed band, so a 2% change looks like 2% next to a
    claimed 20–30%; variant names are y tick labels (one row each, never overlapping).
    """
    import matplotlib.pyplot as plt

    from whylab import plotting

    rows = sorted((v for v in variants if v["family"] == family), key=lambda v: v["ppl_change_pct"])
    fig, ax = plt.subplots(figsize=(8.0, 0.42 * max(len(rows), 1) + 1.8), layout="constrained")
    ax.axvspan(claimed[0], claimed[1], color="#d55e00", alpha=0.15, zorder=0)
    ax.axvline(0.0, color="grey", linewidth=1, zorder=1)
    y = np.arange(len(rows))
    for i, v in enumerate(rows):
        is_primary = v["variant"] == primary
        color = "#0173b2" if is_primary else "#7f7f7f"
        ax.errorbar(
            v["ppl_change_pct"],
            i,
            xerr=[
                [v["ppl_change_pct"] - v["ppl_change_low_pct"]],
                [v["ppl_change_high_pct"] - v["ppl_change_pct"]],
            ],
            fmt="D" if is_primary else "o",
            color=color,
            markersize=7 if is_primary else 5,
            capsize=3,
            zorder=3,
        )
    names = [f"{v['variant']} (primary)" if v["variant"] == primary else v["variant"] for v in rows]
    ax.set_yticks(y, names, fontsize=8)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    highs = [v["ppl_change_high_pct"] for v in rows] or [0.0]
    lows = [v["ppl_change_low_pct"] for v in rows] or [0.0]
    ax.set_xlim(min(-1.0, min(lows) * 1.1), max(claimed[1] * 1.2, max(highs) * 1.1))
    ax.set_xlabel("validation perplexity change vs FP32 (%; bar: 95% interval over paired blocks)")
    ax.set_ylabel(f"{family.upper()} variant")
    band = {"family": family.upper(), "low": claimed[0], "high": claimed[1]}
    return plotting.save(
        fig,
        outdir,
        f"loss_change_{family}",
        Msg("quant.figure.loss_change.title", **band),
        Msg("quant.figure.loss_change.caption", **band),
    )


def plot_real_scale(
    real: Mapping[str, Any], outdir: Path, claimed_speedup: tuple[float, float] | None = None
) -> FigureRef:
    """Real shapes, random weights: file size per format, and the speed-up per timing round
    (BERT-base prefill, Llama-7B-width decode) against FP32."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from whylab import plotting

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.6), layout="constrained")
    sizes, speeds = [], []
    for model in REAL_MODELS:
        rec = real.get(model)
        if not rec:
            continue
        label = tick_label(model, rec)
        regime = "prefill" if model == "bert" else "decode"
        for fmt, f in rec["formats"].items():
            sizes.append({"model": label, "format": fmt.upper(), "MB": f["size_bytes"] / MB})
            for r in rec[regime][fmt]["speedup_rounds"]:
                speeds.append({"workload": f"{label}\n{regime}", "format": fmt.upper(), "speed-up": r})
    sns.barplot(pd.DataFrame(sizes), x="model", y="MB", hue="format", ax=left)
    left.set_xlabel("model (real shapes, random weights)")
    left.set_ylabel("ONNX file size (MB)")
    if claimed_speedup:
        right.axhspan(claimed_speedup[0], claimed_speedup[1], color="#d55e00", alpha=0.15, zorder=0)
    right.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    sns.stripplot(
        pd.DataFrame(speeds), x="workload", y="speed-up", hue="format", dodge=True, ax=right, size=5
    )
    right.set_xlabel("workload (batch 1)")
    right.set_ylabel("speed-up vs FP32 (×, per round)")
    right.set_ylim(0, max(4.6, max(s["speed-up"] for s in speeds) * 1.15))
    handles, labels = left.get_legend_handles_labels()
    for ax in (left, right):
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, labels, title="format", loc="outside lower center", ncol=3, fontsize=8)
    band = (
        Msg("quant.figure.real_scale.band", low=claimed_speedup[0], high=claimed_speedup[1])
        if claimed_speedup
        else empty()
    )
    return plotting.save_figure(
        fig, outdir, "quant.figure.real_scale", band=band, block=real.get("int4_block_size")
    )
