"""C07: NLP prefers LayerNorm to BatchNorm because sentences differ in length and BatchNorm
averages over the padding.

The experiment trains the same bench transformer with LayerNorm, with naive BatchNorm (each channel
normalised over batch *and* time, PAD positions included, as a naive user would write it), with
masked BatchNorm (the same, but its statistics use only the real tokens: the notes' reason removed)
and optionally RMSNorm, on padded batches of real sentences of mixed lengths, paired by seed. Naive vs
masked BatchNorm tests the reason; LayerNorm vs masked BatchNorm the preference. It measures
what the notes' argument predicts:

- the validation loss (BatchNorm evaluates with its running statistics) and the gap between
  evaluating with running and with batch statistics on the same batches;
- batch dependence: how much one sentence's logits change when the *other* sentences in its
  batch change (with and without any PAD in the batch), or when only the amount of padding in
  its batch grows. LayerNorm normalises each token on its own, so it must show ~0; BatchNorm
  in training mode must not;
- for BatchNorm, how far the PAD rows move the batch mean (the notes' mechanism itself) and how
  much the batch statistics fluctuate from batch to batch (Shen et al. 2020's diagnosis);
- non-causality: in training mode BatchNorm's statistics include later tokens, so changing them
  moves the logits at earlier positions (LayerNorm: exactly 0).
The loss comparisons decide only once the training loss has reached a plateau; before that they
are limits of this run.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whylab.bench.model import is_batch_norm
from whylab.concepts import ConceptContext
from whylab.concepts import _bench_common as bench
from whylab.errors import InputError
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Label, Verdict

CLAIM_ID = "C07"
IGNORE = -100  # target id that cross-entropy skips (PAD positions)
PAD_TOKENS = ("<pad>", "[PAD]", "<PAD>")
NORM_NAMES = {
    "layer": "LayerNorm",
    "batch": "BatchNorm",
    "masked_batch": "masked BatchNorm",
    "rms": "RMSNorm",
    "none": "no norm",
}
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


# --------------------------------------------------------------------------- padded sentences


def split_sentences(text: str) -> list[str]:
    """Sentences of one corpus line (a paragraph): split after . ! ? and 。 followed by space."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def sentence_ids(paths: Sequence[Path], tokenizer: Any, *, min_len: int, max_len: int) -> list[list[int]]:
    """Token ids of every sentence in ``paths`` with at least ``min_len`` tokens, cut to ``max_len``.

    The lengths stay as the text makes them, so a batch of them needs padding.
    """
    texts: list[str] = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            texts.extend(split_sentences(line))
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
    return [list(e.ids[:max_len]) for e in encodings if len(e.ids) >= min_len]


def pad_id_of(tokenizer: Any) -> tuple[int, int]:
    """(pad id, model vocabulary size): the tokenizer's own PAD token when it has one, else a
    new id just past its vocabulary (the model then gets one extra embedding row)."""
    vocab = int(tokenizer.get_vocab_size())
    for name in PAD_TOKENS:
        pid = tokenizer.token_to_id(name)
        if pid is not None:
            return int(pid), vocab
    return vocab, vocab + 1


def lm_pairs(seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> tuple[Tensor, Tensor]:
    """Right-padded next-token pairs: x = s[:-1], y = s[1:], both (B, T).

    T is the longest x in the batch, or ``length`` (to add extra PAD columns). x holds
    ``pad_id`` and y holds -100 (ignored by the loss) at PAD positions.
    """
    if not seqs or min(len(s) for s in seqs) < 2:
        raise ValueError("lm_pairs needs sequences of at least 2 tokens")
    longest = max(len(s) for s in seqs) - 1
    t = longest if length is None else int(length)
    if t < longest:
        raise ValueError(f"length={t} is shorter than the longest sequence ({longest})")
    x = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    y = torch.full((len(seqs), t), IGNORE, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids = torch.as_tensor(list(s), dtype=torch.long)
        x[i, : len(s) - 1] = ids[:-1]
        y[i, : len(s) - 1] = ids[1:]
    return x, y


def padded_batch_fn(
    seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int
) -> Callable[[int, torch.Generator], tuple[Tensor, Tensor]]:
    """``batch_fn`` for ``train_lm``: random sentences, padded to the longest in the batch."""

    def batch_fn(step: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(len(seqs), (batch_size,), generator=generator)
        return lm_pairs([seqs[int(i)] for i in idx], pad_id)

    return batch_fn


def fixed_batches(seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> list[tuple[Tensor, Tensor]]:
    """Consecutive groups of ``batch_size`` sentences, each group padded to its own longest."""
    return [lm_pairs(seqs[i : i + batch_size], pad_id) for i in range(0, len(seqs), batch_size)]


def pad_fraction(x: Tensor, pad_id: int) -> float:
    """Share of the batch's positions that are PAD."""
    return float((x == pad_id).float().mean())


# --------------------------------------------------------------------------- measurements


def batch_stats_mode(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with dropout off but every BatchNorm using the batch's statistics,
    as during training. A copy, so the original's running statistics stay untouched."""
    m = copy.deepcopy(model)
    m.eval()
    for mod in m.modules():
        if is_batch_norm(mod):
            mod.train()
    return m


@torch.no_grad()
def token_loss(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], device: str) -> float:
    """Mean next-token cross-entropy over the real (non-PAD) targets of all batches (nats/token)."""
    total, count = 0.0, 0
    for x, y in batches:
        logits = model(x.to(device)).logits
        total += float(
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                y.to(device).reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
        )
        count += int((y != IGNORE).sum())
    return total / max(1, count)


def relative_change(a: Tensor, b: Tensor) -> float:
    """||a - b|| / ||b||."""
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-12))


@torch.no_grad()
def probe_logits(
    model: nn.Module,
    probe: Sequence[int],
    mates: Sequence[Sequence[int]],
    pad_id: int,
    device: str,
    extra_padding: int = 0,
) -> Tensor:
    """Logits of ``probe``'s real positions when it sits in a batch with ``mates`` (row 0),
    the batch padded to its longest row plus ``extra_padding`` PAD columns."""
    longest = max(len(s) for s in [probe, *mates]) - 1
    x, _ = lm_pairs([probe, *mates], pad_id, length=longest + extra_padding)
    return model(x.to(device)).logits[0, : len(probe) - 1].float().cpu()


def stream_windows(stream: Tensor, length: int, count: int, generator: torch.Generator) -> list[list[int]]:
    """``count`` random windows of ``length`` tokens from an id stream: batch-mates with no PAD."""
    starts = torch.randint(0, stream.numel() - length + 1, (count,), generator=generator)
    return [stream[int(s) : int(s) + length].tolist() for s in starts]


def batch_dependence(
    model: nn.Module,
    probes: Sequence[Sequence[int]],
    pool: Sequence[Sequence[int]],
    stream: Tensor,
    *,
    batch_size: int,
    mate_sets: int,
    extra_padding: Sequence[int],
    pad_id: int,
    device: str,
    seed: int,
) -> dict[str, Any]:
    """How much a probe sentence's logits move with the rest of its batch.

    - ``mates_padded``: other sentences (mixed lengths, so padded) swapped, batch statistics;
    - ``mates_nopad``: other rows swapped, all of the probe's length (no PAD at all);
    - ``padding``: same batch, ``extra`` more PAD columns (per extra, and at the largest);
    - ``eval_mode``: as ``mates_padded`` but in eval mode (BatchNorm uses running statistics).
    Each is the mean relative change of the logits over probes and batch pairs.
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    train_like = batch_stats_mode(model)
    eval_model = copy.deepcopy(model).eval()
    k = batch_size - 1
    out: dict[str, list[float]] = {"mates_padded": [], "mates_nopad": [], "eval_mode": []}
    per_extra: dict[int, list[float]] = {int(e): [] for e in extra_padding}
    pad_share: dict[int, list[float]] = {int(e): [] for e in [0, *extra_padding]}
    for probe in probes:
        mate_lists = [
            [pool[int(i)] for i in torch.randint(len(pool), (k,), generator=gen)] for _ in range(mate_sets)
        ]
        ref = probe_logits(train_like, probe, mate_lists[0], pad_id, device)
        ref_eval = probe_logits(eval_model, probe, mate_lists[0], pad_id, device)
        for mates in mate_lists[1:]:
            out["mates_padded"].append(
                relative_change(probe_logits(train_like, probe, mates, pad_id, device), ref)
            )
            out["eval_mode"].append(
                relative_change(probe_logits(eval_model, probe, mates, pad_id, device), ref_eval)
            )
        same_len = [stream_windows(stream, len(probe), k, gen) for _ in range(mate_sets)]
        ref_nopad = probe_logits(train_like, probe, same_len[0], pad_id, device)
        for windows in same_len[1:]:
            out["mates_nopad"].append(
                relative_change(probe_logits(train_like, probe, windows, pad_id, device), ref_nopad)
            )
        longest = max(len(s) for s in [probe, *mate_lists[0]]) - 1
        for extra in per_extra:
            per_extra[extra].append(
                relative_change(probe_logits(train_like, probe, mate_lists[0], pad_id, device, extra), ref)
            )
        for extra in pad_share:
            x, _ = lm_pairs([probe, *mate_lists[0]], pad_id, length=longest + extra)
            pad_share[extra].append(pad_fraction(x, pad_id))
    largest = max(per_extra) if per_extra else 0
    result: dict[str, Any] = {name: sum(v) / len(v) for name, v in out.items() if v}
    result["padding"] = sum(per_extra[largest]) / len(per_extra[largest]) if per_extra else 0.0
    result["reference_pad_fraction"] = sum(pad_share[0]) / len(pad_share[0])
    result["padding_curve"] = [
        {
            "extra_pad_columns": e,
            "pad_fraction": sum(pad_share[e]) / len(pad_share[e]),
            "change": sum(v) / len(v),
        }
        for e, v in sorted(per_extra.items())
    ]
    return result


@torch.no_grad()
def batchnorm_statistics(
    model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], pad_id: int, device: str
) -> dict[str, float]:
    """What the PAD rows do to BatchNorm's statistics, in training mode.

    ``pad_mean_shift``: |mean over all rows - mean over real rows| / std of the real rows,
    averaged over channels, layers and batches (the notes' "PAD in the mean").
    ``batch_fluctuation``: std over batches of the batch mean / mean batch std, averaged over
    channels and layers (Shen et al. 2020's "batch statistics fluctuate").
    """
    m = batch_stats_mode(model)
    captured: list[Tensor] = []
    bns = [mod for mod in m.modules() if is_batch_norm(mod)]
    if not bns:
        return {}
    hooks = [
        bn.register_forward_hook(
            lambda mod, inp, out: captured.append(inp[0].detach().float().reshape(-1, inp[0].shape[-1]))
        )
        for bn in bns
    ]
    shifts: list[float] = []
    means: list[list[Tensor]] = [[] for _ in bns]
    stds: list[list[Tensor]] = [[] for _ in bns]
    try:
        for x, _ in batches:
            captured.clear()
            m(x.to(device))
            real = (x != pad_id).reshape(-1).to(device)
            for i, rows in enumerate(captured):
                mu_all = rows.mean(0)
                mu_real = rows[real].mean(0)
                sd_real = rows[real].std(0).clamp_min(1e-6)
                shifts.append(float(((mu_all - mu_real).abs() / sd_real).mean()))
                means[i].append(mu_all)
                stds[i].append(rows.std(0))
    finally:
        for h in hooks:
            h.remove()
    fluct = [
        float((torch.stack(mu).std(0) / torch.stack(sd).mean(0).clamp_min(1e-6)).mean())
        for mu, sd in zip(means, stds, strict=True)
        if len(mu) > 1
    ]
    return {
        "pad_mean_shift": sum(shifts) / len(shifts),
        "batch_fluctuation": sum(fluct) / len(fluct) if fluct else math.nan,
    }


# --------------------------------------------------------------------------- experiment


def _corpus_paths(inputs: Mapping[str, Path], prefix: str) -> list[Path]:
    paths = [inputs[n] for n in sorted(inputs) if n.startswith(prefix)]
    if not paths:
        raise InputError(f"C07: no input named {prefix}* was given (got: {', '.join(sorted(inputs))})")
    return paths


@torch.no_grad()
def future_leak(
    model: nn.Module,
    probes: Sequence[Sequence[int]],
    pool: Sequence[Sequence[int]],
    *,
    batch_size: int,
    pad_id: int,
    vocab: int,
    device: str,
    seed: int,
) -> float:
    """How much a sentence's logits at its first half change, in training mode, when every token at
    a later position in the batch (its own second half and the batch-mates' later tokens) is
    replaced at random. A causal model gives exactly 0; batch statistics over batch and time let the
    later tokens leak into earlier positions (mean relative change over probes)."""
    gen = torch.Generator().manual_seed(30_000 + seed)
    train_like = batch_stats_mode(model)
    changes = []
    for probe in probes:
        mates = [pool[int(i)] for i in torch.randint(len(pool), (batch_size - 1,), generator=gen)]
        x, _ = lm_pairs([probe, *mates], pad_id)
        cut = max(1, (len(probe) - 1) // 2)
        ref = train_like(x.to(device)).logits[0, :cut].float().cpu()
        y = x.clone()
        later = (torch.arange(x.shape[1]) >= cut)[None, :] & (x != pad_id)
        noise = torch.randint(0, vocab, x.shape, generator=gen)
        noise = torch.where(noise == pad_id, (noise + 1) % vocab, noise)
        y[later] = noise[later]
        new = train_like(y.to(device)).logits[0, :cut].float().cpu()
        changes.append(relative_change(new, ref))
    return sum(changes) / len(changes)


def _prepare(ctx: ConceptContext) -> dict[str, Any]:
    """Sentences, PAD id and the fixed evaluation batches every seed and norm shares."""
    from whylab.bench.data import load_tokenizer
    from whylab.bench.train import train_settings

    s = ctx.settings
    norms = list(s.get("norms", ["layer", "batch", "masked_batch", "rms"]))
    missing = [n for n in ("layer", "batch", "masked_batch") if n not in norms]
    if missing:
        raise InputError(
            f"mechanisms.C07.norms: must include layer, batch and masked_batch (missing {missing})"
        )
    if "tokenizer" not in ctx.inputs:
        raise InputError("C07: no input named tokenizer was given")
    tokenizer = load_tokenizer(ctx.inputs["tokenizer"])
    pad_id, vocab = pad_id_of(tokenizer)
    min_len, max_len = int(s.get("min_seq_len", 4)), int(s.get("max_seq_len", 48))
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
    n_eval = min(int(s.get("eval_sequences", 64)), len(valid_seqs))
    eval_seqs, pool = valid_seqs[:n_eval], valid_seqs[n_eval:] or valid_seqs
    extras = sorted({int(e) for e in s.get("extra_padding", [8, 16, 32])})
    train_over = bench.given(s, ("steps", "batch_size", "lr"))
    batch_size = train_settings(s.get("train", {}), **train_over).batch_size
    return {
        "norms": norms,
        "pad_id": pad_id,
        "vocab": vocab,
        "train_seqs": train_seqs,
        "valid_seqs": valid_seqs,
        "eval_seqs": eval_seqs,
        "pool": pool,
        "probes": eval_seqs[: min(int(s.get("probes", 8)), len(eval_seqs))],
        "stream": torch.tensor([t for seq in valid_seqs for t in seq], dtype=torch.long),
        "extras": extras,
        "model_max_len": max(
            int(s.get("model", {}).get("max_len", 256)), max_len - 1 + max(extras, default=0)
        ),
        "train_over": train_over,
        "batch_size": batch_size,
    }


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Every norm trained from ``seed`` (norms have no random weights, so every arm starts from the
    same initial weights and sees the same padded batches: paired), then measured."""
    from whylab.bench.train import bench_config, train_lm, train_settings

    s = ctx.settings
    d = _prepare(ctx)
    pad_id, batch_size = d["pad_id"], d["batch_size"]
    eval_windows = lm_pairs(d["eval_seqs"], pad_id)  # one padded block: eval mode makes padding irrelevant
    eval_batches = fixed_batches(d["eval_seqs"], batch_size, pad_id)
    out: dict[str, Any] = {"seed": seed, "norms": {}}
    for norm in d["norms"]:
        cfg = bench_config(
            s.get("model", {}), vocab_size=d["vocab"], norm=norm, pad_id=pad_id, max_len=d["model_max_len"]
        )
        model = bench.build_model(cfg, seed, ctx.device)
        settings = train_settings(s.get("train", {}), **d["train_over"], seed=seed)
        hist = train_lm(
            model,
            None,
            eval_windows,
            settings,
            ctx.device,
            batch_fn=padded_batch_fn(d["train_seqs"], batch_size, pad_id),
        )
        model.eval()
        eval_loss = token_loss(model, eval_batches, ctx.device)
        stats_loss = token_loss(batch_stats_mode(model), eval_batches, ctx.device)
        tail = hist.train_loss[-max(1, len(hist.train_loss) // 10) :]
        dep = batch_dependence(
            model,
            d["probes"],
            d["pool"],
            d["stream"],
            batch_size=batch_size,
            mate_sets=int(s.get("mate_sets", 4)),
            extra_padding=d["extras"],
            pad_id=pad_id,
            device=ctx.device,
            seed=seed,
        )
        n = len(hist.train_loss)
        late = hist.train_loss[int(0.6 * n) : int(0.8 * n)] or hist.train_loss
        last = hist.train_loss[int(0.8 * n) :] or hist.train_loss
        late_mean, last_mean = sum(late) / len(late), sum(last) / len(last)
        record: dict[str, Any] = {
            # how much the training loss still fell over the last fifth of training (relative)
            "tail_drop": bench.finite((late_mean - last_mean) / last_mean) if last_mean else None,
            "eval_loss": bench.finite(eval_loss),
            "batch_stats_loss": bench.finite(stats_loss),
            "mode_gap": bench.finite(eval_loss - stats_loss),
            "train_loss_end": bench.finite(sum(tail) / len(tail)),
            "diverged": bool(hist.diverged),
            "future_leak": future_leak(
                model,
                d["probes"],
                d["pool"],
                batch_size=batch_size,
                pad_id=pad_id,
                vocab=d["vocab"],
                device=ctx.device,
                seed=seed,
            ),
            "padding_curve": dep["padding_curve"],
            "reference_pad_fraction": dep["reference_pad_fraction"],
            "curve": bench.history_dict(hist),
            **{k: dep[k] for k in ("mates_padded", "mates_nopad", "padding", "eval_mode")},
        }
        if norm == "batch":
            gen = torch.Generator().manual_seed(20_000 + seed)
            sample = padded_batch_fn(d["train_seqs"], batch_size, pad_id)
            record["bn_stats"] = batchnorm_statistics(
                model, [sample(i, gen) for i in range(8)], pad_id, ctx.device
            )
        out["norms"][norm] = record
    return out


MEASURES = (
    "tail_drop",
    "eval_loss",
    "batch_stats_loss",
    "mode_gap",
    "train_loss_end",
    "mates_padded",
    "mates_nopad",
    "padding",
    "eval_mode",
    "future_leak",
)


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    s = ctx.settings
    d = _prepare(ctx)
    norms = d["norms"]
    seeds = [int(r["seed"]) for r in per_seed]

    def vals(norm: str, key: str) -> list[float]:
        return [math.nan if r["norms"][norm][key] is None else float(r["norms"][norm][key]) for r in per_seed]

    floor = float(s.get("min_loss_gain", 0.02))
    loss = {norm: [r["norms"][norm]["eval_loss"] for r in per_seed] for norm in norms}
    bn_stats = [r["norms"]["batch"]["bn_stats"] for r in per_seed if r["norms"]["batch"].get("bn_stats")]
    reference_pad = [r["norms"][n]["reference_pad_fraction"] for r in per_seed for n in norms]
    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "norms": {norm: {k: bench.summary(vals(norm, k)) for k in MEASURES} for norm in norms},
        # positive: the second-named norm's loss is lower (nats/token), paired by seed
        "paired": {
            "reason_naive_minus_masked": bench.paired(loss["batch"], loss["masked_batch"], floor),
            "preference_masked_minus_layer": bench.paired(loss["masked_batch"], loss["layer"], floor),
            "naive_minus_layer": bench.paired(loss["batch"], loss["layer"], floor),
        },
        "diverged": {norm: sum(int(r["norms"][norm]["diverged"]) for r in per_seed) for norm in norms},
        "batchnorm_statistics": {
            k: bench.summary([b[k] for b in bn_stats]) for k in ("pad_mean_shift", "batch_fluctuation")
        }
        if bn_stats
        else {},
        "preference_gap_trend": _gap_trend(per_seed, "masked_batch", "layer"),
        "padding_curves": {
            norm: _mean_curve([r["norms"][norm]["padding_curve"] for r in per_seed]) for norm in norms
        },
        "reference_pad_fraction": sum(reference_pad) / len(reference_pad),
        "pad_fraction_train": _mean_pad_fraction(d["train_seqs"], d["batch_size"], d["pad_id"]),
        "steps": int(d["train_over"].get("steps", s.get("train", {}).get("steps", 200))),
        "sentences": {
            "train": len(d["train_seqs"]),
            "valid": len(d["valid_seqs"]),
            "eval": len(d["eval_seqs"]),
            "mean_length": sum(len(q) for q in d["train_seqs"]) / len(d["train_seqs"]),
        },
        "pad_id": d["pad_id"],
        "min_loss_gain": floor,
        "plateau_tolerance": float(s.get("plateau_tolerance", 0.02)),
        "dependence_threshold": float(s.get("dependence_threshold", 0.01)),
        "invariance_tolerance": float(s.get("invariance_tolerance", 1e-4)),
    }
    histories = {NORM_NAMES[n]: [bench.curve(r["norms"][n]["curve"]) for r in per_seed] for n in norms}
    return Evidence(
        method=Msg(
            "C07.method",
            pad_share=metrics["pad_fraction_train"],
            n_seeds=len(seeds),
            rms=Msg("C07.method_rms") if "rms" in norms else empty(),
        ),
        metrics=metrics,
        seeds=seeds,
        tables=[_table(metrics, norms), _paired_table(metrics)],
        figures=_figures(ctx.outdir, histories, metrics, norms),
        literature=[_shen(metrics)],
    )


def _paired_table(metrics: Mapping[str, Any]) -> Table:
    names = {
        "reason_naive_minus_masked": "the reason: naive BatchNorm − masked BatchNorm",
        "preference_masked_minus_layer": "the preference: masked BatchNorm − LayerNorm",
        "naive_minus_layer": "(shown) naive BatchNorm − LayerNorm",
    }
    return Table.from_records(
        "paired",
        Msg("C07.table.paired.caption", min_gain=metrics["min_loss_gain"]),
        [
            {"comparison": names[k], "paired difference": bench.describe(v, "nats/token")}
            for k, v in metrics["paired"].items()
        ],
    )


def _mean_curve(runs: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Average the per-seed padding curves point by point (same extra columns in every run)."""
    out = []
    for points in zip(*runs, strict=True):
        out.append({k: sum(p[k] for p in points) / len(points) for k in points[0]})
    return out


def _mean_pad_fraction(seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> float:
    gen = torch.Generator().manual_seed(0)
    fn = padded_batch_fn(seqs, batch_size, pad_id)
    shares = [pad_fraction(fn(i, gen)[0], pad_id) for i in range(20)]
    return sum(shares) / len(shares)


def _table(metrics: Mapping[str, Any], norms: Sequence[str]) -> Table:
    records = []
    for norm in norms:
        m = metrics["norms"][norm]
        records.append(
            {
                "norm": NORM_NAMES[norm],
                "validation loss (nats/token)": bench.fmt(m["eval_loss"], 4),
                "loss with batch statistics (nats/token)": bench.fmt(m["batch_stats_loss"], 4),
                "eval-mode gap (nats/token)": bench.fmt(m["mode_gap"], 3),
                "change, other sentences swapped": bench.fmt(m["mates_padded"], 3),
                "change, other rows swapped, no PAD": bench.fmt(m["mates_nopad"], 3),
                "change, extra PAD columns": bench.fmt(m["padding"], 3),
                "change in eval mode": bench.fmt(m["eval_mode"], 3),
                "change of earlier logits when later tokens change": bench.fmt(m["future_leak"], 3),
            }
        )
    return Table.from_records(
        "norms",
        Msg("C07.table.norms.caption"),
        records,
    )


def _figures(
    outdir: Path, histories: Mapping[str, Sequence[Any]], metrics: Mapping[str, Any], norms: Sequence[str]
) -> list[FigureRef]:
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from whylab import plotting

    figs = [
        bench.plot_curves(
            histories,
            outdir,
            "training_curves",
            Msg("C07.figure.training_curves.title"),
            Msg("C07.figure.training_curves.caption"),
        )
    ]

    floor = 1e-9
    rows = []
    for norm in norms:
        for point in metrics["padding_curves"][norm]:
            rows.append(
                {
                    "norm": NORM_NAMES[norm],
                    "PAD share of the batch (%)": 100 * point["pad_fraction"],
                    "change": max(point["change"], floor),
                }
            )
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(
        data=pd.DataFrame(rows), x="PAD share of the batch (%)", y="change", hue="norm", marker="o", ax=ax
    )
    ax.set_yscale("log")
    ax.axvline(100 * metrics["reference_pad_fraction"], color="grey", linestyle=":")
    ax.set_xlabel("PAD share of the batch (% of positions)")
    ax.set_ylabel("relative change of one sentence's logits (ratio)")
    figs.append(plotting.save_figure(fig, outdir, "C07.figure.change_vs_padding", floor=floor))

    rows = []
    labels = {
        "mates_padded": "other\nsentences\nswapped",
        "mates_nopad": "other rows\nswapped\n(no PAD)",
        "padding": "extra PAD\ncolumns",
        "eval_mode": "other\nsentences,\neval mode",
        "future_leak": "later\ntokens\nchanged",
    }
    for norm in norms:
        for key, label in labels.items():
            for v in bench.values(metrics["norms"][norm][key]):
                rows.append({"norm": NORM_NAMES[norm], "batch change": label, "change": max(v, floor)})
    fig, ax = plt.subplots(figsize=(10, 4.6), layout="constrained")
    sns.barplot(data=pd.DataFrame(rows), x="batch change", y="change", hue="norm", errorbar="sd", ax=ax)
    ax.set_yscale("log")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="norm")
    ax.set_xlabel("what changes in the sentence's batch")
    ax.set_ylabel("relative change of the logits (ratio)")
    figs.append(plotting.save_figure(fig, outdir, "C07.figure.batch_dependence", floor=floor))
    return figs


def _shen(metrics: Mapping[str, Any]) -> LiteratureCheck:
    ln = bench.values(metrics["norms"]["layer"]["eval_loss"])
    bn = bench.values(metrics["norms"]["batch"]["eval_loss"])
    stats = metrics.get("batchnorm_statistics", {})
    fluct = stats.get("batch_fluctuation", {}).get("mean")
    shift = stats.get("pad_mean_shift", {}).get("mean")
    del ln, bn
    eff = metrics["paired"]["naive_minus_layer"]["effect"]
    agrees: bool | None = True if eff == 1 else False if eff == -1 else None
    not_measured = Msg("C07.literature.shen.not_measured")
    tail = (
        Msg("C07.literature.shen.within_noise")
        if agrees is None
        else Msg("C07.literature.shen.batchnorm_wins")
        if agrees is False
        else empty()
    )
    return LiteratureCheck(
        source="Shen et al. 2020, PowerNorm: Rethinking Batch Normalization in Transformers",
        finding=Msg("C07.literature.shen.finding"),
        agrees=agrees,
        note=Msg(
            "C07.literature.shen.note",
            layer=bench.fmt(metrics["norms"]["layer"]["eval_loss"], 4),
            batch=bench.fmt(metrics["norms"]["batch"]["eval_loss"], 4),
            fluctuation=f"{fluct:.3f}" if fluct is not None else not_measured,
            shift=f"{shift:.3f}" if shift is not None else not_measured,
            tail=tail,
        ),
    )


# --------------------------------------------------------------------------- verdict


# the primary comparison is the catalogue's C07.primary (with the run's seeds and steps)


def _gap_trend(per_seed: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Mean over seeds of the evaluation-curve loss gap a − b half-way through training and at the
    end (nats/token): whether a short run's lead is still changing when training stops."""
    mids, ends = [], []
    for r in per_seed:
        ca, cb = r["norms"][a]["curve"], r["norms"][b]["curve"]
        la, lb = ca["eval_loss"], cb["eval_loss"]
        if len(la) < 2 or len(la) != len(lb) or any(v is None for v in (*la, *lb)):
            continue
        mid = len(la) // 2
        mids.append(float(la[mid]) - float(lb[mid]))
        ends.append(float(la[-1]) - float(lb[-1]))
        steps = ca["eval_steps"]
    if not mids:
        return {"mid": None, "end": None, "mid_step": None, "end_step": None}
    return {
        "mid": sum(mids) / len(mids),
        "end": sum(ends) / len(ends),
        "mid_step": int(steps[len(steps) // 2]),
        "end_step": int(steps[-1]),
    }


def _status(p: Mapping[str, Any]) -> str:
    """A paired comparison a − b as 'confirmed' (b clearly lower), 'contradicted' (a clearly lower)
    or 'limited': no clear difference in a run this short (also when the difference is shown to be
    small: a few hundred steps of a tiny model cannot say it stays small)."""
    if p["effect"] == 1:
        return "confirmed"
    if p["effect"] == -1:
        return "contradicted"
    return "limited"


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Two parts, each decided by a paired loss comparison:

    - the reason: masked BatchNorm (PAD excluded from the statistics) clearly lower than naive
      BatchNorm; contradicted if PAD barely moves naive BatchNorm's output, or masking clearly hurts;
    - the preference: LayerNorm clearly lower than masked BatchNorm (masked BatchNorm clearly lower
      contradicts it).

    A part that is not clear either way, or any loss comparison while the training loss is still
    falling by ``plateau_tolerance`` or more over the last fifth of training (not at a plateau: a
    short run's early lead says little about the final loss), is a limit of this run
    (``limited``): it never lowers the label. Both judged parts confirmed: supported; one confirmed and one contradicted: partly;
    all judged parts contradicted: not supported; nothing judged: inconclusive.
    """
    from whylab.verdict import Kind, VerdictOf

    steps = metrics.get("steps", "?")
    primary = Msg("C07.primary", n_seeds=metrics["n_seeds"], steps=steps)
    ln, bn, mbn = metrics["norms"]["layer"], metrics["norms"]["batch"], metrics["norms"]["masked_batch"]
    tol = float(metrics["invariance_tolerance"])
    threshold = float(metrics["dependence_threshold"])
    ln_dep = max(float(ln["mates_padded"]["mean"]), float(ln["padding"]["mean"]))
    bn_pad = float(bn["padding"]["mean"])
    mbn_pad = float(mbn["padding"]["mean"])
    limited: list[str] = []

    out = VerdictOf(Kind.EXPERIMENT, primary, limited)  # reads limited when a verdict is made

    if ln_dep > tol or mbn_pad > tol:
        return out.branch(
            Label.INCONCLUSIVE, "C07.verdict.untrustworthy", ln_dep=ln_dep, mbn_pad=mbn_pad, tol=tol
        )
    pc = metrics["paired"]
    if metrics["n_seeds"] < 2 or any(p["n"] < 2 for p in pc.values()):
        return out.branch(Label.INCONCLUSIVE, "C07.verdict.too_few_seeds")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C07.verdict.diverged")
    reason_p, pref_p = pc["reason_naive_minus_masked"], pc["preference_masked_minus_layer"]
    leak = bn["future_leak"]["mean"]
    drops = {n: metrics["norms"][n]["tail_drop"]["mean"] for n in ("layer", "batch", "masked_batch")}
    still = max((d for d in drops.values() if d is not None), default=0.0)
    converged = still < float(metrics.get("plateau_tolerance", 0.02))
    reason = "contradicted" if bn_pad < threshold else (_status(reason_p) if converged else "limited")
    preference = _status(pref_p) if converged else "limited"
    trend = metrics.get("preference_gap_trend") or {}
    floor = float(metrics.get("min_loss_gain", 0.02))
    closing = (
        trend.get("mid") is not None
        and trend.get("end") is not None
        and abs(float(trend["mid"])) - abs(float(trend["end"])) > floor
    )
    trend_text = empty()
    if trend.get("mid") is not None and trend.get("end") is not None:
        mid, end = float(trend["mid"]), float(trend["end"])
        swapped = mid * end < 0 and min(abs(mid), abs(end)) > floor
        trend_text = Msg(
            "C07.reason.trend",
            mid=mid,
            end=end,
            mid_step=trend["mid_step"],
            end_step=trend["end_step"],
            swapped=Msg("C07.reason.lead_changed") if swapped else empty(),
        )
    numbers = Msg(
        "C07.reason.numbers",
        bn_pad=bn_pad,
        mbn_pad=mbn_pad,
        ln_dep=ln_dep,
        reason_delta=bench.describe(reason_p, "nats/token"),
        pref_delta=bench.describe(pref_p, "nats/token"),
        leak=leak,
        ln_leak=ln["future_leak"]["mean"],
        mode_gap=bench.fmt(bn["mode_gap"], 3),
        trend=trend_text,
    )
    if preference != "limited" and closing:
        # BatchNorm's per-feature batch standardisation speeds up the first steps; a lead that is
        # still shrinking when training stops says little about the trained model
        preference = "limited"
        limited.append(
            Msg(
                "C07.limited.preference_closing",
                mid=float(trend["mid"]),
                end=float(trend["end"]),
                mid_step=trend["mid_step"],
                end_step=trend["end_step"],
            )
        )
    why = (
        Msg("C07.reason.not_clear")
        if converged
        else Msg("C07.reason.not_at_plateau", still=still, steps=steps)
    )
    if reason == "limited":
        limited.append(
            Msg("C07.limited.reason", steps=steps, delta=bench.describe(reason_p, "nats/token"), why=why)
        )
    if preference == "limited" and not closing:
        limited.append(
            Msg("C07.limited.preference", steps=steps, delta=bench.describe(pref_p, "nats/token"), why=why)
        )
    judged = [x for x in (reason, preference) if x != "limited"]
    if not judged:
        return out.branch(Label.INCONCLUSIVE, "C07.verdict.nothing_judged", numbers=numbers)
    if all(x == "confirmed" for x in judged):
        return out.branch(Label.SUPPORTED, "C07.verdict.supported", numbers=numbers)
    if all(x == "contradicted" for x in judged):
        # the parts this run judged (the other, if any, is a limit)
        key = (
            "C07.verdict.not_supported"
            if len(judged) == 2
            else "C07.verdict.not_supported_reason"
            if reason == "contradicted"
            else "C07.verdict.not_supported_preference"
        )
        return out.branch(Label.NOT_SUPPORTED, key, numbers=numbers)
    # one part confirmed, the other contradicted
    key = "C07.verdict.partly_reason" if reason == "contradicted" else "C07.verdict.partly_preference"
    return out.branch(Label.PARTLY, key, numbers=numbers)
