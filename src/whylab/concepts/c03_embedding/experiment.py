"""C03: the embedding table (nn.Embedding) is itself learned.

If it is, training moves its rows (the more often a token is seen, the more its row moves; rows of
tokens never seen in the training inputs get no gradient at all), the geometry of the table changes
(nearest neighbours before and after differ; spellings of the same word such as "the"/" The" move
together), and learning it matters: the same model with the table frozen at random values should
end at a higher loss. The last point has an honest nuance: a frozen random table is still a usable
code (random vectors in 64 dimensions are nearly orthogonal) and the layers after it adapt, so the
frozen model trains too, and how well depends on the scale of the frozen vectors (at GPT-2's init
std 0.02 they are drowned by the learned positional embedding). So the frozen table is drawn at unit
scale (nn.Embedding's default N(0, 1)), optionally also at the model's own init, and learning must
beat every frozen table: paired by seed (same other initial weights, same batches), Holm over the
tables, by at least ``min_loss_gain``. The learned arm is the shared baseline LM (also in C04, C06),
trained once per seed by the bench_baseline rule.
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
from whylab.concepts._bench_common import (
    build_model,
    curve,
    describe,
    finite,
    fmt,
    history_dict,
    holm_of,
    label_of,
    learned_baseline,
    load_corpus,
    paired,
    part_status,
    plot_curves,
    summary,
)
from whylab.errors import InputError
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C03"

LEARNED, FROZEN, FROZEN_UNIT = "learned", "frozen", "frozen_unit"
NAMES = {
    LEARNED: "learned embedding",
    FROZEN: "frozen random embedding (model init)",
    FROZEN_UNIT: "frozen random embedding (unit scale)",
}  # table cells and legend entries (data); in sentences the catalogue's C03.variant.<key>


def variant(key: str) -> Msg:
    """A variant's name in a sentence ("frozen random embedding (unit scale)")."""
    return Msg(f"C03.variant.{key}")


def table_name(key: str) -> Msg:
    """A frozen table's short name in the verdict ("frozen unit")."""
    return Msg(f"C03.table_name.{key}")


# --------------------------------------------------------------------------- measurements
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


# --------------------------------------------------------------------------- one seed
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


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """One seed: the learned baseline (shared with C04, C06) and the frozen tables, with the
    learned table's movement and geometry. The frozen runs share every other initial weight and
    every batch with the baseline of the same seed (paired)."""
    st = ctx.settings
    plans: dict[str, float | None] = {FROZEN: None} if st.get("frozen_model_init", True) else {}
    if st["frozen_unit_std"] is not None:
        plans[FROZEN_UNIT] = float(st["frozen_unit_std"])
    if not plans:
        raise InputError(
            "mechanisms.C03.frozen_unit_std: null together with frozen_model_init: false leaves no frozen table"
        )
    corpus = load_corpus(ctx.inputs)
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size)
    cfg = bench_config(st.get("model", {}), vocab_size=corpus.vocab_size)
    before = build_model(cfg, seed, "cpu").token_embedding.weight.detach().clone()
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
        "neighbours_before": nearest_neighbours(before, sample, k),
        "neighbours_after": nearest_neighbours(after, sample, k),
        "embedding_parameters": int(before.numel()),
    }


# --------------------------------------------------------------------------- combine
def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    st = ctx.settings
    seeds = [int(r["seed"]) for r in per_seed]
    corpus = load_corpus(ctx.inputs)
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size)
    keys = list(per_seed[0]["runs"])
    frozen_keys = [key for key in keys if key != LEARNED]
    loss = {key: [r["runs"][key]["eval_loss"] for r in per_seed] for key in keys}
    init = {key: [r["runs"][key]["initial_loss"] for r in per_seed] for key in keys}
    change = {key: [r["table_change"][key] for r in per_seed] for key in keys}
    min_gain = float(st["min_loss_gain"])
    # per frozen table: frozen − learned loss per seed (positive: learning the table helps)
    comparisons = {key: paired(loss[key], loss[LEARNED], min_gain) for key in frozen_keys}
    k = int(st["n_neighbours"])
    r0 = per_seed[0]
    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "vocab_size": corpus.vocab_size,
        "embedding_parameters": r0["embedding_parameters"],
        "initial_eval_loss": {key: summary(_f(v)) for key, v in init.items()},
        "eval_loss": {key: summary(_f(v)) for key, v in loss.items()},
        "paired_frozen_minus_learned": comparisons,
        "relative_change": {key: summary(v) for key, v in change.items()},
        "change_vs_log_frequency_spearman": summary(_f([r["spearman"] for r in per_seed])),
        "unseen_tokens": int((counts == 0).sum()),
        "unseen_token_relative_change": (
            summary(_f([r["unseen_change"] for r in per_seed])) if r0["unseen_change"] is not None else None
        ),
        "neighbour_overlap": {
            "k": k,
            "tokens": min(int(st["overlap_tokens"]), corpus.vocab_size),
            "learned": summary([r["overlap"] for r in per_seed]),
            "random_expectation": k / (corpus.vocab_size - 1),
        },
        "same_word_pair_cosine": (
            {
                "pairs": r0["pairs"],
                "before": summary(_f([r["pair_cos_before"] for r in per_seed])),
                "after": summary(_f([r["pair_cos_after"] for r in per_seed])),
            }
            if r0["pairs"]
            else None
        ),
        "diverged": {key: sum(r["runs"][key]["diverged"] for r in per_seed) for key in keys},
        "thresholds": {
            "min_relative_change": float(st["min_relative_change"]),
            "min_loss_gain": min_gain,
        },
    }

    geometry = [
        {
            "measure": f"share of the {k} nearest neighbours kept (top {metrics['neighbour_overlap']['tokens']} tokens)",
            "value": fmt([r["overlap"] for r in per_seed], notation="f"),
            "reference": f"{k / (corpus.vocab_size - 1):.3f} if the new table were unrelated",
        },
        {
            "measure": "rank correlation of a row's change with log token count (seen tokens)",
            "value": fmt(_f([r["spearman"] for r in per_seed]), notation="f"),
            "reference": "0 if unrelated",
        },
    ]
    if r0["pairs"]:
        geometry.append(
            {
                "measure": f"mean cosine of {r0['pairs']} same-word token pairs (case / leading-space "
                "variants), before → after training",
                "value": f"{fmt(_f([r['pair_cos_before'] for r in per_seed]), notation='f')} → "
                f"{fmt(_f([r['pair_cos_after'] for r in per_seed]), notation='f')}",
                "reference": "≈ 0 for random vectors",
            }
        )
    show = corpus.tokenizer.decode

    def words(ids: list[int]) -> str:
        return " | ".join(repr(show([i])) for i in ids)

    tables = [
        Table.from_records(
            "loss",
            Msg("C03.table.loss.caption"),
            [
                {
                    "variant": NAMES[key],
                    "loss before training": fmt(_f(init[key]), notation="f"),
                    "loss after training": fmt(_f(loss[key]), notation="f"),
                    "paired Δ vs learned (nats/token)": (
                        describe(comparisons[key], "") if key in comparisons else "(reference)"
                    ),
                    "embedding relative change": fmt(change[key], notation="f"),
                }
                for key in keys
            ],
        ),
        Table.from_records(
            "geometry",
            Msg("C03.table.geometry.caption"),
            geometry,
        ),
        Table.from_records(
            "neighbours",
            Msg("C03.table.neighbours.caption", seed=seeds[0]),
            [
                {
                    "token": repr(show([t])),
                    "frequency": int(counts[t]),
                    f"{k} nearest before": words(r0["neighbours_before"][i]),
                    f"{k} nearest after": words(r0["neighbours_after"][i]),
                }
                for i, t in enumerate(r0["sample"])
            ],
        ),
    ]
    figures = [
        plot_curves(
            {NAMES[key]: [curve(r["runs"][key]["curve"]) for r in per_seed] for key in keys},
            ctx.outdir,
            "curves",
            Msg("C03.figure.curves.title"),
            Msg(
                "C03.figure.curves.caption",
                init_std=ctx.settings["model"].get("init_std", 0.02),
                unit_std=st["frozen_unit_std"],
            ),
        ),
        _change_vs_frequency_figure(r0, counts, ctx),
    ]
    v = verdict(metrics)
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.4",
            Msg("C03.literature.vaswani.finding"),
            agrees=(True if v.label is Label.SUPPORTED else None),
            note=Msg(
                "C03.literature.vaswani.note",
                parts=[
                    Msg("C03.literature.vaswani.part", variant=variant(key), delta=describe(c, "nats/token"))
                    for key, c in comparisons.items()
                ],
            ),
        )
    ]
    method = Msg("C03.method")
    return Evidence(
        method=method, metrics=metrics, seeds=seeds, tables=tables, figures=figures, literature=literature
    )


def _f(values: Sequence[float | None]) -> list[float]:
    """Per-seed values with failed runs (None) kept as NaN, for :func:`summary`."""
    return [math.nan if v is None else float(v) for v in values]


def _change_vs_frequency_figure(r: Mapping[str, Any], counts: torch.Tensor, ctx: ConceptContext) -> Any:
    rel = np.asarray(r["row_change"], dtype=float)
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
        Msg("C03.figure.change_vs_frequency.title", seed=r["seed"]),
        Msg("C03.figure.change_vs_frequency.caption"),
    )


# --------------------------------------------------------------------------- verdict
def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """The table must move in training (else not supported). Then one part per frozen random table,
    paired over seeds and Holm-corrected: learning clearly lowers the loss past ``min_loss_gain``
    (confirmed), the frozen table is clearly better or no different in a way that matters
    (contradicted), or neither (limited: never lowers the label). All judged parts confirmed:
    supported; any contradicted: partly (the table is trained, but a random code served as well);
    nothing judged: inconclusive."""
    th = metrics["thresholds"]
    comps = metrics["paired_frozen_minus_learned"]
    out = VerdictOf(Kind.EXPERIMENT, primary=Msg("C03.primary", seeds=metrics["n_seeds"]))

    if metrics["n_seeds"] < 2 or any(c["n"] < 2 for c in comps.values()):
        return out.branch(Label.INCONCLUSIVE, "C03.verdict.one_seed")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C03.verdict.diverged")
    change = metrics["relative_change"]["learned"]["mean"]
    moved = change >= th["min_relative_change"]
    rejected = holm_of(comps)
    status = {k: part_status(c, rejected[k]) for k, c in comps.items()}
    label = label_of(list(status.values()))
    out.limited.extend(
        Msg("C03.limited.unclear", table=table_name(k)) for k, st in status.items() if st == "limited"
    )
    numbers = Msg(
        "C03.reason.numbers",
        change=change,
        comparisons=[
            Msg("C03.reason.comparison", table=table_name(k), delta=describe(c, "nats/token"))
            for k, c in comps.items()
        ],
    )
    if not moved:
        # the table did not move: its limits are not this branch's (as before)
        out.limited.clear()
        return out.branch(Label.NOT_SUPPORTED, "C03.verdict.not_moved", numbers=numbers)
    if label == "inconclusive":
        return out.branch(Label.INCONCLUSIVE, "C03.verdict.no_clear_comparison", numbers=numbers)
    if label == "supported":
        return out.branch(Label.SUPPORTED, "C03.verdict.learning_helps", numbers=numbers)
    return out.branch(Label.PARTLY, "C03.verdict.random_as_good", numbers=numbers)
