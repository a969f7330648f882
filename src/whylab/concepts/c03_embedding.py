"""C03: the embedding table (nn.Embedding) is itself learned.

If it is, training moves its rows (the more often a token is seen, the more its row moves; rows of
tokens never seen in the training inputs get no gradient at all), the geometry of the table changes
(nearest neighbours before and after differ; spellings of the same word such as "the"/" The" move
together), and learning it matters: the same model with the table frozen at random values should
end at a higher loss. The last point has an honest nuance: a frozen random table is still a usable
code (random vectors in 64 dimensions are nearly orthogonal) and the layers after it adapt, so the
frozen model trains too, and how well depends on the scale of the frozen vectors (at GPT-2's init
std 0.02 they are drowned by the learned positional embedding). So two frozen tables are tried, the
model's own initial one and one at unit scale (nn.Embedding's default N(0, 1)), and learning is
held against the better of the two.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F

from whylab import plotting
from whylab.bench.train import bench_config, train_lm, train_settings
from whylab.concepts import ConceptContext
from whylab.concepts._bench_common import build_model, fmt, load_corpus, over_seeds, plot_curves, summary
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, Spread, Verdict, clearly_less

CLAIM_ID = "C03"

LEARNED, FROZEN, FROZEN_UNIT = "learned", "frozen", "frozen_unit"
NAMES = {
    LEARNED: "learned embedding",
    FROZEN: "frozen random embedding (model init)",
    FROZEN_UNIT: "frozen random embedding (unit scale)",
}


# --------------------------------------------------------------------------- measurements
def row_relative_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per token: ‖E_after[i] − E_before[i]‖ / ‖E_before[i]‖."""
    return (after - before).norm(dim=1) / before.norm(dim=1).clamp_min(1e-12)


def table_relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """‖E_after − E_before‖_F / ‖E_before‖_F for the whole table."""
    return float((after - before).norm() / before.norm().clamp_min(1e-12))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
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
    pairs = []
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


# --------------------------------------------------------------------------- one training run
def run_one(
    ctx: ConceptContext, corpus: Any, seed: int, freeze: bool, embedding_std: float | None = None
) -> dict[str, Any]:
    """Train one LM; ``embedding_std`` redraws the token table N(0, std²) (same seed) before training."""
    cfg = bench_config(ctx.settings.get("model", {}), vocab_size=corpus.vocab_size, freeze_embedding=freeze)
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
    return {
        "history": history,
        "initial_loss": history.eval_loss[0],
        "eval_loss": history.final_eval_loss,
        "before": before,
        "after": after,
        "diverged": bool(history.diverged),
    }


# --------------------------------------------------------------------------- run
def run(ctx: ConceptContext) -> Evidence:
    seeds = ctx.seeds
    st = ctx.settings
    corpus = load_corpus(ctx.inputs)
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size)
    plans: dict[str, tuple[bool, float | None]] = {LEARNED: (False, None), FROZEN: (True, None)}
    if st["frozen_unit_std"] is not None:
        plans[FROZEN_UNIT] = (True, float(st["frozen_unit_std"]))
    runs = over_seeds(seeds, plans, lambda seed, plan: run_one(ctx, corpus, seed, *plan))

    k = int(st["n_neighbours"])
    seen = counts > 0
    frequent = counts.argsort(descending=True)[: int(st["overlap_tokens"])].tolist()
    pairs = variant_pairs(corpus.tokenizer, counts, int(st["pair_min_count"]))
    per_seed = []
    for r in runs[LEARNED]:
        rel = row_relative_change(r["before"], r["after"])
        per_seed.append(
            {
                "table_change": table_relative_change(r["before"], r["after"]),
                "spearman": spearman(np.log(counts[seen].double().numpy()), rel[seen].numpy()),
                "unseen_change": float(rel[~seen].mean()) if (~seen).any() else math.nan,
                "overlap": neighbour_overlap(r["before"], r["after"], frequent, k),
                "pair_cos_before": mean_pair_cosine(r["before"], pairs),
                "pair_cos_after": mean_pair_cosine(r["after"], pairs),
            }
        )
    change = {key: [table_relative_change(r["before"], r["after"]) for r in rs] for key, rs in runs.items()}
    init = {key: [r["initial_loss"] for r in rs] for key, rs in runs.items()}
    loss = {key: [r["eval_loss"] for r in rs] for key, rs in runs.items()}
    frozen_keys = [key for key in runs if key != LEARNED]
    best = min(frozen_keys, key=lambda key: float(np.mean(loss[key])))
    gain = {key: float(np.mean(init[key]) - np.mean(loss[key])) for key in runs}

    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "vocab_size": corpus.vocab_size,
        "embedding_parameters": int(runs[LEARNED][0]["before"].numel()),
        "initial_eval_loss": {key: summary(v) for key, v in init.items()},
        "eval_loss": {key: summary(v) for key, v in loss.items()},
        "best_frozen": best,
        "loss_gap_nats": {key: float(np.mean(loss[key]) - np.mean(loss[LEARNED])) for key in frozen_keys},
        "share_of_learned_gain": {
            key: (gain[key] / gain[LEARNED] if gain[LEARNED] > 0 else None) for key in frozen_keys
        },
        "relative_change": {key: summary(v) for key, v in change.items()},
        "change_vs_log_frequency_spearman": summary([p["spearman"] for p in per_seed]),
        "unseen_tokens": int((~seen).sum()),
        "unseen_token_relative_change": (
            summary([p["unseen_change"] for p in per_seed]) if (~seen).any() else None
        ),
        "neighbour_overlap": {
            "k": k,
            "tokens": len(frequent),
            "learned": summary([p["overlap"] for p in per_seed]),
            "random_expectation": k / (corpus.vocab_size - 1),
        },
        "same_word_pair_cosine": (
            {
                "pairs": len(pairs),
                "before": summary([p["pair_cos_before"] for p in per_seed]),
                "after": summary([p["pair_cos_after"] for p in per_seed]),
            }
            if pairs
            else None
        ),
        "diverged": {key: sum(r["diverged"] for r in rs) for key, rs in runs.items()},
        "thresholds": {
            "min_relative_change": float(st["min_relative_change"]),
            "min_loss_gain": float(st["min_loss_gain"]),
        },
    }

    sample = sample_token_ids(corpus.tokenizer, counts, st["sample_words"], int(st["sample_tokens"]))
    r0 = runs[LEARNED][0]
    nb_before = nearest_neighbours(r0["before"], sample, k)
    nb_after = nearest_neighbours(r0["after"], sample, k)
    show = corpus.tokenizer.decode

    def words(ids: list[int]) -> str:
        return " | ".join(repr(show([i])) for i in ids)

    geometry = [
        {
            "measure": f"share of the {k} nearest neighbours kept (top {len(frequent)} tokens)",
            "value": fmt([p["overlap"] for p in per_seed], notation="f"),
            "reference": f"{k / (corpus.vocab_size - 1):.3f} if the new table were unrelated",
        },
        {
            "measure": "rank correlation of a row's change with log token count (seen tokens)",
            "value": fmt([p["spearman"] for p in per_seed], notation="f"),
            "reference": "0 if unrelated",
        },
    ]
    if pairs:
        geometry.append(
            {
                "measure": f"mean cosine of {len(pairs)} same-word token pairs (case / leading-space "
                "variants), before → after training",
                "value": f"{fmt([p['pair_cos_before'] for p in per_seed], notation='f')} → "
                f"{fmt([p['pair_cos_after'] for p in per_seed], notation='f')}",
                "reference": "≈ 0 for random vectors",
            }
        )
    tables = [
        Table.from_records(
            "loss",
            "Validation loss (nats/token), mean ± std over seeds, and how far the embedding "
            "table moved (‖E_after − E_before‖ / ‖E_before‖).",
            [
                {
                    "variant": NAMES[key],
                    "loss before training": fmt(init[key], notation="f"),
                    "loss after training": fmt(loss[key], notation="f"),
                    "embedding relative change": fmt(change[key], notation="f"),
                }
                for key in runs
            ],
        ),
        Table.from_records(
            "geometry",
            "How the learned table's geometry changed in training (mean ± std over seeds).",
            geometry,
        ),
        Table.from_records(
            "neighbours",
            f"Nearest neighbours (cosine) of sample tokens in the learned embedding of "
            f"seed {seeds[0]}, before and after training (frequency = count in the training split).",
            [
                {
                    "token": repr(show([t])),
                    "frequency": int(counts[t]),
                    f"{k} nearest before": words(nb_before[i]),
                    f"{k} nearest after": words(nb_after[i]),
                }
                for i, t in enumerate(sample)
            ],
        ),
    ]
    figures = [
        plot_curves(
            {NAMES[key]: [r["history"] for r in rs] for key, rs in runs.items()},
            ctx.outdir,
            "curves",
            "C03: learned vs frozen random embedding",
            "Validation next-token loss during training; line = mean over seeds, band = ±1 std. "
            "Per seed all variants share every other initial weight; the frozen variants never "
            "update their embedding table (model init: std "
            f"{ctx.settings['model'].get('init_std', 0.02)}; unit scale: std "
            f"{st['frozen_unit_std']}).",
        ),
        _change_vs_frequency_figure(r0, counts, ctx),
    ]
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.4",
            "The Transformer uses learned embeddings to map input and output tokens to vectors of size d_model.",
            agrees=clearly_less(loss[LEARNED], loss[best]) if len(seeds) > 1 else None,
            note=f"This run: learning the table lowers validation loss by "
            f"{metrics['loss_gap_nats'][best]:.3f} nats/token against the better frozen random table "
            f"({NAMES[best]}).",
        )
    ]
    method = (
        "We train the same small transformer language model on the corpus several times per seed, "
        "with every other initial weight shared: once with the embedding table learned (the default) "
        "and with it frozen at random values, both the model's own small initial table and a "
        "unit-scale one (scale matters for a frozen table). We compare validation loss, measure how "
        "far the learned table moved (‖ΔE‖/‖E‖, and per token against how often the token occurs), "
        "and list the nearest neighbours (cosine) of sample tokens before and after training. A frozen "
        "random table still gives each token a distinct vector the later layers can adapt to, so the "
        "loss gap says how much learning the table itself adds."
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(seeds),
        tables=tables,
        figures=figures,
        literature=literature,
    )


def _change_vs_frequency_figure(r: Mapping[str, Any], counts: torch.Tensor, ctx: ConceptContext) -> Any:
    rel = row_relative_change(r["before"], r["after"]).numpy()
    frame = pd.DataFrame(
        {
            "count": counts.numpy() + 1,
            "change": rel,
            "seen in training": np.where(counts.numpy() > 0, "yes", "no"),
        }
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(
        data=frame, x="count", y="change", hue="seen in training", s=12, alpha=0.6, ax=ax, linewidth=0
    )
    ax.set_xscale("log")
    ax.set_xlabel("token count in the training split + 1 (occurrences, log scale)")
    ax.set_ylabel("relative change of the token's row (‖Δe‖/‖e‖)")
    return plotting.save(
        fig,
        ctx.outdir,
        "change_vs_frequency",
        f"C03: how far each token's embedding moved (seed {ctx.seeds[0]})",
        "One dot per vocabulary entry of the learned embedding. Tokens never seen as input get no "
        "gradient; frequent tokens move the most.",
    )


# --------------------------------------------------------------------------- verdict
def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Supported when the table moves during training and learning it clearly lowers the loss
    against the better frozen random table.

    Moved but no clear loss gain: partly (it is trained, but a frozen random table did as well
    here). Did not move: not supported.
    """
    th = metrics["thresholds"]
    best = metrics["best_frozen"]
    learned = metrics["eval_loss"]["learned"]["values"]
    frozen = metrics["eval_loss"][best]["values"]
    if min(len(learned), len(frozen)) < 2:
        return Verdict(Label.INCONCLUSIVE, "Fewer than two seeds per variant: no spread to judge by.")
    every = [v for entry in metrics["eval_loss"].values() for v in entry["values"]]
    if any(v is None or not math.isfinite(v) for v in every) or sum(metrics["diverged"].values()):
        return Verdict(Label.INCONCLUSIVE, "A run diverged or gave a non-finite loss.")
    change = metrics["relative_change"]["learned"]["mean"]
    sl, sf = Spread.of(learned), Spread.of(frozen)
    moved = change >= th["min_relative_change"]
    better = clearly_less(learned, frozen) and sf.mean - sl.mean >= th["min_loss_gain"]
    others = ", ".join(
        f"{k.replace('_', ' ')} {Spread.of(v['values'])}"
        for k, v in metrics["eval_loss"].items()
        if k not in ("learned", best)
    )
    numbers = (
        f"the table moved by {change:.0%} (‖ΔE‖/‖E‖); validation loss {sl} learned vs {sf} "
        f"for the better frozen table ({best.replace('_', ' ')}){'; ' + others if others else ''} "
        f"(nats/token)"
    )
    if not moved:
        return Verdict(Label.NOT_SUPPORTED, f"The embedding barely changed in training: {numbers}.")
    if better:
        return Verdict(Label.SUPPORTED, f"The embedding is trained and it matters: {numbers}.")
    return Verdict(
        Label.PARTLY,
        f"The embedding is trained, but a frozen random table did not clearly do worse here: {numbers}.",
    )
