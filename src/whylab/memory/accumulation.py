"""Gradient accumulation, and the loss normalisation that decides whether it equals the large batch.

A causal-LM loss is a mean over target tokens. Split a batch into micro-batches
and average their per-micro-batch means ("mean of means"), and every micro-batch
gets the same weight however many real tokens it holds: with padding or variable
lengths that is not the large batch's token mean. Dividing each micro-batch's
token *sum* by the number of target tokens in the whole batch restores equality;
transformers exposes exactly that as the ``num_items_in_batch`` argument of the
model's loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from whylab.errors import InputError

NORMALISATIONS = ("mean_of_means", "token_sum")
IGNORE = -100


def make_batch(
    vocab: int, batch: int, max_len: int, min_len: int, seed: int, variable: bool, pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """Random ids, right-padded to ``max_len``; labels are -100 (ignored) on padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, max_len), generator=gen)
    if variable:
        lengths = torch.randint(min_len, max_len + 1, (batch,), generator=gen)
    else:
        lengths = torch.full((batch,), max_len)
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, pad_id)
    labels = ids.masked_fill(mask == 0, IGNORE)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def target_tokens(labels: torch.Tensor) -> int:
    """Tokens that count in the causal-LM loss: labels shifted by one, ignored positions dropped."""
    return int((labels[:, 1:] != IGNORE).sum())


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def full_batch_backward(model: nn.Module, batch: dict[str, torch.Tensor], device: str = "cpu") -> float:
    """The reference: one backward over the whole batch, loss = mean over all its target tokens."""
    loss = model(**_to(batch, device)).loss
    loss.backward()
    return float(loss.detach())


def accumulate_backward(
    model: nn.Module, batch: dict[str, torch.Tensor], micro: int, normalisation: str, device: str = "cpu"
) -> float:
    """Backward over micro-batches of ``micro`` sequences, gradients summed in .grad; returns the loss reported."""
    n = batch["input_ids"].shape[0]
    if n % micro:
        raise InputError(f"memory.C20.micro_batch_sizes: {micro} does not divide batch_size {n}")
    chunks = n // micro
    total_tokens = target_tokens(batch["labels"])
    reported = 0.0
    for i in range(chunks):
        part = _to({k: v[i * micro : (i + 1) * micro] for k, v in batch.items()}, device)
        if normalisation == "mean_of_means":
            loss = model(**part).loss / chunks
        elif normalisation == "token_sum":
            loss = model(**part, num_items_in_batch=total_tokens).loss
        else:
            raise InputError(
                f"memory.C20: normalisation {normalisation!r} is not one of {', '.join(NORMALISATIONS)}"
            )
        loss.backward()
        reported += float(loss.detach())
    return reported


def gradients(model: nn.Module, backward: Callable[[], float]) -> tuple[list[torch.Tensor], float]:
    """Gradients (copied to CPU) and the loss of one ``backward()`` from zeroed gradients."""
    model.zero_grad(set_to_none=True)
    loss = backward()
    grads = [p.grad.detach().cpu().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return grads, loss


def relative_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> tuple[float, float]:
    """(‖a − b‖ / ‖b‖ over all parameters, max |a − b|)."""
    num = sum(float((x - y).double().pow(2).sum()) for x, y in zip(a, b, strict=True)) ** 0.5
    den = sum(float(y.double().pow(2).sum()) for y in b) ** 0.5
    mx = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
    return num / den, mx
