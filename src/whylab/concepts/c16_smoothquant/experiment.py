"""C16's measurements: per seed, FP32, naive W8A8 and SmoothQuant W8A8 on the LM, as given and
with outlier channels trained in.

Measuring only: per seed, its calibration draw, its outlier fine-tune (when ``outlier_channels``
is above 0) and, on each model, the perplexities of every arm, the outlier ratios, the exactness
of smoothing alone and the channel maxima of one input for the figure. Deciding is in
``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from whylab.concepts.context import ConceptContext
from whylab.errors import InputError

DEFAULTS: dict[str, Any] = {
    "alphas": [0.0, 0.25, 0.5, 0.75, 1.0],
    "alpha_ref": 0.5,
    "act_schemes": ["per_tensor_static", "per_token_dynamic"],
    "verdict_scheme": "per_tensor_static",
    "groups": ["attn_in", "mlp_in"],  # the paper's smoothed inputs (norm-fed)
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


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """The definition check: torchao's smoothing factors on the LM with SiLU, GELU and ReLU swapped in,
    and llmcompressor's, as its own environment computed them (``--input llmcompressor``,
    :mod:`whylab.thirdparty.llmcompressor_check`)."""
    from whylab.concepts.c16_smoothquant.definition import activation_swap_check
    from whylab.thirdparty.records import llmcompressor_part

    cfg = _cfg(ctx.settings)
    model, pool, _valid, info = load_model_and_data(ctx)
    calib = pool[: int(info["calibration_blocks"])]
    return {
        "activation_swap": activation_swap_check(model, calib, float(cfg["alpha_ref"])),
        "activation_swap_llmcompressor": llmcompressor_part(ctx.inputs.get("llmcompressor"), "smoothquant"),
    }


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
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
    primary = "outliers" if "outliers" in models else "trained"  # the model that decides
    for cond, m in models.items():
        group = resolve_plot_group(m, valid, cfg, bs, ctx.device)
        # the full α sweep on the deciding model; α_ref alone on the other
        sweep = alphas if cond == primary else [float(cfg["alpha_ref"])]
        record["conditions"][cond] = evaluate_seed(m, calib, valid, cfg, info, ctx.device, sweep, group)
    return record


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
