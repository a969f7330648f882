"""C07's probes of a trained model: the loss with running or batch statistics, how much one
sentence's logits move with the rest of its batch or with extra padding, what the PAD rows do to
BatchNorm's statistics, and the leak of later tokens into earlier positions. Measuring only."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whylab.bench.model import is_batch_norm
from whylab.concepts.c07_layernorm_vs_batchnorm.padding import IGNORE, lm_pairs, pad_fraction


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
