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
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, PairedTest, Spread, Verdict, effect, equivalent, paired_test

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

WORDING = (
    "the notes' 'activation function' (활성화 함수) is a misnomer: SmoothQuant rescales "
    "activation channels, the inputs of linear layers, and never looks at the activation function"
)


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


CONDITIONS = {"trained": "as given", "outliers": "with outlier channels trained in"}


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
        (
            f" The deciding model: hidden channels {channels} of every RMSNorm output are made "
            f"{cfg['outlier_scale']:g}x larger (the function changes) and the whole model is then fine-tuned "
            f"with them for {cfg['outlier_train_steps']} AdamW steps (lr {cfg['outlier_train_lr']:g}) on "
            "training blocks drawn with the seed, so the outliers are part of a model trained to use them, "
            "as in large LLMs; each seed fine-tunes its own."
        )
        if channels
        else " The deciding model is the one given (no outlier condition)."
    )
    return Evidence(
        method=(
            f"SmoothQuant (Xiao et al. 2023) implemented in torch on the {info['model_parameters']:,}-parameter "
            "Llama: per-channel input maxima of every decoder linear layer are calibrated on "
            f"{info['calibration_blocks']} training blocks (a new random draw per seed); "
            "s_j = max|X_j|^α / max|W_j|^(1-α) is folded "
            "into the preceding RMSNorm (q/k/v, gate/up) or the preceding linear layer's output rows "
            "(o_proj via v_proj, down_proj via up_proj), which leaves the float model unchanged. "
            "Weights are then fake-quantized to INT8 per output channel and layer inputs to INT8 "
            f"({', '.join(schemes)}); validation perplexity on {metrics['valid_blocks']} blocks of "
            f"{info['block_size']} tokens is compared with FP32 and naive W8A8. Outliers: max/median of "
            "the per-channel input maxima on validation tokens, before and after smoothing." + stress
        ),
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=tables,
        figures=figures,
        literature=_literature(metrics),
        skipped=[] if channels else ["outlier condition: quantization.smoothquant.outlier_channels is 0"],
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
        "W8A8 perplexity change vs SmoothQuant α (deciding model)",
        f"Validation perplexity change against the same seed's FP32 model (the model {CONDITIONS[primary]}, "
        "which decides) after smoothing at each α and W8A8 fake quantization, mean ± sd over seeds; naive "
        "W8A8 without smoothing (dashed) and FP32 (dotted, 0%). α=0 moves no outlier difficulty into the "
        "weights, α=1 all of it.",
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
        "Per-channel maxima of the most outlier-laden input, before and after smoothing",
        "Left: the largest |value| each input channel of one layer takes on validation tokens (per model, "
        "the input with the largest max/median ratio, named above each panel); outlier channels stand far "
        "above the rest before smoothing and are flattened after it. Right: the matching weight columns' "
        "maxima, which grow where the activations shrank: SmoothQuant migrates the difficulty from "
        "activations into weights. Log scale; one row per model (as given; with outlier channels trained in).",
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
    return Table.from_records(
        "ppl",
        "Validation perplexity: FP32, naive W8A8 and SmoothQuant W8A8 at each α "
        "(mean and sd over calibration draws).",
        out,
    )


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
    return Table.from_records(
        "outliers",
        "Outlier ratio (max over median of per-channel input maxima, "
        "validation tokens) per smoothed input, mean over seeds.",
        records,
    )


def _summary(m: Mapping[str, Any], cond: str) -> dict[str, Any]:
    """The numbers of one model at the verdict scheme and alpha_ref (means over seeds)."""
    c = m["conditions"][cond]
    vs = m["verdict_scheme"]
    naive, smooth = Spread.of(c["naive_change_pct"][vs]).mean, Spread.of(c["smooth_change_pct"][vs]).mean
    before, after = Spread.of(c["outlier_ratio_before"]).mean, Spread.of(c["outlier_ratio_after"]).mean
    return {
        "naive_loss_pct": naive,
        "smooth_loss_pct": smooth,
        "text": (
            f"model {CONDITIONS[cond]}: max/median channel ratio {before:.3g} → {after:.3g} after smoothing; "
            f"W8A8 {vs} perplexity {naive:+.2f}% naive vs {smooth:+.2f}% smoothed (vs FP32, mean of "
            f"{len(c['ppl_fp32'])} seeds)"
        ),
    }


def primary_text(m: Mapping[str, Any]) -> str:
    cond = m["primary_condition"]
    n = len(m["conditions"][cond]["ppl_fp32"])
    how = (
        f"channels {m['outlier_channels']} ×{m['outlier_scale']:g}, fine-tuned in for {m['outlier_train_steps']} steps"
        if cond == "outliers"
        else "the model as given"
    )
    return (
        f"W8A8 ({m['verdict_scheme']}) perplexity change vs FP32, naive minus SmoothQuant at α={m['alpha_ref']:g}, "
        f"on the {m['model_parameters']:,}-parameter model {CONDITIONS[cond]} ({how}), {n} seeds paired "
        f"(each seed its own calibration draw{' and fine-tune' if cond == 'outliers' else ''}); minimum effect "
        f"{m['ppl_gain_pct_min']:g} percentage points"
    )


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    cond = m["primary_condition"]
    s = _summary(m, cond)
    test = m["primary_test"]
    min_gain = float(m["ppl_gain_pct_min"])
    agrees: bool | None = None
    if s["naive_loss_pct"] < min_gain:
        note = f"{s['text']}: naive W8A8 loses too little for smoothing to show what it fixes"
    elif not test["n"] >= 2 or test["p"] is None or math.isnan(test["p"]):
        note = f"{s['text']}: fewer than two seeds, no paired test"
    else:
        agrees = test["mean_diff"] > min_gain and test["p"] < 0.05
        note = f"{s['text']}; paired gain {test['mean_diff']:+.2f} points, p = {test['p']:.3g}"
    checks = [
        LiteratureCheck(
            "Xiao et al. 2023, SmoothQuant (ICML)",
            "Migrating activation outliers into weights (α≈0.5) lets W8A8, even per-tensor static, keep "
            "FP16 accuracy where naive W8A8 degrades badly (OPT-175B, BLOOM-176B, GLM-130B).",
            agrees,
            note,
        )
    ]
    before = Spread.of(m["conditions"]["trained"]["outlier_ratio_before"]).mean
    checks.append(
        LiteratureCheck(
            "Dettmers et al. 2022, LLM.int8()",
            "Outlier features up to ~20x larger than the rest sit in a few hidden channels, systematically "
            "in every layer of models from ~6.7B parameters.",
            None,
            f"the {m['model_parameters']:,}-parameter model as given has a mean max/median channel ratio of "
            f"{before:.3g}; the finding is about models from ~6.7B parameters, so this run cannot test it "
            "(the outlier condition trains that pattern into the small model instead)",
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
    primary = primary_text(metrics)
    tol = float(metrics["equivalence_tolerance"])
    diff = float(metrics["equivalence_max_abs_logit_diff"])
    if not diff <= tol:
        return Verdict(
            Label.INCONCLUSIVE,
            f"Smoothing alone changed the model's logits by {diff:.3g} (> {tol:.3g}), so this "
            "implementation is not the exact rewrite SmoothQuant requires; no conclusion.",
            primary=primary,
        )
    cond = metrics["primary_condition"]
    summary = _summary(metrics, cond)
    wording = WORDING
    kinds = metrics.get("outlier_ratio_before_by_kind") or {}
    if "mlp_down" in kinds and len(kinds) > 1:
        others = max(v for k, v in kinds.items() if k != "mlp_down")
        if kinds["mlp_down"] > others:
            wording += (
                f" (the model's largest natural outliers do sit right after the SiLU gate, in "
                f"down_proj's input: max/median {kinds['mlp_down']:.3g} vs at most {others:.3g} elsewhere, "
                "but SmoothQuant treats them by their statistics like any other input)"
            )
    min_gain = float(metrics["ppl_gain_pct_min"])
    test = _paired(metrics["primary_test"])
    gain = f"smoothing wins back {test.mean_diff:+.2f} points (95% CI {test.ci_low:+.2f} to {test.ci_high:+.2f}, p = {test.p:.3g})"
    if summary["naive_loss_pct"] < min_gain:
        return Verdict(
            Label.INCONCLUSIVE,
            f"Naive W8A8 loses almost nothing here ({summary['text']}), so there is nothing for smoothing "
            f"to fix; {wording}.",
            primary=primary,
        )
    outcome = effect(test, min_gain)
    if outcome > 0:
        return Verdict(
            Label.PARTLY,
            f"SmoothQuant does take the activations into account: {summary['text']}; {gain}. But {wording}.",
            primary=primary,
        )
    if outcome < 0 or equivalent(test, min_gain):
        return Verdict(
            Label.NOT_SUPPORTED,
            f"Naive W8A8 loses accuracy but smoothing does not win it back ({summary['text']}; {gain}), so "
            f"activation-aware quantization is not shown at work; and {wording}.",
            primary=primary,
        )
    return Verdict(
        Label.INCONCLUSIVE,
        f"Naive W8A8 loses accuracy, but whether smoothing wins it back is within the noise of "
        f"{test.n} seeds ({summary['text']}; {gain}); {wording}.",
        primary=primary,
    )
