"""C14's figures, table, method, literature checks and skipped notes, from the measurements and metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab.concepts.c14_qlora.verdict import results_run
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg, language_name
from whylab.plotting import save
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Spread

MIB = 2**20
LABELS = {"qlora": "QLoRA (NF4 base + LoRA)", "lora": "LoRA on FP32 base", "full": "full fine-tuning"}


def _skipped(measured: Measured, metrics: Mapping[str, Any]) -> list[str]:
    """The notes on what did not run: a language the LM was pretrained on, the seeds' skipped
    variants (each line once), peak memory that could not be measured."""
    lang = str(metrics["finetune_language"])
    skipped: list[str] = []
    if lang in metrics["pretrain_languages"]:
        skipped.append(Msg("C14.skipped.not_new_language", lang=language_name(lang)))
    for rec in measured.per_seed:
        lines = [_skip_text(x) for x in rec["skipped"]]
        skipped += [line for line in lines if line not in skipped]
    if not all(v["peak_bytes"] is not None for v in metrics["variants"].values()):
        skipped.append(Msg("C14.skipped.peak_memory"))
    return skipped


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    device = str(measured.per_seed[0]["device"])
    memory_method = memory_method_text(device, metrics["memory_method"])
    lang = str(metrics["finetune_language"])
    figures = [
        _figure_resources(ctx.outdir, metrics, memory_method),
        _figure_quality(ctx.outdir, metrics, results_run(measured)),
    ]
    return Evidence(
        method=Msg(
            "C14.method",
            pretrain_langs=[language_name(x) for x in metrics["pretrain_languages"]],
            lang=language_name(lang),
            n_train=metrics["train_blocks"],
            block=metrics["block_size"],
            steps=metrics["steps"],
            batch_size=metrics["batch_size"],
            lora_r=metrics["lora_r"],
            memory_method=memory_method,
            n_valid=metrics["valid_blocks"],
        ),
        metrics=metrics,
        seeds=list(measured.seeds),
        tables=[_table(metrics)],
        figures=figures,
        literature=_literature(metrics),
        skipped=_skipped(measured, metrics),
    )


def _skip_text(line: Any) -> str:
    """A per-seed skipped line: a message kept as key and parameters, or a plain line (older records)."""
    return Msg.from_dict(line) if isinstance(line, Mapping) else str(line)


def memory_method_text(device: str, method: str) -> str:
    """How peak memory was measured, as a message (the PeakMemory text in either language) or, for a
    method this module does not know, the text as it is."""
    key = "C14.memory_method." + ("cuda" if device.startswith("cuda") else "cpu")
    text = Msg(key)
    return text if text == method else method


def _mean(values: Sequence[float | None]) -> float:
    vals = [float(v) for v in values if v is not None]
    return Spread.of(vals).mean if vals else math.nan


def _sd(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return None
    return Spread.of(vals).std


def _table(m: Mapping[str, Any]) -> Table:
    rows = []
    for v, s in m["variants"].items():
        rows.append(
            {
                "variant": LABELS[v],
                "trainable params": s["trainable_params"],
                "trainable %": round(s["trainable_share_pct"], 2),
                "4-bit linear layers": f"{s['linear4bit_count']}/{s['decoder_linear_count']}",
                "linear bits/weight": round(s["linear_bits_per_weight"], 3),
                "code bytes/weight": round(s["linear_code_bytes_per_weight"], 3),
                "base storage (MiB)": round(s["base_storage_bytes"] / MIB, 3),
                "peak extra in training (MiB)": (
                    None if s["peak_bytes"] is None else round(_mean(s["peak_bytes"]) / MIB, 2)
                ),
                "train time (s)": round(_mean(s["train_seconds"]), 2),
                f"{m['finetune_language']} ppl before": round(s["ppl_before"], 2),
                f"{m['finetune_language']} ppl after": round(_mean(s["ppl_after"]), 2),
                "ppl after sd": None if (sd := _sd(s["ppl_after"])) is None else round(sd, 2),
                "retained-language ppl after": (
                    None if s["retained_ppl_after"] is None else round(_mean(s["retained_ppl_after"]), 2)
                ),
            }
        )
    return Table.from_records("finetune", Msg("C14.table.finetune.caption"), rows)


def _figure_resources(outdir: Path, m: Mapping[str, Any], memory_method: str = "") -> FigureRef:
    memory_method = memory_method or str(m["memory_method"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    names = [LABELS[v] for v in m["variants"]]
    vs = list(m["variants"].values())
    sns.barplot(x=names, y=[s["trainable_params"] for s in vs], ax=axes[0], color=sns.color_palette()[0])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("trainable parameters (count, log scale)")
    axes[0].set_title("what trains")
    storage = pd.DataFrame(
        [
            {"variant": LABELS[v], "part": "decoder linear weights", "MiB": s["linear_storage_bytes"] / MIB}
            for v, s in m["variants"].items()
        ]
        + [
            {
                "variant": LABELS[v],
                "part": "embeddings, LM head, norms",
                "MiB": (s["base_storage_bytes"] - s["linear_storage_bytes"]) / MIB,
            }
            for v, s in m["variants"].items()
        ]
    )
    sns.barplot(data=storage, x="variant", y="MiB", hue="part", ax=axes[1])
    axes[1].set_ylim(0, 1.6 * float(storage["MiB"].max()))  # headroom: the legend sits above the bars
    axes[1].legend(fontsize=8, loc="upper left", title=None)
    axes[1].set_ylabel("base weight storage (MiB)")
    axes[1].set_title("what the base weighs")
    peak = pd.DataFrame(
        [
            {"variant": LABELS[v], "MiB": b / MIB}
            for v, s in m["variants"].items()
            for b in (s["peak_bytes"] or [])
        ]
    )
    if not peak.empty:
        sns.barplot(data=peak, x="variant", y="MiB", errorbar="sd", ax=axes[2], color=sns.color_palette()[2])
    axes[2].set_ylabel("peak extra memory in training (MiB)")
    axes[2].set_title("peak memory above the loaded model")
    for ax in axes:
        ax.set_xlabel("fine-tuning variant")
        ax.tick_params(axis="x", labelsize=8, rotation=12)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(
        fig,
        outdir,
        "resources",
        Msg("C14.figure.resources.title"),
        Msg("C14.figure.resources.caption", memory_method=memory_method),
    )


def _figure_quality(outdir: Path, m: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> FigureRef:
    lang = m["finetune_language"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    rows = []
    for v, s in m["variants"].items():
        rows.append({"variant": LABELS[v], "stage": "before fine-tuning", "ppl": s["ppl_before"]})
        rows += [{"variant": LABELS[v], "stage": "after fine-tuning", "ppl": p} for p in s["ppl_after"]]
    sns.barplot(data=pd.DataFrame(rows), x="variant", y="ppl", hue="stage", errorbar="sd", ax=axes[0])
    axes[0].set_yscale("log")
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(low, high * 30)  # headroom on the log axis: the legend sits above the bars
    axes[0].legend(title=None, fontsize=8, loc="upper center", ncol=2)
    axes[0].set_xlabel("fine-tuning variant")
    axes[0].set_ylabel(f"{lang} validation perplexity (per token, log scale)")
    axes[0].tick_params(axis="x", labelsize=8, rotation=12)
    curves = pd.DataFrame(
        [
            {"variant": LABELS[r["variant"]], "step": i + 1, "loss": loss}
            for r in results
            for i, loss in enumerate(r["losses"])
        ]
    )
    sns.lineplot(data=curves, x="step", y="loss", hue="variant", errorbar="sd", ax=axes[1])
    axes[1].set_xlabel("optimizer step")
    axes[1].set_ylabel(f"{lang} training loss (nats/token)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(
        fig,
        outdir,
        "quality",
        Msg("C14.figure.quality.title", lang=language_name(lang)),
        Msg("C14.figure.quality.caption", lang=language_name(lang)),
    )


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    tol = float(m["close_tolerance_pct"])
    lang = m["finetune_language"]
    checks = []
    gap = m.get("qlora_vs_lora_ppl_gap_pct")
    checks.append(
        LiteratureCheck(
            "Dettmers et al. 2023, QLoRA (NeurIPS)",
            Msg("C14.literature.vs_lora.finding"),
            None if gap is None else abs(gap) <= tol,
            Msg("C14.literature.vs_lora.not_run")
            if gap is None
            else Msg("C14.literature.vs_lora.note", lang=language_name(lang), gap=gap, tol=tol),
        )
    )
    gap_full = m.get("qlora_vs_full_ppl_gap_pct")
    checks.append(
        LiteratureCheck(
            "Dettmers et al. 2023, QLoRA (NeurIPS)",
            Msg("C14.literature.vs_full.finding"),
            None if gap_full is None else abs(gap_full) <= tol,
            Msg("C14.literature.vs_full.not_run")
            if gap_full is None
            else Msg("C14.literature.vs_full.note", lang=language_name(lang), gap=gap_full),
        )
    )
    return checks
