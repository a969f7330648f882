"""C16: "SmoothQuant is quantization that takes the activation function into account."

The notes call SmoothQuant "활성화 함수 고려 양자화" (quantization that considers the
activation *function*). What the paper (Xiao et al. 2023) computes is about the
*activations*, the inputs of the linear layers: a few channels carry outliers far larger
than the rest, which ruins per-tensor INT8 activation scales. SmoothQuant divides each
input channel by s_j = max|X_j|^alpha / max|W_j|^(1-alpha) and multiplies the matching
weight column by s_j (an exact rewrite), moving outlier "difficulty" from activations
into weights so both quantize well to INT8 (W8A8). No activation function is involved.

The experiment (one pre-registered primary comparison, paired over seeds): W8A8 perplexity
change vs FP32, naive minus SmoothQuant at alpha_ref, on a model that has LLM-like outlier
channels *trained in*. A few hidden channels of every RMSNorm output are made
``outlier_scale`` times larger, which changes the function (a rescaling that smoothing could
exactly undo would decide the outcome by construction), and the whole model is fine-tuned with
them, per seed (its own batches and its own calibration draw). Without that condition
(``outlier_channels: 0``, e.g. on a user's checkpoint via ``lm.pretrained``) the model as
given decides. The model as trained, the α sweep and the outlier ratios are shown as evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import (
    Kind,
    Label,
    PairedTest,
    Spread,
    Verdict,
    VerdictOf,
    effect,
    equivalent,
    paired_test,
)

CLAIM_ID = "C16"

DEFAULTS: dict[str, Any] = {
    "alphas": [0.0, 0.25, 0.5, 0.75, 1.0],
    "alpha_ref": 0.5,
    "act_schemes": ["per_tensor_static", "per_token_dynamic"],
    "verdict_scheme": "per_tensor_static",
    "groups": ["attn_in", "attn_out", "mlp_in", "mlp_down"],
    "calibration_pool_blocks": 64,
    "plot_group": "auto",
    "equivalence_tolerance": 1e-3,
    "ppl_gain_pct_min": 0.5,
    "outlier_channels": 2,
    "outlier_scale": 20.0,
    "outlier_train_steps": 30,
    "outlier_train_lr": 3e-4,
    "outlier_train_batch_size": 8,
}


def _cfg(settings: Mapping[str, Any]) -> dict[str, Any]:
    sq = {**DEFAULTS, **{k: settings[k] for k in DEFAULTS if k in settings}}
    if sq["verdict_scheme"] not in sq["act_schemes"]:
        raise InputError(
            f"quantization.smoothquant.verdict_scheme: {sq['verdict_scheme']!r} "
            f"must be one of act_schemes {sq['act_schemes']}"
        )
    if sq["alpha_ref"] not in sq["alphas"]:
        raise InputError(
            f"quantization.smoothquant.alpha_ref: {sq['alpha_ref']} must be one of alphas {sq['alphas']}"
        )
    return sq


def load_model_and_data(ctx: ConceptContext) -> tuple[Any, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The LM (trained here, or ``lm.pretrained``; fp32, eval mode), the calibration pool and the validation blocks."""
    from whylab.lm.data import corpus_files, load_tokenizer, token_blocks
    from whylab.lm.pretrained import load_causal_lm, parameter_count

    measure = dict(ctx.settings.get("measure", {}))
    calib = dict(ctx.settings.get("calibration", {}))
    sq = _cfg(ctx.settings)
    langs = [str(x) for x in ctx.settings.get("languages", ["en"])]
    block = int(measure.get("block_size", 128))
    model_dir = ctx.inputs["model"]
    tok = load_tokenizer(model_dir)
    model = load_causal_lm(model_dir, torch.float32, ctx.device)
    if block > int(model.config.max_position_embeddings):
        raise InputError(
            f"quantization.measure.block_size ({block}) exceeds the model's "
            f"max_position_embeddings ({model.config.max_position_embeddings})"
        )
    pool = token_blocks(
        corpus_files(ctx.inputs["corpus"], langs, "train"), tok, block, int(sq["calibration_pool_blocks"])
    )
    valid = token_blocks(
        corpus_files(ctx.inputs["corpus"], langs, "valid"), tok, block, int(measure.get("eval_blocks", 32))
    )
    info = {
        "languages": langs,
        "block_size": block,
        "calibration_blocks": int(calib.get("blocks", 16)),
        "eval_batch_size": int(measure.get("eval_batch_size", 8)),
        "model_parameters": parameter_count(model),
    }
    return model, pool, valid, info


def calibration_draw(pool: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` training blocks drawn without replacement from the pool with ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(pool.shape[0], generator=g)[: min(n, pool.shape[0])]
    return pool[idx.sort().values]


def evaluate_seed(
    model: Any,
    calib: torch.Tensor,
    valid: torch.Tensor,
    cfg: Mapping[str, Any],
    info: Mapping[str, Any],
    device: str,
    alphas: Sequence[float],
    plot_group: str,
) -> dict[str, Any]:
    """FP32, naive W8A8 and smoothed W8A8 (each of ``alphas``, every scheme) on one model, one seed.

    Calibration is ``calib`` (this seed's draw); outlier ratios are measured on validation tokens.
    """
    from whylab.lm.evaluate import perplexity
    from whylab.quant import smoothquant as sq

    bs = int(info["eval_batch_size"])
    schemes = list(cfg["act_schemes"])
    groups = sq.smooth_groups(model, cfg["groups"])
    names = sq.decoder_linears(model)
    ref_alpha = float(cfg["alpha_ref"])

    def ppl(m: Any) -> float:
        return perplexity(m, valid, batch_size=bs, device=device)

    out: dict[str, Any] = {"ppl_fp32": ppl(model), "naive": {}, "smooth": {s: {} for s in schemes}}
    stats = sq.collect_act_absmax(model, calib, names, batch_size=bs, device=device)
    for scheme in schemes:
        out["naive"][scheme] = ppl(sq.quantize_w8a8(model, scheme, stats))
    valid_stats = sq.collect_act_absmax(model, valid, names, batch_size=bs, device=device)
    before = [sq.outlier_ratio(valid_stats[g.linears[0]]) for g in groups]
    with torch.no_grad():
        ref_logits = model(input_ids=valid[:2].to(device)).logits
    for alpha in [float(a) for a in alphas]:
        smoothed, factors = sq.smoothed_copy(model, groups, stats, alpha)
        if alpha == ref_alpha:
            with torch.no_grad():
                logits = smoothed(input_ids=valid[:2].to(device)).logits
            out["equivalence_diff"] = float((logits - ref_logits).abs().max())
            after_valid = sq.smoothed_act_stats(groups, valid_stats, factors)
            after = [sq.outlier_ratio(after_valid[g.linears[0]]) for g in groups]
            out["outlier_ratio_before"] = sum(before) / len(before)
            out["outlier_ratio_after"] = sum(after) / len(after)
            out["ratio_rows"] = [
                {"group": g.name, "kind": g.kind, "before": b, "after": a}
                for g, b, a in zip(groups, before, after, strict=True)
            ]
            out["plot"] = _plot_payload(model, smoothed, groups, valid_stats, after_valid, plot_group)
        smoothed_stats = sq.smoothed_act_stats(groups, stats, factors)
        for scheme in schemes:
            out["smooth"][scheme][str(alpha)] = ppl(sq.quantize_w8a8(smoothed, scheme, smoothed_stats))
        del smoothed
    return out


CONDITIONS = {"trained": "as given", "outliers": "with outlier channels trained in"}  # table cells, figures


def model_text(cond: str) -> str:
    """'model as given' / 'model with outlier channels trained in', as a message."""
    return Msg(f"C16.condition.{cond}")


def primary_condition(cfg: Mapping[str, Any]) -> str:
    """The model that decides: the one with trained-in outliers, unless that condition is off."""
    return "outliers" if int(cfg["outlier_channels"]) > 0 else "trained"


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """One seed: its calibration draw, its outlier fine-tune, every arm on both models."""
    from whylab.quant import smoothquant as sq

    cfg = _cfg(ctx.settings)
    model, pool, valid, info = load_model_and_data(ctx)
    alphas = [float(a) for a in cfg["alphas"]]
    calib = calibration_draw(pool, int(info["calibration_blocks"]), seed)
    bs = int(info["eval_batch_size"])
    record: dict[str, Any] = {"seed": seed, "info": info, "conditions": {}}
    models: dict[str, Any] = {"trained": model}
    if int(cfg["outlier_channels"]) > 0:
        channels = sq.strongest_norm_channels(model, int(cfg["outlier_channels"]))
        outlier_model = sq.amplify_channels(model, channels, float(cfg["outlier_scale"]))
        losses = sq.train_in(
            outlier_model,
            pool,
            steps=int(cfg["outlier_train_steps"]),
            batch_size=int(cfg["outlier_train_batch_size"]),
            lr=float(cfg["outlier_train_lr"]),
            seed=seed,
            device=ctx.device,
        )
        record["outlier_channels"] = channels
        record["outlier_train_losses"] = losses
        models["outliers"] = outlier_model
    primary = primary_condition(cfg)
    for cond, m in models.items():
        group = resolve_plot_group(m, valid, cfg, bs, ctx.device)
        # the full α sweep on the deciding model; α_ref alone on the other
        sweep = alphas if cond == primary else [float(cfg["alpha_ref"])]
        record["conditions"][cond] = evaluate_seed(m, calib, valid, cfg, info, ctx.device, sweep, group)
    return record


def _rows(per_seed: Sequence[Mapping[str, Any]], cond: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rec in per_seed:
        r = rec["conditions"][cond]
        rows.append(
            {"seed": rec["seed"], "scheme": "-", "variant": "FP32", "alpha": None, "valid_ppl": r["ppl_fp32"]}
        )
        for scheme, value in r["naive"].items():
            rows.append(
                {
                    "seed": rec["seed"],
                    "scheme": scheme,
                    "variant": "W8A8 naive",
                    "alpha": None,
                    "valid_ppl": value,
                }
            )
        for scheme, by_alpha in r["smooth"].items():
            for alpha, value in by_alpha.items():
                rows.append(
                    {
                        "seed": rec["seed"],
                        "scheme": scheme,
                        "variant": "W8A8 SmoothQuant",
                        "alpha": float(alpha),
                        "valid_ppl": value,
                    }
                )
    return rows


def _best_alpha(rows: Sequence[Mapping[str, Any]], scheme: str, alphas: Sequence[float]) -> float:
    """The α with the lowest mean smoothed perplexity over seeds (shown, never used to decide)."""

    def mean_ppl(a: float) -> float:
        vals = [r["valid_ppl"] for r in rows if r["scheme"] == scheme and r["alpha"] == a]
        return Spread.of(vals).mean if vals else math.inf

    return min(alphas, key=mean_ppl)


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab.plotting import save

    cfg = _cfg(ctx.settings)
    schemes, vs, ref = list(cfg["act_schemes"]), cfg["verdict_scheme"], str(float(cfg["alpha_ref"]))
    alphas = [float(a) for a in cfg["alphas"]]
    info = per_seed[0]["info"]
    conds = list(per_seed[0]["conditions"])
    per: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for c in conds:
        recs = [rec["conditions"][c] for rec in per_seed]
        fp32 = [r["ppl_fp32"] for r in recs]
        naive = {s: [r["naive"][s] for r in recs] for s in schemes}
        smooth = {s: [r["smooth"][s][ref] for r in recs] for s in schemes}
        per[c] = {
            "ppl_fp32": fp32,
            "ppl_naive": naive,
            "ppl_smooth_ref": smooth,
            "naive_change_pct": {
                s: [100 * (n / f - 1) for n, f in zip(naive[s], fp32, strict=True)] for s in schemes
            },
            "smooth_change_pct": {
                s: [100 * (m / f - 1) for m, f in zip(smooth[s], fp32, strict=True)] for s in schemes
            },
            "outlier_ratio_before": [r["outlier_ratio_before"] for r in recs],
            "outlier_ratio_after": [r["outlier_ratio_after"] for r in recs],
            "equivalence_diff": [r["equivalence_diff"] for r in recs],
        }
        results[c] = {
            "ppl_fp32": Spread.of(fp32).mean,
            "rows": _rows(per_seed, c),
            "ratio_rows": [
                {"seed": rec["seed"], **row} for rec in per_seed for row in rec["conditions"][c]["ratio_rows"]
            ],
            "plot": recs[0]["plot"],
        }
    primary = primary_condition(cfg)
    p = per[primary]
    test = paired_test(p["naive_change_pct"][vs], p["smooth_change_pct"][vs])
    sweep = results[primary]["rows"]
    by_kind = pd.DataFrame(results["trained"]["ratio_rows"]).groupby("kind")["before"].mean()
    metrics: dict[str, Any] = {
        "conditions": per,
        "primary_condition": primary,
        "primary_test": test.to_dict(),
        "outlier_ratio_before_by_kind": {str(k): float(v) for k, v in by_kind.items()},
        "best_alpha_on_validation": {s: _best_alpha(sweep, s, alphas) for s in schemes},
        "verdict_scheme": vs,
        "act_schemes": schemes,
        "alphas": alphas,
        "alpha_ref": float(cfg["alpha_ref"]),
        "outlier_channels": per_seed[0].get("outlier_channels", []),
        "outlier_scale": float(cfg["outlier_scale"]),
        "outlier_train_steps": int(cfg["outlier_train_steps"]),
        "outlier_train_final_loss": [
            rec["outlier_train_losses"][-1] for rec in per_seed if "outlier_train_losses" in rec
        ],
        "equivalence_max_abs_logit_diff": max(max(c["equivalence_diff"]) for c in per.values()),
        "equivalence_tolerance": float(cfg["equivalence_tolerance"]),
        "ppl_gain_pct_min": float(cfg["ppl_gain_pct_min"]),
        "seeds": [rec["seed"] for rec in per_seed],
        "model_parameters": int(info["model_parameters"]),
        "smoothed_inputs_per_layer": len(cfg["groups"]),
        "smoothed_inputs_fed_by_activation_function_per_layer": int("mlp_down" in cfg["groups"]),
        "calibration_blocks": info["calibration_blocks"],
        "valid_blocks": int(ctx.settings.get("measure", {}).get("eval_blocks", 32)),
        "block_size": info["block_size"],
        "eval_languages": info["languages"],
    }
    figures = [
        _figure_ppl(ctx.outdir, results, primary, schemes, sns, plt, save),
        _figure_channels(ctx.outdir, results, float(cfg["alpha_ref"]), sns, plt, save),
    ]
    tables = [_table_ppl(results, schemes, alphas), _table_ratios(results, float(cfg["alpha_ref"]))]
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
            model_parameters=int(info["model_parameters"]),
            calibration_blocks=info["calibration_blocks"],
            schemes=list(schemes),
            valid_blocks=metrics["valid_blocks"],
            block_size=info["block_size"],
            stress=stress,
        ),
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=tables,
        figures=figures,
        literature=_literature(metrics),
        skipped=[] if channels else [Msg("C16.skipped.no_outliers")],
    )


def resolve_plot_group(
    model: Any, valid: torch.Tensor, cfg: Mapping[str, Any], batch_size: int, device: str
) -> str:
    """The configured group, or (auto) the input with the largest max/median ratio in ``model``."""
    from whylab.quant import smoothquant as sq

    groups = sq.smooth_groups(model, cfg["groups"])
    choice = str(cfg["plot_group"])
    if choice != "auto":
        if choice not in {g.name for g in groups}:
            raise InputError(
                f"quantization.smoothquant.plot_group: {choice!r} is not one of "
                f"auto, {', '.join(g.name for g in groups)}"
            )
        return choice
    stats = sq.collect_act_absmax(
        model, valid, [g.linears[0] for g in groups], batch_size=batch_size, device=device
    )
    return max(groups, key=lambda g: sq.outlier_ratio(stats[g.linears[0]])).name


def _plot_payload(
    model: Any,
    smoothed: Any,
    groups: Sequence[Any],
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    plot_group: str,
) -> dict[str, Any]:
    from whylab.quant import smoothquant as sq

    group = next(g for g in groups if g.name == plot_group)
    name = group.linears[0]
    return {
        "group": group.name,
        "act_before": before[name].tolist(),
        "act_after": after[name].tolist(),
        "w_before": sq.weight_absmax(model, group).tolist(),
        "w_after": sq.weight_absmax(smoothed, group).tolist(),
    }


def _figure_ppl(
    outdir: Path,
    results: Mapping[str, Any],
    primary: str,
    schemes: Sequence[str],
    sns: Any,
    plt: Any,
    save: Any,
) -> Any:
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


def _figure_channels(
    outdir: Path, results: Mapping[str, Any], alpha: float, sns: Any, plt: Any, save: Any
) -> Any:
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


def _summary(m: Mapping[str, Any], cond: str) -> dict[str, Any]:
    """The numbers of one model at the verdict scheme and alpha_ref (means over seeds)."""
    c = m["conditions"][cond]
    vs = m["verdict_scheme"]
    naive, smooth = Spread.of(c["naive_change_pct"][vs]).mean, Spread.of(c["smooth_change_pct"][vs]).mean
    before, after = Spread.of(c["outlier_ratio_before"]).mean, Spread.of(c["outlier_ratio_after"]).mean
    return {
        "naive_loss_pct": naive,
        "smooth_loss_pct": smooth,
        "ratio_before": before,
        "ratio_after": after,
        "text": Msg(
            "C16.reason.summary",
            model=model_text(cond),
            before=before,
            after=after,
            vs=vs,
            naive=naive,
            smooth=smooth,
            n=len(c["ppl_fp32"]),
        ),
    }


def primary_text(m: Mapping[str, Any]) -> str:
    cond = m["primary_condition"]
    n = len(m["conditions"][cond]["ppl_fp32"])
    how = (
        Msg(
            "C16.reason.how_outliers",
            channels=str(m["outlier_channels"]),
            scale=float(m["outlier_scale"]),
            steps=m["outlier_train_steps"],
        )
        if cond == "outliers"
        else Msg("C16.reason.how_given")
    )
    return Msg(
        "C16.primary",
        vs=m["verdict_scheme"],
        alpha=float(m["alpha_ref"]),
        model_parameters=int(m["model_parameters"]),
        model=model_text(cond),
        how=how,
        n=n,
        draw=Msg("C16.reason.draw_and_finetune" if cond == "outliers" else "C16.reason.draw"),
        min_gain=float(m["ppl_gain_pct_min"]),
    )


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    cond = m["primary_condition"]
    s = _summary(m, cond)
    test = m["primary_test"]
    min_gain = float(m["ppl_gain_pct_min"])
    agrees: bool | None = None
    if s["naive_loss_pct"] < min_gain:
        note = Msg("C16.literature.smoothquant.nothing_to_fix", summary=s["text"])
    elif not test["n"] >= 2 or test["p"] is None or math.isnan(test["p"]):
        note = Msg("C16.literature.smoothquant.one_seed", summary=s["text"])
    else:
        agrees = test["mean_diff"] > min_gain and test["p"] < 0.05
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


def _paired(d: Mapping[str, Any]) -> PairedTest:
    """The stored paired test (JSON turns nan into null)."""

    def num(key: str) -> float:
        v = d.get(key)
        return math.nan if v is None else float(v)

    return PairedTest(
        int(d["n"]), num("mean_diff"), num("sd_diff"), num("t"), num("p"), num("ci_low"), num("ci_high")
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Exactness first; then the one primary comparison (paired over seeds); the notes' wording always."""
    out = VerdictOf(Kind.EXPERIMENT, primary_text(metrics))
    tol = float(metrics["equivalence_tolerance"])
    diff = float(metrics["equivalence_max_abs_logit_diff"])
    if not diff <= tol:
        return out.branch(Label.INCONCLUSIVE, "C16.verdict.not_exact", diff=diff, tol=tol)
    cond = metrics["primary_condition"]
    summary = _summary(metrics, cond)
    natural: Msg = empty()
    kinds = metrics.get("outlier_ratio_before_by_kind") or {}
    if "mlp_down" in kinds and len(kinds) > 1:
        others = max(v for k, v in kinds.items() if k != "mlp_down")
        if kinds["mlp_down"] > others:
            natural = Msg("C16.reason.natural_outliers", down=kinds["mlp_down"], others=others)
    wording = Msg("C16.reason.wording", natural=natural)
    min_gain = float(metrics["ppl_gain_pct_min"])
    test = _paired(metrics["primary_test"])
    gain = Msg("C16.reason.gain", mean=test.mean_diff, low=test.ci_low, high=test.ci_high, p=test.p)
    # every branch's texts draw on these (each template uses the ones it needs)
    params: dict[str, Any] = {
        "summary": summary["text"],
        "gain": gain,
        "wording": wording,
        "n": test.n,
        "gain_points": test.mean_diff,
        "naive": summary["naive_loss_pct"],
        "smooth": summary["smooth_loss_pct"],
        "before": summary["ratio_before"],
        "after": summary["ratio_after"],
        "vs": metrics["verdict_scheme"],
        "alpha": float(metrics["alpha_ref"]),
    }
    if summary["naive_loss_pct"] < min_gain:
        return out.branch(Label.INCONCLUSIVE, "C16.verdict.nothing_to_fix", **params)
    outcome = effect(test, min_gain)
    if outcome > 0:
        return out.branch(Label.PARTLY, "C16.verdict.wins_back", **params)
    if outcome < 0 or equivalent(test, min_gain):
        return out.branch(Label.NOT_SUPPORTED, "C16.verdict.no_gain", **params)
    return out.branch(Label.INCONCLUSIVE, "C16.verdict.within_noise", **params)
