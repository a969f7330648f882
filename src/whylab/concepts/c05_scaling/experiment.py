"""C05's measurements: the synthetic softmax probes (no model) and the bench LM trained with
each scaling, per seed.

Measuring only: ``measure`` gives the synthetic rows (measurements 1 and 2; random draws from the
first seed, no training), ``measure_seed`` one seed's training runs (measurement 3). Deciding is in
``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from whylab.bench.data import eval_windows, lm_data, load_tokenizer
from whylab.bench.model import BenchTransformer, MultiHeadAttention
from whylab.bench.train import bench_config, train_lm, train_settings
from whylab.concepts.c05_scaling.arms import SCALE_NAMES, SCALES
from whylab.concepts.context import ConceptContext
from whylab.errors import InputError

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


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """Measurements (1) and (2): no model, the draws seeded by the first seed."""
    s = ctx.settings
    threshold = float(s["saturation_max_prob"])
    seed0 = ctx.seeds[0]
    return {
        "synthetic_dk": synthetic_dk(
            s["d_k_values"],
            n_keys=int(s["n_keys"]),
            samples=int(s["samples"]),
            threshold=threshold,
            seed=seed0,
        ),
        "synthetic_heads": synthetic_heads(
            int(s["heads_d_model"]),
            s["heads_values"],
            n_keys=int(s["n_keys"]),
            samples=int(s["samples"]),
            threshold=threshold,
            seed=seed0,
        ),
    }


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
    d_model = int(c["model"]["d_model"])
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


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Measurement (3) for one seed: each (head count, scaling) trained from the same seed, so every
    arm starts from the same weights (the scaling has no parameters) and sees the same batches."""
    s = ctx.settings  # the rule merges the claim's section at the top level
    d_model = int(s["model"]["d_model"])
    overrides = {k: int(s[k]) for k in ("steps", "seq_len") if s[k]}  # null: the shared train settings
    _, train_ids, valid_ids = lm_data(ctx.inputs)
    vocab_size = lm_data_vocab(ctx)
    runs: list[dict[str, Any]] = []
    for heads, scale in training_arms(ctx):
        model_overrides: dict[str, Any] = {"n_heads": heads, "scale": scale}
        if s["unit_variance_qk"]:
            model_overrides["qk_init_std"] = 1.0 / math.sqrt(d_model)
        cfg = bench_config(s["model"], vocab_size=vocab_size, **model_overrides)
        torch.manual_seed(seed)
        model = BenchTransformer(cfg).to(ctx.device)
        ts = train_settings(s["train"], seed=seed, **overrides)
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
    return int(load_tokenizer(ctx.inputs["tokenizer"]).get_vocab_size())
