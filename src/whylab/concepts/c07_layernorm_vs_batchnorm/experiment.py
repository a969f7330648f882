"""C07's measurements: every norm's learning rate tuned on held-out sentences, then every norm
trained from each seed on padded batches of real sentences and probed.

Measuring only: per seed and norm the validation loss (running and batch statistics), the
training curve and how far the loss still fell at the end, the batch dependence, the leak of later
tokens and, for naive BatchNorm, what PAD does to its statistics; and the data every seed shares
(sentence counts, PAD id, PAD share of a training batch). Deciding is in ``verdict.py``, drawing in
``figures.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from whylab.bench import lab
from whylab.bench.data import load_tokenizer
from whylab.bench.train import bench_config, train_lm, train_settings
from whylab.concepts._settle import tune
from whylab.concepts.c07_layernorm_vs_batchnorm.padding import (
    fixed_batches,
    lm_pairs,
    pad_fraction,
    pad_id_of,
    padded_batch_fn,
    sentence_ids,
)
from whylab.concepts.c07_layernorm_vs_batchnorm.probes import (
    batch_dependence,
    batch_stats_mode,
    batchnorm_statistics,
    future_leak,
    token_loss,
)
from whylab.concepts.context import ConceptContext
from whylab.errors import InputError
from whylab.files import finite

REQUIRED_NORMS = ("layer", "batch", "masked_batch")
PAD_SHARE_BATCHES = 20  # training batches drawn to measure the PAD share of a batch
BN_STATS_BATCHES = 8  # training batches drawn for BatchNorm's statistics


@dataclass
class Prepared:
    """Sentences, PAD id and the fixed evaluation batches every seed and norm shares."""

    norms: list[str]
    pad_id: int
    vocab: int
    train_seqs: list[list[int]]
    valid_seqs: list[list[int]]
    eval_seqs: list[list[int]]
    tune_seqs: list[list[int]]  # held-out sentences the learning rate is chosen on
    tune_disjoint: bool  # False only when the corpus is too small to keep them apart
    pool: list[list[int]]
    probes: list[list[int]]
    stream: Tensor
    extras: list[int]
    model_max_len: int
    train_over: dict[str, Any]
    batch_size: int


def _corpus_paths(inputs: Mapping[str, Path], prefix: str) -> list[Path]:
    paths = [inputs[n] for n in sorted(inputs) if n.startswith(prefix)]
    if not paths:
        raise InputError(f"C07: no input named {prefix}* was given (got: {', '.join(sorted(inputs))})")
    return paths


def prepare(ctx: ConceptContext) -> Prepared:
    """The sentences of the corpus as token ids, split into training, evaluation and batch-mates."""
    s = ctx.settings
    norms = list(s["norms"])
    missing = [n for n in REQUIRED_NORMS if n not in norms]
    if missing:
        raise InputError(
            f"mechanisms.C07.norms: must include layer, batch and masked_batch (missing {missing})"
        )
    if "tokenizer" not in ctx.inputs:
        raise InputError("C07: no input named tokenizer was given")
    tokenizer = load_tokenizer(ctx.inputs["tokenizer"])
    pad_id, vocab = pad_id_of(tokenizer)
    min_len, max_len = int(s["min_seq_len"]), int(s["max_seq_len"])
    if min_len > max_len:
        raise InputError(f"mechanisms.C07.min_seq_len: {min_len} is above max_seq_len ({max_len})")
    train_seqs = sentence_ids(_corpus_paths(ctx.inputs, "train"), tokenizer, min_len=min_len, max_len=max_len)
    valid_seqs = sentence_ids(_corpus_paths(ctx.inputs, "valid"), tokenizer, min_len=min_len, max_len=max_len)
    if len(train_seqs) < 2 or len(valid_seqs) < 2:
        raise InputError(
            f"C07: the corpus has too few sentences of at least {min_len} tokens "
            f"(train {len(train_seqs)}, valid {len(valid_seqs)})"
        )
    # a fixed shuffle of the validation sentences, so every fixed batch mixes lengths
    order = torch.randperm(len(valid_seqs), generator=torch.Generator().manual_seed(0)).tolist()
    valid_seqs = [valid_seqs[i] for i in order]
    n_eval = min(int(s["eval_sequences"]), len(valid_seqs))
    eval_seqs, pool = valid_seqs[:n_eval], valid_seqs[n_eval:] or valid_seqs
    # the tuning sentences: the next n_eval validation sentences, never the reported ones
    tune_seqs = valid_seqs[n_eval : 2 * n_eval]
    tune_disjoint = len(tune_seqs) >= 2
    if not tune_disjoint:
        tune_seqs = eval_seqs
    extras = sorted({int(e) for e in s["extra_padding"]})
    train_over = lab.given(s, ("steps", "batch_size", "eval_every"))
    return Prepared(
        norms=norms,
        pad_id=pad_id,
        vocab=vocab,
        train_seqs=train_seqs,
        valid_seqs=valid_seqs,
        eval_seqs=eval_seqs,
        tune_seqs=tune_seqs,
        tune_disjoint=tune_disjoint,
        pool=pool,
        probes=eval_seqs[: min(int(s["probes"]), len(eval_seqs))],
        stream=torch.tensor([t for seq in valid_seqs for t in seq], dtype=torch.long),
        extras=extras,
        model_max_len=max(int(s["model"]["max_len"]), max_len - 1 + max(extras, default=0)),
        train_over=train_over,
        batch_size=train_settings(s["train"], **train_over).batch_size,
    )


def mean_pad_fraction(seqs: list[list[int]], batch_size: int, pad_id: int) -> float:
    """The PAD share of a training batch, averaged over a fixed draw of batches."""
    gen = torch.Generator().manual_seed(0)
    fn = padded_batch_fn(seqs, batch_size, pad_id)
    shares = [pad_fraction(fn(i, gen)[0], pad_id) for i in range(PAD_SHARE_BATCHES)]
    return sum(shares) / len(shares)


def data_facts(ctx: ConceptContext, d: Prepared) -> dict[str, Any]:
    """What every seed trained on (the same for every seed)."""
    return {
        "pad_id": d.pad_id,
        "pad_fraction_train": mean_pad_fraction(d.train_seqs, d.batch_size, d.pad_id),
        "steps": int(d.train_over.get("steps", ctx.settings["train"]["steps"])),
        "sentences": {
            "train": len(d.train_seqs),
            "valid": len(d.valid_seqs),
            "eval": len(d.eval_seqs),
            "mean_length": sum(len(q) for q in d.train_seqs) / len(d.train_seqs),
        },
    }


def _tail_drop(train_loss: list[float]) -> float | None:
    """How much the training loss still fell over the last fifth of training (relative)."""
    n = len(train_loss)
    late = train_loss[int(0.6 * n) : int(0.8 * n)] or train_loss
    last = train_loss[int(0.8 * n) :] or train_loss
    late_mean, last_mean = sum(late) / len(late), sum(last) / len(last)
    return finite((late_mean - last_mean) / last_mean) if last_mean else None


def _train(ctx: ConceptContext, d: Prepared, norm: str, seed: int, lr: float) -> tuple[Any, Any]:
    """One norm trained from ``seed`` at ``lr`` on padded batches; the evaluation curve is on the
    reported sentences in eval mode (running statistics: what a causal LM uses at inference)."""
    s = ctx.settings
    cfg = bench_config(s["model"], vocab_size=d.vocab, norm=norm, pad_id=d.pad_id, max_len=d.model_max_len)
    model = lab.build_model(cfg, seed, ctx.device)
    settings = train_settings(s["train"], **d.train_over, lr=lr, seed=seed)
    hist = train_lm(
        model,
        None,
        lm_pairs(d.eval_seqs, d.pad_id),  # one padded block: eval mode makes padding irrelevant
        settings,
        ctx.device,
        batch_fn=padded_batch_fn(d.train_seqs, d.batch_size, d.pad_id),
    )
    model.eval()
    return model, hist


def _probe(ctx: ConceptContext, d: Prepared, norm: str, seed: int, model: Any, hist: Any) -> dict[str, Any]:
    """A trained model measured: losses in both modes, batch dependence, the leak, BN statistics."""
    s = ctx.settings
    pad_id, batch_size = d.pad_id, d.batch_size
    eval_batches = fixed_batches(d.eval_seqs, batch_size, pad_id)
    eval_loss = token_loss(model, eval_batches, ctx.device)
    stats_loss = token_loss(batch_stats_mode(model), eval_batches, ctx.device)
    tail = hist.train_loss[-max(1, len(hist.train_loss) // 10) :]
    dep = batch_dependence(
        model,
        d.probes,
        d.pool,
        d.stream,
        batch_size=batch_size,
        mate_sets=int(s["mate_sets"]),
        extra_padding=d.extras,
        pad_id=pad_id,
        device=ctx.device,
        seed=seed,
    )
    record: dict[str, Any] = {
        "tail_drop": _tail_drop(hist.train_loss),
        "eval_loss": finite(eval_loss),
        "batch_stats_loss": finite(stats_loss),
        "mode_gap": finite(eval_loss - stats_loss),
        "train_loss_end": finite(sum(tail) / len(tail)),
        "diverged": bool(hist.diverged),
        "future_leak": future_leak(
            model,
            d.probes,
            d.pool,
            batch_size=batch_size,
            pad_id=pad_id,
            vocab=d.vocab,
            device=ctx.device,
            seed=seed,
        ),
        "padding_curve": dep["padding_curve"],
        "reference_pad_fraction": dep["reference_pad_fraction"],
        "curve": lab.history_dict(hist),
        "train_curve": [finite(v) for v in _smoothed(hist.train_loss)],
        **{k: dep[k] for k in ("mates_padded", "mates_nopad", "padding", "eval_mode")},
    }
    if norm == "batch":
        gen = torch.Generator().manual_seed(20_000 + seed)
        sample = padded_batch_fn(d.train_seqs, batch_size, pad_id)
        record["bn_stats"] = batchnorm_statistics(
            model, [sample(i, gen) for i in range(BN_STATS_BATCHES)], pad_id, ctx.device
        )
    return record


def _smoothed(train_loss: list[float], points: int = 20) -> list[float]:
    """The training loss (training mode: batch statistics) averaged over ``points`` equal spans."""
    n = len(train_loss)
    if not n:
        return []
    edges = [round(i * n / points) for i in range(points + 1)]
    return [sum(train_loss[a:b]) / (b - a) for a, b in itertools.pairwise(edges) if b > a]


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """Every norm tuned, then trained from every seed and probed.

    The learning rate: each norm is trained at every rate of ``lr_grid`` from the first seed and
    keeps the rate with the lowest eval-mode loss on the tuning sentences (held out, disjoint from
    the reported ones); that rate is fixed for every seed, and the first seed's run at it is reused
    (its choice read only the tuning sentences). Norms have no random weights, so every norm of a
    seed starts from the same initial weights and sees the same padded batches (paired)."""
    d = prepare(ctx)
    seeds = ctx.seeds
    tune_batches = fixed_batches(d.tune_seqs, d.batch_size, d.pad_id)

    def run(norm: str, lr: float) -> tuple[float | None, tuple[Any, Any]]:
        model, hist = _train(ctx, d, norm, seeds[0], lr)
        score = None if hist.diverged else finite(token_loss(model, tune_batches, ctx.device))
        return score, (model, hist)

    tuning, first = tune(d.norms, [float(x) for x in ctx.settings["lr_grid"]], run)
    per_seed: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds):
        norms: dict[str, Any] = {}
        for norm in d.norms:
            lr = tuning[norm]["lr"]
            if lr is None:  # every rate diverged on the first seed
                raise InputError(f"C07: every rate of lr_grid diverged for {norm}")
            model, hist = first[norm] if i == 0 else _train(ctx, d, norm, seed, lr)
            norms[norm] = {**_probe(ctx, d, norm, seed, model, hist), "lr": lr}
        per_seed.append({"seed": seed, "norms": norms})
    data = {**data_facts(ctx, d), "tune_disjoint": d.tune_disjoint, "tune_sentences": len(d.tune_seqs)}
    return {"per_seed": per_seed, "data": data, "tuning": tuning}
