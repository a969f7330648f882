"""C03's measurements: per seed, the learned baseline's table before and after training and the
same LM trained with the table frozen at random values.

Measuring only: the losses and curves of every arm, how far each table moved, how a row's move
relates to its token's count, the neighbour sets and same-word pairs before and after, and what
the decision and the figures need of the corpus (token counts, the sample tokens' text). Deciding
is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from whylab.bench.lab import build_model, history_dict, learned_baseline, load_corpus
from whylab.bench.train import bench_config, train_lm, train_settings
from whylab.concepts.c03_embedding import FROZEN, FROZEN_UNIT, LEARNED
from whylab.concepts.context import ConceptContext
from whylab.errors import InputError
from whylab.files import finite


def row_relative_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per token: ‖E_after[i] − E_before[i]‖ / ‖E_before[i]‖."""
    return (after - before).norm(dim=1) / before.norm(dim=1).clamp_min(1e-12)


def table_relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """‖E_after − E_before‖_F / ‖E_before‖_F for the whole table."""
    return float((after - before).norm() / before.norm().clamp_min(1e-12))


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Rank correlation (ties averaged); nan when either side is constant."""
    frame = pd.DataFrame({"x": list(x), "y": list(y)})
    value = frame["x"].rank().corr(frame["y"].rank())
    return float(value) if value == value else math.nan


def nearest_neighbours(table: torch.Tensor, ids: Sequence[int], k: int) -> list[list[int]]:
    """For each id, the k other rows with the highest cosine similarity."""
    unit = F.normalize(table, dim=1)
    sims = unit[list(ids)] @ unit.T
    sims[torch.arange(len(ids)), torch.tensor(list(ids))] = -math.inf
    return sims.topk(k, dim=1).indices.tolist()


def neighbour_overlap(before: torch.Tensor, after: torch.Tensor, ids: Sequence[int], k: int) -> float:
    """Mean share of each token's k nearest neighbours that are the same before and after."""
    nb, na = nearest_neighbours(before, ids, k), nearest_neighbours(after, ids, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nb, na, strict=True)]))


def variant_pairs(tokenizer: Any, counts: torch.Tensor, min_count: int) -> list[tuple[int, int]]:
    """Pairs of distinct tokens that spell the same word up to case and a leading space
    ("the" / " the" / "The", "법률" / " 법률"): related by meaning, unrelated at initialisation."""
    groups: dict[str, list[int]] = {}
    for tok_id in torch.nonzero(counts >= min_count).flatten().tolist():
        text = tokenizer.decode([tok_id])
        norm = text.strip().lower()
        if len(norm) >= 2 and "\ufffd" not in norm:
            groups.setdefault(norm, []).append(tok_id)
    pairs: list[tuple[int, int]] = []
    for members in groups.values():
        members = sorted(members)
        pairs.extend((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return pairs


def mean_pair_cosine(table: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> float:
    if not pairs:
        return math.nan
    a = torch.tensor([p[0] for p in pairs])
    b = torch.tensor([p[1] for p in pairs])
    return float(F.cosine_similarity(table[a], table[b], dim=1).mean())


def sample_token_ids(tokenizer: Any, counts: torch.Tensor, words: Sequence[str], n: int) -> list[int]:
    """The configured words that are a single token (with or without a leading space), topped up
    with the most frequent multi-character tokens so the table always has ``n`` rows."""
    chosen: list[int] = []
    for word in words:
        for variant in (" " + word, word):
            ids = tokenizer.encode(variant).ids
            if len(ids) == 1 and counts[ids[0]] > 0 and ids[0] not in chosen:
                chosen.append(ids[0])
                break
    for tok_id in counts.argsort(descending=True).tolist():
        if len(chosen) >= n:
            break
        if tok_id not in chosen and len(tokenizer.decode([tok_id]).strip()) >= 2:
            chosen.append(tok_id)
    return chosen[:n]


def run_frozen(
    ctx: ConceptContext, corpus: Any, seed: int, embedding_std: float | None
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Train one LM with the token table frozen; ``embedding_std`` redraws the table N(0, std²)
    (from the seed) before training. Returns (run summary, table before, table after)."""
    cfg = bench_config(ctx.settings.get("model", {}), vocab_size=corpus.vocab_size, freeze_embedding=True)
    model = build_model(cfg, seed, ctx.device)
    if embedding_std is not None:
        gen = torch.Generator().manual_seed(seed)
        table = torch.randn(model.token_embedding.weight.shape, generator=gen) * embedding_std
        with torch.no_grad():
            model.token_embedding.weight.copy_(table)
    before = model.token_embedding.weight.detach().cpu().clone()
    history = train_lm(
        model,
        corpus.train,
        corpus.valid,
        train_settings(ctx.settings.get("train", {}), seed=seed),
        device=ctx.device,
    )
    after = model.token_embedding.weight.detach().cpu().clone()
    return _run_summary(history), before, after


def _run_summary(history: Any) -> dict[str, Any]:
    return {
        "initial_loss": finite(history.eval_loss[0]) if history.eval_loss else None,
        "eval_loss": finite(history.final_eval_loss),
        "diverged": bool(history.diverged),
        "curve": history_dict(history),
    }


def frozen_plans(settings: dict[str, Any]) -> dict[str, float | None]:
    """The frozen tables to train: arm -> std of its random table (None: the model's own init)."""
    plans: dict[str, float | None] = {FROZEN: None} if settings["frozen_model_init"] else {}
    if settings["frozen_unit_std"] is not None:
        plans[FROZEN_UNIT] = float(settings["frozen_unit_std"])
    if not plans:
        raise InputError(
            "mechanisms.C03.frozen_unit_std: null together with frozen_model_init: false leaves no frozen table"
        )
    return plans


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """One seed: the learned baseline (shared with C04, C06) and the frozen tables, with the
    learned table's movement and geometry. The frozen runs share every other initial weight and
    every batch with the baseline of the same seed (paired)."""
    st = ctx.settings
    plans = frozen_plans(st)
    corpus = load_corpus(ctx.inputs)
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size)
    cfg = bench_config(st.get("model", {}), vocab_size=corpus.vocab_size)
    fresh = build_model(cfg, seed, "cpu").token_embedding
    before = fresh.weight.detach().clone()
    model, history = learned_baseline(st, ctx.inputs, corpus, seed, ctx.device)
    after = model.token_embedding.weight.detach().cpu().clone()
    runs: dict[str, dict[str, Any]] = {LEARNED: _run_summary(history)}
    change = {LEARNED: table_relative_change(before, after)}
    for key, std in plans.items():
        runs[key], fb, fa = run_frozen(ctx, corpus, seed, std)
        change[key] = table_relative_change(fb, fa)

    k = int(st["n_neighbours"])
    seen = counts > 0
    frequent = counts.argsort(descending=True)[: int(st["overlap_tokens"])].tolist()
    pairs = variant_pairs(corpus.tokenizer, counts, int(st["pair_min_count"]))
    rel = row_relative_change(before, after)
    sample = sample_token_ids(corpus.tokenizer, counts, st["sample_words"], int(st["sample_tokens"]))
    neighbours_before = nearest_neighbours(before, sample, k)
    neighbours_after = nearest_neighbours(after, sample, k)

    def text(ids: list[int]) -> list[str]:
        return [corpus.tokenizer.decode([i]) for i in ids]

    return {
        "seed": seed,
        "runs": runs,
        "table_change": change,
        "spearman": finite(spearman(np.log(counts[seen].double().numpy()), rel[seen].numpy())),
        "unseen_change": finite(float(rel[~seen].mean())) if (~seen).any() else None,
        "overlap": neighbour_overlap(before, after, frequent, k),
        "pair_cos_before": finite(mean_pair_cosine(before, pairs)),
        "pair_cos_after": finite(mean_pair_cosine(after, pairs)),
        "pairs": len(pairs),
        "row_change": [round(float(v), 6) for v in rel],
        "sample": sample,
        "neighbours_before": neighbours_before,
        "neighbours_after": neighbours_after,
        "embedding_parameters": int(before.numel()),
        # the definition check: the bench model's token table is an nn.Embedding with a trainable weight
        "embedding": {"class": type(fresh).__name__, "trainable": bool(fresh.weight.requires_grad)},
        # of the corpus (the same for every seed): what the decision and the figures read
        "vocab_size": corpus.vocab_size,
        "token_counts": counts.tolist(),
        "sample_text": text(sample),
        "neighbours_before_text": [text(ids) for ids in neighbours_before],
        "neighbours_after_text": [text(ids) for ids in neighbours_after],
    }
