"""C16's figures, tables, method, literature checks and skipped note, from the measurements and metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab.concepts.c16_smoothquant.verdict import SPEC, model_summary, model_text, ratio_rows, sweep_rows
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.plotting import save
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Spread

CONDITIONS = {"trained": "as given", "outliers": "with outlier channels trained in"}  # table cells, figures


def per_model(measured: Measured) -> dict[str, Any]:
    """Per model (as given, with outliers): mean FP32 perplexity, every arm's rows, the outlier
    ratios and the first seed's channel maxima for the figure."""
    per_seed = measured.per_seed
    return {
        c: {
            "ppl_fp32": Spread.of([rec["conditions"][c]["ppl_fp32"] for rec in per_seed]).mean,
            "rows": sweep_rows(per_seed, c),
            "ratio_rows": ratio_rows(per_seed, c),
            "plot": per_seed[0]["conditions"][c]["plot"],
        }
        for c in per_seed[0]["conditions"]
    }


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    cfg = measured.settings
    schemes, alphas, alpha_ref = metrics["act_schemes"], metrics["alphas"], metrics["alpha_ref"]
    results = per_model(measured)
    channels = metrics["outlier_channels"]
    stress = (
        Msg(
            "C16.reason.stress",
            channels=str(channels),
            scale=float(cfg["outlier_scale"]),
            steps=int(cfg["outlier_train_steps"]),
            lr=float(cfg["outlier_train_lr"]),
        )
        if channels
        else Msg("C16.reason.no_stress")
    )
    return Evidence(
        method=Msg(
            "C16.method",
            model_parameters=metrics["model_parameters"],
            calibration_blocks=metrics["calibration_blocks"],
            schemes=list(schemes),
            valid_blocks=metrics["valid_blocks"],
            block_size=metrics["block_size"],
            stress=stress,
        ),
        metrics=metrics,
        seeds=list(measured.seeds),
        tables=[
            _table_ppl(results, schemes, alphas),
            _table_ratios(results, alpha_ref),
            table_factors(metrics.get("activation_swap"), metrics.get("activation_swap_llmcompressor")),
        ],
        figures=[
            _figure_ppl(ctx.outdir, results, metrics["primary_condition"], schemes),
            _figure_channels(ctx.outdir, results, alpha_ref),
        ],
        literature=_literature(metrics),
        skipped=[] if channels else [Msg("C16.skipped.no_outliers")],
    )


def _figure_ppl(
    outdir: Path,
    results: Mapping[str, Any],
    primary: str,
    schemes: Sequence[str],
) -> FigureRef:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    palette = dict(zip(schemes, sns.color_palette("colorblind", len(schemes)), strict=True))
    df = pd.DataFrame(results[primary]["rows"])
    fp32 = df[df["variant"] == "FP32"].set_index("seed")["valid_ppl"]
    df["change_pct"] = 100 * (df["valid_ppl"] / df["seed"].map(fp32) - 1)  # vs the same seed's FP32
    sns.lineplot(
        data=df[df["variant"] == "W8A8 SmoothQuant"],
        x="alpha",
        y="change_pct",
        hue="scheme",
        marker="o",
        errorbar="sd",
        palette=palette,
        ax=ax,
    )
    rows = df[df["variant"] == "W8A8 naive"]
    for scheme in schemes:
        naive = rows[rows["scheme"] == scheme]["change_pct"].mean()
        ax.axhline(naive, ls="--", color=palette[scheme], lw=1, label=f"naive W8A8, {scheme}")
    ax.axhline(0.0, ls=":", color="black", lw=1.2, label="FP32")
    ax.set_xlabel("migration strength α (dimensionless)")
    ax.set_ylabel("perplexity change vs FP32 (%)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(
        fig,
        outdir,
        "ppl_vs_alpha",
        Msg("C16.figure.ppl_vs_alpha.title"),
        Msg("C16.figure.ppl_vs_alpha.caption", model=model_text(primary)),
    )


def _figure_channels(outdir: Path, results: Mapping[str, Any], alpha: float) -> FigureRef:
    fig, axes = plt.subplots(len(results), 2, figsize=(12, 4.2 * len(results)), squeeze=False)
    handles: list[Any] = []
    labels: list[str] = []
    for row, (cond, r) in zip(axes, results.items(), strict=True):
        data = r["plot"]
        n = len(data["act_before"])
        for ax, kind in zip(row, ("act", "w"), strict=True):
            records = [
                {"channel": j, "absmax": v, "stage": stage}
                for stage, key in (("before", f"{kind}_before"), (f"after (α={alpha:g})", f"{kind}_after"))
                for j, v in enumerate(data[key])
            ]
            sns.lineplot(
                data=pd.DataFrame(records),
                x="channel",
                y="absmax",
                hue="stage",
                drawstyle="steps-mid",
                lw=1,
                ax=ax,
            )
            handles, labels = ax.get_legend_handles_labels()
            ax.get_legend().remove()
            ax.set_yscale("log")
            ax.set_xlim(-0.5, n - 0.5)
            ax.set_xlabel("input channel j (index)")
            ax.set_ylabel("max |X_j| (model units)" if kind == "act" else "max |W_j| (model units)")
            what = "activations X (validation tokens)" if kind == "act" else "weights W (over output rows)"
            ax.set_title(f"{what}, input of {data['group']}\nmodel {CONDITIONS[cond]}", fontsize=9)
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return save(
        fig,
        outdir,
        "channel_absmax",
        Msg("C16.figure.channel_absmax.title"),
        Msg("C16.figure.channel_absmax.caption"),
    )


def table_factors(torchao: Mapping[str, Any] | None, llmc: Mapping[str, Any] | None) -> Table:
    """The definition part's checks, one row per implementation: torchao's decides, llmcompressor's
    cross-checks (a check an implementation has no counterpart for, or did not run, is empty)."""

    def row(name: str, impl: Mapping[str, Any] | None) -> dict[str, Any]:
        impl = impl or {}
        ran = bool(impl.get("ran", bool(impl)))
        value = (lambda k: impl.get(k)) if ran else (lambda k: None)
        return {
            "implementation": name,
            "role": "decides" if name.startswith("torchao") else "cross-check",
            "factors vs its formula (max rel. error)": value("formula_max_rel_err"),
            "another function's inputs (max rel. diff)": value("swap_max_rel_diff"),
            "first layer norm-fed, across functions (max rel. diff)": value(
                "norm_fed_first_layer_max_rel_diff"
            ),
            "activation-fed down_proj, across functions (max rel. diff)": value("down_max_rel_diff"),
            "ran": ran,
        }

    records = [
        row("torchao 0.18 prototype SmoothQuant observer", torchao),
        row("llmcompressor 0.14 SmoothQuantModifier", llmc),
    ]
    return Table.from_records("factors", Msg("C16.table.factors.caption"), records)


def _table_ppl(results: Mapping[str, Any], schemes: Sequence[str], alphas: Sequence[float]) -> Table:
    out: list[dict[str, Any]] = []
    for cond, r in results.items():
        df = pd.DataFrame(r["rows"])
        fp32 = r["ppl_fp32"]
        out.append(
            {
                "model": CONDITIONS[cond],
                "scheme": "-",
                "variant": "FP32",
                "alpha": None,
                "valid_ppl_mean": round(fp32, 4),
                "valid_ppl_sd": None,
                "change_vs_fp32_pct": 0.0,
            }
        )
        for scheme in schemes:
            for variant, alpha in [("W8A8 naive", None)] + [("W8A8 SmoothQuant", a) for a in alphas]:
                sel = df[(df["scheme"] == scheme) & (df["variant"] == variant)]
                if alpha is not None:
                    sel = sel[sel["alpha"] == alpha]
                if sel.empty:
                    continue
                sp = Spread.of(sel["valid_ppl"].tolist())
                out.append(
                    {
                        "model": CONDITIONS[cond],
                        "scheme": scheme,
                        "variant": variant,
                        "alpha": alpha,
                        "valid_ppl_mean": round(sp.mean, 4),
                        "valid_ppl_sd": None if math.isnan(sp.std) else round(sp.std, 4),
                        "change_vs_fp32_pct": round(100 * (sp.mean / fp32 - 1), 3),
                    }
                )
    return Table.from_records("ppl", Msg("C16.table.ppl.caption"), out)


def _table_ratios(results: Mapping[str, Any], alpha: float) -> Table:
    records: list[dict[str, Any]] = []
    for cond, r in results.items():
        df = pd.DataFrame(r["ratio_rows"]).groupby(["group", "kind"], sort=False)[["before", "after"]]
        for row in df.mean().reset_index().to_dict("records"):
            records.append(
                {
                    "model": CONDITIONS[cond],
                    "input of": row["group"],
                    "kind": row["kind"],
                    "max/median before": round(float(row["before"]), 3),
                    f"max/median after (α={alpha:g})": round(float(row["after"]), 3),
                }
            )
    return Table.from_records("outliers", Msg("C16.table.outliers.caption"), records)


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    cond = m["primary_condition"]
    s = model_summary(m, cond)
    test = m["primary_test"]
    min_gain = float(m["ppl_gain_pct_min"])
    agrees: bool | None = None
    if s["naive_loss_pct"] < min_gain:
        note = Msg("C16.literature.smoothquant.nothing_to_fix", summary=s["text"])
    elif not test["n"] >= 2 or test["p"] is None or math.isnan(test["p"]):
        note = Msg("C16.literature.smoothquant.one_seed", summary=s["text"])
    else:
        agrees = test["mean_diff"] > min_gain and test["p"] < SPEC.threshold("literature_p")
        note = Msg("C16.literature.smoothquant.note", summary=s["text"], gain=test["mean_diff"], p=test["p"])
    checks = [
        LiteratureCheck(
            "Xiao et al. 2023, SmoothQuant (ICML)", Msg("C16.literature.smoothquant.finding"), agrees, note
        )
    ]
    before = Spread.of(m["conditions"]["trained"]["outlier_ratio_before"]).mean
    checks.append(
        LiteratureCheck(
            "Dettmers et al. 2022, LLM.int8()",
            Msg("C16.literature.llm_int8.finding"),
            None,
            Msg("C16.literature.llm_int8.note", model_parameters=int(m["model_parameters"]), before=before),
        )
    )
    return checks
