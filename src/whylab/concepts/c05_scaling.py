"""C05 — attention scores are divided by the square root of a dimension, because large score
variance saturates the softmax and makes gradients vanish. Which dimension?

The notes' text says "the embedding dimension" (임베딩차원); their code divides by √d_k. Vaswani et
al. (2017, 3.2.1) argue: if the components of q and k are independent with mean 0 and variance 1,
q·k has variance d_k, so for large d_k the softmax is pushed "into regions where it has extremely
small gradients"; dividing by √d_k brings the variance back to 1. With h heads, d_k = d_model / h,
so dividing by √d_model instead leaves a variance of 1/h: it shrinks the scores too much.

Three measurements:
(1) synthetic, no model: variance of q·k against d_k; softmax max-probability, entropy and the
    gradient that flows back through the softmax, with and without the scaling;
(2) synthetic, the dimension question: at a fixed model width, scaling by √d_k vs √d_model vs
    nothing for several head counts;
(3) training: the bench LM on the corpus with each scaling at several d_k (head counts at a fixed
    width), over seeds; W_q, W_k start with unit-variance outputs so the argument's premise holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from whylab import plotting
from whylab.bench.data import eval_windows, lm_data
from whylab.bench.model import BenchTransformer, MultiHeadAttention
from whylab.bench.train import bench_config, train_lm, train_settings
from whylab.concepts import ConceptContext
from whylab.concepts._bench_common import curve, describe, paired
from whylab.errors import InputError
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, Spread, Verdict, VerdictOf, clearly_less

CLAIM_ID = "C05"
SCALES = ("sqrt_dk", "sqrt_dmodel", "none")
SCALE_NAMES = {"sqrt_dk": "÷√d_k", "sqrt_dmodel": "÷√d_model", "none": "no scaling"}
# what "the mechanism holds" needs, from the synthetic numbers
SLOPE_RANGE = (0.85, 1.15)  # log-log slope of var(q·k) against d_k (theory: 1)
GRAD_SHRINK = 0.1  # unscaled softmax-input gradient at the largest d_k below this share of the scaled one
SATURATED_SHARE = 0.5  # "the softmax saturates": at least this share of rows past saturation_max_prob
OVER_SHRINK_VAR = 0.5  # score variance after ÷√d_model below this = "over-shrinks"


# --------------------------------------------------------------------------- synthetic measurements


def softmax_probe(
    d_k: int, scale: float | None, *, n_keys: int, samples: int, generator: torch.Generator
) -> dict[str, Any]:
    """Random unit-variance q and keys; one softmax row per sample; a scalar value per key.

    Returns the variance of the raw scores q·k, the standard deviation of the scaled scores,
    the mean max-probability and entropy of the softmax, the share of saturated rows, and the
    median gradient norm of L = Σ_j p_j v_j at the softmax input (the logits) and at the query.
    """
    q = torch.randn(samples, d_k, generator=generator)
    keys = torch.randn(samples, n_keys, d_k, generator=generator)
    values = torch.randn(samples, n_keys, generator=generator)
    q.requires_grad_(True)
    raw = torch.einsum("nd,nkd->nk", q, keys)
    logits = raw * scale if scale is not None else raw * 1.0
    logits.retain_grad()
    p = F.softmax(logits, dim=-1)
    (p * values).sum().backward()
    assert q.grad is not None and logits.grad is not None
    entropy = -torch.special.xlogy(p, p).sum(-1)
    return {
        "var_raw": float(raw.detach().var()),
        "std_scaled": float(logits.detach().std()),
        "max_prob": float(p.detach().max(-1).values.mean()),
        "entropy": float(entropy.detach().mean()),
        "entropy_norm": float(entropy.detach().mean() / math.log(n_keys)),
        "max_prob_rows": p.detach().max(-1).values,  # for the saturation share, dropped later
        "grad_logits": float(logits.grad.norm(dim=-1).median()),
        "grad_query": float(q.grad.norm(dim=-1).median()),
    }


def scale_for(kind: str, d_k: int, d_model: int) -> float | None:
    if kind == "sqrt_dk":
        return 1.0 / math.sqrt(d_k)
    if kind == "sqrt_dmodel":
        return 1.0 / math.sqrt(d_model)
    return None


def synthetic_dk(
    d_k_values: Sequence[int], *, n_keys: int, samples: int, threshold: float, seed: int
) -> list[dict[str, Any]]:
    """Measurement (1): each d_k, unscaled and ÷√d_k, on the same random draws."""
    rows = []
    for d_k in d_k_values:
        for kind in ("none", "sqrt_dk"):
            gen = torch.Generator().manual_seed(seed * 100_003 + d_k)  # same draws for both scalings
            r = softmax_probe(d_k, scale_for(kind, d_k, d_k), n_keys=n_keys, samples=samples, generator=gen)
            saturated = float((r.pop("max_prob_rows") > threshold).float().mean())
            rows.append({"d_k": d_k, "scaling": kind, **r, "saturated_share": saturated})
    return rows


def synthetic_heads(
    d_model: int, heads_values: Sequence[int], *, n_keys: int, samples: int, threshold: float, seed: int
) -> list[dict[str, Any]]:
    """Measurement (2): a fixed model width cut into h heads, each scaling."""
    rows = []
    for h in heads_values:
        if d_model % h:
            raise InputError(f"mechanisms.C05.heads_values: {h} does not divide heads_d_model={d_model}")
        d_k = d_model // h
        for kind in SCALES:
            gen = torch.Generator().manual_seed(seed * 100_003 + 7 * d_k + 1)
            r = softmax_probe(
                d_k, scale_for(kind, d_k, d_model), n_keys=n_keys, samples=samples, generator=gen
            )
            saturated = float((r.pop("max_prob_rows") > threshold).float().mean())
            rows.append(
                {
                    "heads": h,
                    "d_k": d_k,
                    "scaling": kind,
                    **r,
                    "score_var_scaled": r["std_scaled"] ** 2,
                    "saturated_share": saturated,
                }
            )
    return rows


def loglog_slope(x: Iterable[float], y: Iterable[float]) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(list(x), float)), np.log(np.asarray(list(y), float)), 1)[0])


# --------------------------------------------------------------------------- training


def causal_attention_entropy(model: BenchTransformer, x: torch.Tensor) -> float:
    """Mean attention entropy over layers, heads and query positions ≥ 1, each divided by the
    entropy of a uniform distribution over its visible keys (log(i+1)): 1 = uniform, 0 = one-hot."""
    was = model.training
    model.eval()
    with torch.no_grad():
        maps = model(x, return_attention=True).attentions
    model.train(was)
    assert maps is not None
    t = x.shape[1]
    norm = torch.log(torch.arange(1, t + 1, dtype=torch.float32, device=x.device))[1:]
    values = []
    for w in maps:
        h = -torch.special.xlogy(w, w).sum(-1)[..., 1:]  # (B, H, T-1)
        values.append((h / norm).mean())
    return float(torch.stack(values).mean())


def query_grad_norm(model: BenchTransformer, x: torch.Tensor, y: torch.Tensor) -> float:
    """Norm of the loss gradient reaching W_q (all layers together), at the current weights."""
    model.zero_grad(set_to_none=True)
    logits = model(x).logits
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
    grads = [
        m.q_proj.weight.grad
        for m in model.modules()
        if isinstance(m, MultiHeadAttention) and m.q_proj is not None
    ]
    norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads if g is not None])))
    model.zero_grad(set_to_none=True)
    return norm


def training_arms(ctx: ConceptContext) -> list[tuple[int, str]]:
    """(heads, scaling) of every training run: each head count with each scaling, except ÷√d_model
    at one head (identical to ÷√d_k there)."""
    c = ctx.settings
    d_model = int(c.get("model", {}).get("d_model", 64))
    arms = []
    for heads in c["train_heads"]:
        if d_model % heads:
            raise InputError(
                f"mechanisms.C05.train_heads: {heads} does not divide mechanisms.model.d_model={d_model}"
            )
        for scale in c["train_scales"]:
            if not (scale == "sqrt_dmodel" and heads == 1):
                arms.append((int(heads), str(scale)))
    return arms


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Measurement (3) for one seed: each (head count, scaling) trained from the same seed, so every
    arm starts from the same weights (the scaling has no parameters) and sees the same batches."""
    s = c = ctx.settings  # the rule merges the claim's section at the top level
    d_model = int(s.get("model", {}).get("d_model", 64))
    overrides = {k: int(c[k]) for k in ("steps", "seq_len") if c.get(k)}
    _, train_ids, valid_ids = lm_data(ctx.inputs)
    vocab_size = lm_data_vocab(ctx)
    runs: list[dict[str, Any]] = []
    for heads, scale in training_arms(ctx):
        model_overrides: dict[str, Any] = {"n_heads": heads, "scale": scale}
        if c.get("unit_variance_qk", True):
            model_overrides["qk_init_std"] = 1.0 / math.sqrt(d_model)
        cfg = bench_config(s.get("model", {}), vocab_size=vocab_size, **model_overrides)
        torch.manual_seed(seed)
        model = BenchTransformer(cfg).to(ctx.device)
        ts = train_settings(s.get("train", {}), seed=seed, **overrides)
        probe_x, probe_y = eval_windows(valid_ids, seq_len=ts.seq_len, max_windows=8)
        probe_x, probe_y = probe_x.to(ctx.device), probe_y.to(ctx.device)
        grad0 = query_grad_norm(model, probe_x, probe_y)
        entropy0 = causal_attention_entropy(model, probe_x)
        hist = train_lm(model, train_ids, valid_ids, ts, device=ctx.device)
        runs.append(
            {
                "variant": f"d_k={d_model // heads}, {SCALE_NAMES[scale]}",
                "heads": heads,
                "d_k": d_model // heads,
                "scaling": scale,
                "seed": seed,
                "final_eval_loss": hist.final_eval_loss if math.isfinite(hist.final_eval_loss) else None,
                "diverged": bool(hist.diverged),
                "grad_wq_init": grad0,
                "attention_entropy_init": entropy0,
                "attention_entropy_final": causal_attention_entropy(model, probe_x),
                "curve": {
                    "eval_steps": list(hist.eval_steps),
                    "eval_loss": [float(v) for v in hist.eval_loss],
                },
            }
        )
    return {"seed": seed, "runs": runs}


def lm_data_vocab(ctx: ConceptContext) -> int:
    from whylab.bench.data import load_tokenizer

    return int(load_tokenizer(ctx.inputs["tokenizer"]).get_vocab_size())


def _spread(values: Iterable[Any]) -> dict[str, Any]:
    vals = [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
    ok = [v for v in vals if v is not None]
    if not ok:
        return {"mean": None, "std": None, "values": vals}
    sp = Spread.of(ok)
    return {"mean": sp.mean, "std": None if math.isnan(sp.std) else sp.std, "values": vals}


def summarise_training(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per d_k: final loss per scaling (mean, std, per seed in seed order)."""
    frame = pd.DataFrame(runs).sort_values("seed", kind="stable")
    out: dict[str, Any] = {}
    for _, group in frame.groupby("d_k"):
        per_scale = {
            scale: {
                "final_eval_loss": _spread(g["final_eval_loss"]),
                "grad_wq_init": _spread(g["grad_wq_init"]),
                "attention_entropy_init": _spread(g["attention_entropy_init"]),
                "attention_entropy_final": _spread(g["attention_entropy_final"]),
                "diverged": int(g["diverged"].sum()),
            }
            for scale, g in group.groupby("scaling")
        }
        out[str(int(group["d_k"].iloc[0]))] = {"heads": int(group["heads"].iloc[0]), "scalings": per_scale}
    return out


# --------------------------------------------------------------------------- run


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    s = ctx.settings
    threshold = float(s["saturation_max_prob"])
    seed0 = ctx.seeds[0]
    dk_rows = synthetic_dk(
        s["d_k_values"], n_keys=int(s["n_keys"]), samples=int(s["samples"]), threshold=threshold, seed=seed0
    )
    head_rows = synthetic_heads(
        int(s["heads_d_model"]),
        s["heads_values"],
        n_keys=int(s["n_keys"]),
        samples=int(s["samples"]),
        threshold=threshold,
        seed=seed0,
    )
    runs = [run for r in per_seed for run in r["runs"]]
    histories: dict[str, list[Any]] = {}
    for run in runs:
        histories.setdefault(run["variant"], []).append(curve(run["curve"]))

    dk = pd.DataFrame(dk_rows)
    raw = dk[dk.scaling == "none"].sort_values("d_k")
    scaled = dk[dk.scaling == "sqrt_dk"].sort_values("d_k")
    heads = pd.DataFrame(head_rows)
    metrics: dict[str, Any] = {
        "n_keys": int(s["n_keys"]),
        "saturation_max_prob": threshold,
        "synthetic": {
            "d_k": [int(v) for v in raw["d_k"]],
            "var_raw": list(raw["var_raw"]),
            "var_scaled": list(scaled["std_scaled"] ** 2),
            "var_slope": loglog_slope(raw["d_k"], raw["var_raw"]),
            "max_prob": {"none": list(raw["max_prob"]), "sqrt_dk": list(scaled["max_prob"])},
            "entropy_norm": {"none": list(raw["entropy_norm"]), "sqrt_dk": list(scaled["entropy_norm"])},
            "saturated_share": {
                "none": list(raw["saturated_share"]),
                "sqrt_dk": list(scaled["saturated_share"]),
            },
            "grad_logits": {"none": list(raw["grad_logits"]), "sqrt_dk": list(scaled["grad_logits"])},
            "grad_query": {"none": list(raw["grad_query"]), "sqrt_dk": list(scaled["grad_query"])},
        },
        "heads": {
            "d_model": int(s["heads_d_model"]),
            "heads": sorted({int(h) for h in heads["heads"]}),
            "score_var_scaled": {
                k: list(g.sort_values("heads")["score_var_scaled"]) for k, g in heads.groupby("scaling")
            },
            "entropy_norm": {
                k: list(g.sort_values("heads")["entropy_norm"]) for k, g in heads.groupby("scaling")
            },
        },
        "training": summarise_training(runs),
        "training_d_model": int(s.get("model", {}).get("d_model", 64)),
        "n_seeds": len(per_seed),
        "thresholds": {"min_loss_gain": float(s["min_loss_gain"])},
    }
    metrics["paired"] = paired_comparisons(metrics)

    figures = [
        _figure_variance(ctx, raw, scaled),
        _figure_softmax(ctx, dk, threshold),
        _figure_heads(ctx, heads),
        _figure_training(ctx, histories),
    ]
    run_frame = pd.DataFrame(runs)
    tables = [
        Table.from_records(
            "synthetic_dk",
            Msg("C05.table.synthetic_dk.caption", n_keys=s["n_keys"], samples=s["samples"]),
            [_round(r) for r in dk_rows],
        ),
        Table.from_records(
            "synthetic_heads",
            Msg("C05.table.synthetic_heads.caption", d_model=s["heads_d_model"]),
            [
                _round(
                    {
                        k: r[k]
                        for k in (
                            "heads",
                            "d_k",
                            "scaling",
                            "score_var_scaled",
                            "entropy_norm",
                            "max_prob",
                            "grad_query",
                        )
                    }
                )
                for r in head_rows
            ],
        ),
        Table.from_records(
            "training",
            Msg("C05.table.training.caption"),
            _training_rows(run_frame),
        ),
    ]
    v = metrics["synthetic"]
    return Evidence(
        method=Msg("C05.method", d_min=min(s["d_k_values"]), d_max=max(s["d_k_values"])),
        metrics=metrics,
        seeds=[int(r["seed"]) for r in per_seed],
        tables=tables,
        figures=figures,
        literature=_literature(metrics),
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


# --------------------------------------------------------------------------- verdict


def _mechanism(m: Mapping[str, Any]) -> tuple[bool, dict[str, float]]:
    """The synthetic part: variance ∝ d_k; at the largest d_k most unscaled softmax rows are
    saturated (few scaled ones are), and the gradient at the softmax input collapses."""
    syn = m["synthetic"]
    slope = float(syn["var_slope"])
    sat_raw = float(syn["saturated_share"]["none"][-1])
    sat_scaled = float(syn["saturated_share"]["sqrt_dk"][-1])
    grad_raw = float(syn["grad_logits"]["none"][-1])
    grad_scaled = float(syn["grad_logits"]["sqrt_dk"][-1])
    ratio = grad_raw / grad_scaled if grad_scaled > 0 else math.inf
    numbers = {
        "slope": slope,
        "saturated_raw": sat_raw,
        "saturated_scaled": sat_scaled,
        "grad_ratio": ratio,
        "d_k": float(syn["d_k"][-1]),
    }
    holds = (
        SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]
        and sat_raw >= SATURATED_SHARE
        and sat_scaled < SATURATED_SHARE
        and ratio < GRAD_SHRINK
    )
    return holds, numbers


def paired_comparisons(m: Mapping[str, Any]) -> dict[str, Any]:
    """The two pre-registered training comparisons, paired by seed (same initial weights, same
    batches), each with the effect floor ``min_loss_gain`` (nats/token):

    - ``scaling``: no scaling − ÷√d_k at the largest trained d_k (positive: scaling helps);
    - ``dimension``: ÷√d_model − ÷√d_k at the smallest trained d_k, i.e. the most heads, where the
      two differ most (positive: d_k is the better dimension; equivalent: it does not matter,
      since a constant factor can be absorbed by W_q).
    """
    training = m.get("training", {})
    floor = float(m["thresholds"]["min_loss_gain"])
    out: dict[str, Any] = {}
    with_none = [int(d) for d, t in training.items() if {"sqrt_dk", "none"} <= set(t["scalings"])]
    if with_none:
        d_k = max(with_none)
        sc = training[str(d_k)]["scalings"]
        out["scaling"] = {
            "d_k": d_k,
            **paired(
                sc["none"]["final_eval_loss"]["values"], sc["sqrt_dk"]["final_eval_loss"]["values"], floor
            ),
        }
    with_model = [int(d) for d, t in training.items() if {"sqrt_dk", "sqrt_dmodel"} <= set(t["scalings"])]
    if with_model:
        d_k = min(with_model)
        sc = training[str(d_k)]["scalings"]
        out["dimension"] = {
            "d_k": d_k,
            "heads": training[str(d_k)]["heads"],
            **paired(
                sc["sqrt_dmodel"]["final_eval_loss"]["values"],
                sc["sqrt_dk"]["final_eval_loss"]["values"],
                floor,
            ),
        }
    return out


def _vanishing_from(m: Mapping[str, Any]) -> int | None:
    """The smallest synthetic d_k at which the unscaled gradient at the softmax input is below
    GRAD_SHRINK of the scaled one (the gradient has vanished), or None."""
    syn = m["synthetic"]
    for d_k, raw, scaled in zip(
        syn["d_k"], syn["grad_logits"]["none"], syn["grad_logits"]["sqrt_dk"], strict=True
    ):
        if scaled > 0 and raw / scaled < GRAD_SHRINK:
            return int(d_k)
    return None


def _gradient_note(m: Mapping[str, Any]) -> Msg:
    """Where the gradient vanishes, stated only where this run shows it: at the trained d_k (the
    gradient reaching W_q at initialisation) and in the synthetic check (from which d_k on)."""
    training = m.get("training", {})
    pairs = [int(d) for d, t in training.items() if {"sqrt_dk", "none"} <= set(t["scalings"])]
    start = _vanishing_from(m)
    synthetic = (
        Msg("C05.reason.synthetic_vanishes", shrink=GRAD_SHRINK, start=start)
        if start is not None
        else Msg("C05.reason.synthetic_never", shrink=GRAD_SHRINK)
    )
    if not pairs:
        return synthetic
    d_k = max(pairs)
    sc = training[str(d_k)]["scalings"]
    raw = [v for v in sc["none"]["grad_wq_init"]["values"] if v is not None]
    scaled = [v for v in sc["sqrt_dk"]["grad_wq_init"]["values"] if v is not None]
    if len(raw) < 2 or len(scaled) < 2:
        return synthetic
    r, q = Spread.of(raw).mean, Spread.of(scaled).mean
    shrunk = clearly_less(raw, scaled)
    trained = Msg(
        "C05.reason.trained_smaller" if shrunk else "C05.reason.trained_not_smaller", d_k=d_k, raw=r, scaled=q
    )
    return Msg("C05.reason.gradient", trained=trained, synthetic=synthetic)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided by training, paired over seeds (the synthetic numbers illustrate the mechanism and do
    not decide: they hold by construction on random unit-variance vectors).

    - scaling: ÷√d_k clearly better than no scaling at the largest trained d_k → the core holds;
      clearly worse → not supported; no difference that matters → partly; unclear → inconclusive.
    - dimension: ÷√d_k clearly better than ÷√d_model (the notes' "embedding dimension") → partly,
      with the correction; equivalent → no caveat (W_q absorbs a constant factor); unclear → a
      limit of this run.
    """
    from whylab.verdict import Kind

    pc = metrics.get("paired", {})
    out = VerdictOf(Kind.EXPERIMENT, Msg("C05.primary", seeds=metrics["n_seeds"]))
    _, n = _mechanism(metrics)
    mech = Msg(
        "C05.reason.mechanism",
        slope=n["slope"],
        d_k=n["d_k"],
        saturated_raw=n["saturated_raw"],
        saturated_scaled=n["saturated_scaled"],
    )
    grad_note = _gradient_note(metrics)

    sc = pc.get("scaling")
    if sc is None or sc["n"] < 2:
        return out.branch(Label.INCONCLUSIVE, "C05.verdict.no_training", mech=mech)
    sc_text = Msg("C05.reason.scaling", d_k=sc["d_k"], delta=describe(sc, "nats/token"))
    dim = pc.get("dimension")
    dim_text = empty()
    dim_wrong = False
    if dim is None or dim["n"] < 2:
        out.limited.append(Msg("C05.limited.dimension_untrained"))
    else:
        dim_note = empty()
        if dim["effect"] == 1:
            dim_wrong = True
        elif dim["equivalent"]:
            dim_note = Msg("C05.reason.dimension_equivalent")
        elif dim["effect"] == 0:
            out.limited.append(Msg("C05.limited.dimension_unclear"))
        dim_text = Msg(
            "C05.reason.dimension",
            heads=dim["heads"],
            d_k=dim["d_k"],
            delta=describe(dim, "nats/token"),
            note=dim_note,
        )
    tail = Msg("C05.reason.tail", scaling=sc_text, dimension=dim_text, gradient=grad_note)
    if sc["effect"] == -1:
        return out.branch(Label.NOT_SUPPORTED, "C05.verdict.hurts", tail=tail)
    if sc["effect"] == 0:
        if sc["equivalent"]:
            return out.branch(Label.PARTLY, "C05.verdict.no_difference", mech=mech, tail=tail)
        out.limited.append(Msg("C05.limited.scaling_unclear"))
        return out.branch(Label.INCONCLUSIVE, "C05.verdict.unclear", mech=mech, tail=tail)
    if dim_wrong:
        return out.branch(Label.PARTLY, "C05.verdict.wrong_dimension", tail=tail)
    return out.branch(Label.SUPPORTED, "C05.verdict.scaled", tail=tail)


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    holds, n = _mechanism(m)
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
