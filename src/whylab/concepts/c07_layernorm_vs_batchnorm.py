"""C07: NLP prefers LayerNorm to BatchNorm because sentences differ in length and BatchNorm
averages over the padding.

The experiment trains the same bench transformer with LayerNorm, with BatchNorm (each channel
normalised over batch *and* time, PAD positions included, as a naive user would write it) and,
as a reference, with RMSNorm, on padded batches of real sentences of mixed lengths. It measures
what the notes' argument predicts:

- the validation loss (BatchNorm evaluates with its running statistics) and the gap between
  evaluating with running and with batch statistics on the same batches;
- batch dependence: how much one sentence's logits change when the *other* sentences in its
  batch change (with and without any PAD in the batch), or when only the amount of padding in
  its batch grows. LayerNorm normalises each token on its own, so it must show ~0; BatchNorm
  in training mode must not;
- for BatchNorm, how far the PAD rows move the batch mean (the notes' mechanism itself) and how
  much the batch statistics fluctuate from batch to batch (Shen et al. 2020's diagnosis).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whylab.concepts import ConceptContext
from whylab.concepts import _bench_common as bench
from whylab.errors import InputError
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Label, Verdict, clearly_less

CLAIM_ID = "C07"
IGNORE = -100  # target id that cross-entropy skips (PAD positions)
PAD_TOKENS = ("<pad>", "[PAD]", "<PAD>")
NORM_NAMES = {"layer": "LayerNorm", "batch": "BatchNorm", "rms": "RMSNorm", "none": "no norm"}
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


def padded_batch_fn(seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int):  # type: ignore[no-untyped-def]
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
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
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
        for mates in same_len[1:]:
            out["mates_nopad"].append(
                relative_change(probe_logits(train_like, probe, mates, pad_id, device), ref_nopad)
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
    bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return {}
    hooks = [
        bn.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach().float())) for bn in bns
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


def run(ctx: ConceptContext) -> Evidence:
    from whylab.bench.data import load_tokenizer
    from whylab.bench.train import bench_config, train_lm, train_settings

    s = ctx.settings
    norms = list(s.get("norms", ["layer", "batch", "rms"]))
    if "layer" not in norms or "batch" not in norms:
        raise InputError("mechanisms.C07.norms: must include both 'layer' and 'batch'")
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
    n_probes = min(int(s.get("probes", 8)), len(eval_seqs))
    probes = eval_seqs[:n_probes]
    stream = torch.tensor([t for seq in valid_seqs for t in seq], dtype=torch.long)
    extras = sorted({int(e) for e in s.get("extra_padding", [8, 16, 32])})

    model_max_len = max(int(s.get("model", {}).get("max_len", 256)), max_len - 1 + max(extras, default=0))
    train_over = bench.given(s, ("steps", "batch_size", "lr"))
    batch_size = train_settings(s.get("train", {}), **train_over).batch_size
    eval_windows = lm_pairs(eval_seqs, pad_id)  # one padded block: eval mode makes padding irrelevant
    eval_batches = fixed_batches(eval_seqs, batch_size, pad_id)

    histories: dict[str, list[Any]] = {}
    per_norm: dict[str, dict[str, list[float]]] = {}
    curves: dict[str, list[list[dict[str, float]]]] = {}
    bn_stats: list[dict[str, float]] = []
    reference_pad: list[float] = []
    for norm in norms:
        cfg = bench_config(
            s.get("model", {}), vocab_size=vocab, norm=norm, pad_id=pad_id, max_len=model_max_len
        )
        rows: dict[str, list[float]] = {
            k: []
            for k in (
                "eval_loss",
                "batch_stats_loss",
                "mode_gap",
                "train_loss_end",
                "mates_padded",
                "mates_nopad",
                "padding",
                "eval_mode",
            )
        }
        histories[NORM_NAMES[norm]] = []
        curves[norm] = []
        for seed in ctx.seeds:
            model = bench.build_model(cfg, seed, ctx.device)
            settings = train_settings(s.get("train", {}), **train_over, seed=seed)
            hist = train_lm(
                model,
                None,
                eval_windows,
                settings,
                ctx.device,
                batch_fn=padded_batch_fn(train_seqs, batch_size, pad_id),
            )
            histories[NORM_NAMES[norm]].append(hist)
            model.eval()
            eval_loss = token_loss(model, eval_batches, ctx.device)
            stats_loss = token_loss(batch_stats_mode(model), eval_batches, ctx.device)
            tail = hist.train_loss[-max(1, len(hist.train_loss) // 10) :]
            dep = batch_dependence(
                model,
                probes,
                pool,
                stream,
                batch_size=batch_size,
                mate_sets=int(s.get("mate_sets", 4)),
                extra_padding=extras,
                pad_id=pad_id,
                device=ctx.device,
                seed=seed,
            )
            rows["eval_loss"].append(eval_loss)
            rows["batch_stats_loss"].append(stats_loss)
            rows["mode_gap"].append(eval_loss - stats_loss)
            rows["train_loss_end"].append(sum(tail) / len(tail))
            for key in ("mates_padded", "mates_nopad", "padding", "eval_mode"):
                rows[key].append(dep[key])
            curves[norm].append(dep["padding_curve"])
            reference_pad.append(dep["reference_pad_fraction"])
            if norm == "batch":
                gen = torch.Generator().manual_seed(20_000 + seed)
                sample = padded_batch_fn(train_seqs, batch_size, pad_id)
                bn_stats.append(
                    batchnorm_statistics(model, [sample(i, gen) for i in range(8)], pad_id, ctx.device)
                )
        per_norm[norm] = rows

    metrics: dict[str, Any] = {
        "norms": {norm: {k: bench.summary(v) for k, v in rows.items()} for norm, rows in per_norm.items()},
        "batchnorm_statistics": {
            k: bench.summary([b[k] for b in bn_stats]) for k in ("pad_mean_shift", "batch_fluctuation")
        }
        if bn_stats
        else {},
        "padding_curves": {norm: _mean_curve(c) for norm, c in curves.items()},
        "reference_pad_fraction": sum(reference_pad) / len(reference_pad),
        "pad_fraction_train": _mean_pad_fraction(train_seqs, batch_size, pad_id),
        "sentences": {
            "train": len(train_seqs),
            "valid": len(valid_seqs),
            "eval": n_eval,
            "mean_length": sum(len(q) for q in train_seqs) / len(train_seqs),
        },
        "pad_id": pad_id,
        "dependence_threshold": float(s.get("dependence_threshold", 0.01)),
        "invariance_tolerance": float(s.get("invariance_tolerance", 1e-4)),
    }
    return Evidence(
        method=(
            "The same bench transformer is trained with LayerNorm, with BatchNorm (each channel "
            "normalised over batch and time, PAD positions included) and with RMSNorm as a reference, "
            "on batches of real sentences of mixed lengths padded to the longest in the batch "
            f"(on average {metrics['pad_fraction_train']:.0%} of a training batch is PAD), over "
            f"{len(ctx.seeds)} seeds. After training we compare the validation loss (BatchNorm with its "
            "running statistics, as in deployment) with the loss on the same batches using batch "
            "statistics, and we measure how much one sentence's logits change when the other sentences "
            "in its batch change, or when only extra PAD columns are added to the batch. (In training mode "
            "BatchNorm's statistics also include later tokens, so it is not even causal; the reported loss is "
            "measured in eval mode, where that cannot help.)"
        ),
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=[_table(metrics, norms)],
        figures=_figures(ctx.outdir, histories, metrics, norms),
        literature=[_shen(metrics)],
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
            }
        )
    return Table.from_records(
        "norms",
        "Mean ± std over seeds. 'Change' is the relative change ||Δlogits||/||logits|| of one "
        "sentence's logits (training mode: batch statistics) when the rest of its batch changes; "
        "'eval-mode gap' is the validation loss with running statistics minus with batch statistics.",
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
            "Validation loss while training on padded batches",
            "Validation loss (eval mode; BatchNorm uses its running statistics) per norm; line = mean over "
            "seeds, band = ±1 standard deviation.",
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
    figs.append(
        plotting.save(
            fig,
            outdir,
            "change_vs_padding",
            "Output change vs padding in the batch",
            "The same sentence in the same batch, with extra PAD columns added (training mode, batch "
            "statistics), compared with the batch padded only to its longest sentence (dotted line: that "
            f"batch's PAD share); mean over probes and seeds, values below {floor:g} drawn at {floor:g}. "
            "LayerNorm and RMSNorm normalise each token alone, so their line sits at float round-off.",
        )
    )

    rows = []
    labels = {
        "mates_padded": "other sentences\nswapped",
        "mates_nopad": "other rows swapped\n(no PAD at all)",
        "padding": "extra PAD\ncolumns",
        "eval_mode": "other sentences\nswapped (eval mode)",
    }
    for norm in norms:
        for key, label in labels.items():
            for v in bench.values(metrics["norms"][norm][key]):
                rows.append({"norm": NORM_NAMES[norm], "batch change": label, "change": max(v, floor)})
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    sns.barplot(data=pd.DataFrame(rows), x="batch change", y="change", hue="norm", errorbar="sd", ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("what changes in the sentence's batch")
    ax.set_ylabel("relative change of the logits (ratio)")
    figs.append(
        plotting.save(
            fig,
            outdir,
            "batch_dependence",
            "Does one sentence's output depend on its batch?",
            "Relative change of one sentence's logits when its batch changes; bars = mean over seeds, "
            f"error bars = ±1 std; values below {floor:g} drawn at {floor:g}.",
        )
    )
    return figs


def _shen(metrics: Mapping[str, Any]) -> LiteratureCheck:
    ln = bench.values(metrics["norms"]["layer"]["eval_loss"])
    bn = bench.values(metrics["norms"]["batch"]["eval_loss"])
    stats = metrics.get("batchnorm_statistics", {})
    fluct = stats.get("batch_fluctuation", {}).get("mean")
    shift = stats.get("pad_mean_shift", {}).get("mean")
    agrees: bool | None
    if clearly_less(ln, bn):
        agrees = True
    elif clearly_less(bn, ln):
        agrees = False
    else:
        agrees = None
    fl = f"{fluct:.3f}" if fluct is not None else "n/a"
    sh = f"{shift:.3f}" if shift is not None else "n/a"
    return LiteratureCheck(
        source="Shen et al. 2020, PowerNorm: Rethinking Batch Normalization in Transformers",
        finding=(
            "Naive BatchNorm in NLP transformers trains worse than LayerNorm, because the batch "
            "statistics fluctuate strongly from batch to batch."
        ),
        agrees=agrees,
        note=(
            f"Here: validation loss LayerNorm {bench.fmt(metrics['norms']['layer']['eval_loss'], 4)} vs "
            f"BatchNorm {bench.fmt(metrics['norms']['batch']['eval_loss'], 4)} nats/token; batch-to-batch "
            f"fluctuation of BatchNorm's channel means = {fl} of a channel's std; the PAD rows move a "
            f"training batch's channel means by {sh} of a channel's std. "
            + (
                "The loss difference is within the seed noise at this scale (tiny model, a few hundred "
                "steps), so this run cannot confirm or refute it."
                if agrees is None
                else "BatchNorm's faster early progress wins in this short run of a tiny model; Shen et al. "
                "trained full-size translation and language models to convergence."
                if agrees is False
                else ""
            )
        ),
    )


# --------------------------------------------------------------------------- verdict


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Supported when BatchNorm's output depends on the padding while LayerNorm's does not, and
    LayerNorm reaches a clearly lower loss; partly when only the mechanism or only the loss shows."""
    ln, bn = metrics["norms"]["layer"], metrics["norms"]["batch"]
    tol = float(metrics["invariance_tolerance"])
    threshold = float(metrics["dependence_threshold"])
    ln_dep = max(float(ln["mates_padded"]["mean"]), float(ln["padding"]["mean"]))
    bn_pad = float(bn["padding"]["mean"])
    bn_mates = float(bn["mates_nopad"]["mean"])
    ln_loss, bn_loss = bench.values(ln["eval_loss"]), bench.values(bn["eval_loss"])
    losses = (
        f"validation loss LN {bench.fmt(ln['eval_loss'], 4)} vs BN {bench.fmt(bn['eval_loss'], 4)} nats/token"
    )
    if ln_dep > tol:
        return Verdict(
            Label.INCONCLUSIVE,
            f"LayerNorm's output changed by {ln_dep:.2g} with its batch although it normalises each "
            f"token alone (tolerance {tol:g}): the batch-dependence measurement is not trustworthy.",
        )
    if len(ln_loss) < 2 or len(bn_loss) < 2:
        return Verdict(Label.INCONCLUSIVE, f"Fewer than two finished seeds per norm ({losses}).")
    ln_better, bn_better = clearly_less(ln_loss, bn_loss), clearly_less(bn_loss, ln_loss)
    mechanism = (
        f"extra PAD changes a sentence's BatchNorm logits by {bn_pad:.2g} (LayerNorm: {ln_dep:.1g}), "
        f"and swapping PAD-free batch-mates by {bn_mates:.2g}"
    )
    if bn_pad < threshold:
        if ln_better:
            return Verdict(
                Label.PARTLY,
                f"LayerNorm trains better ({losses}), but padding barely moves BatchNorm's output "
                f"({bn_pad:.2g} < {threshold:g}), so the stated reason is not what this run shows.",
            )
        return Verdict(
            Label.NOT_SUPPORTED,
            f"Padding barely moves BatchNorm's output ({bn_pad:.2g} < {threshold:g}) and LayerNorm "
            f"is not clearly better ({losses}).",
        )
    if ln_better:
        return Verdict(
            Label.SUPPORTED,
            f"{mechanism[0].upper()}{mechanism[1:]}; {losses}, LayerNorm clearly lower. PAD in the "
            "mean is one reason; batch dependence without PAD is another.",
        )
    if bn_better:
        return Verdict(
            Label.PARTLY,
            f"The mechanism is real ({mechanism}), but BatchNorm reached the lower loss here ({losses}).",
        )
    return Verdict(
        Label.PARTLY,
        f"The mechanism is real ({mechanism}), but the losses are within seed noise ({losses}), so "
        "'BatchNorm works poorly' is not shown at this scale.",
    )
