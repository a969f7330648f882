"""Held-out quality of a causal LM: mean next-token NLL and perplexity, in torch.

Every predicted token of every block counts once (the first token of a block
has no context and is not predicted), so the number is exp(mean token NLL) over
exactly ``N * (block_size - 1)`` tokens, whatever the batch size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F


@torch.no_grad()
def nll_per_token(model: Any, blocks: torch.Tensor, *, batch_size: int = 8, device: str = "cpu") -> float:
    """Mean negative log-likelihood (nats per token) of ``blocks`` under ``model``.

    ``model`` must already be on ``device`` (quantized models cannot always move);
    any callable returning an object with ``.logits`` works, e.g. an ORT model.
    Logits are upcast to float32 before the log-softmax, so bf16/fp16 models are
    scored with the same arithmetic as fp32 ones. The model's train/eval mode is
    restored afterwards.
    """
    if blocks.ndim != 2 or blocks.shape[1] < 2:
        raise ValueError(f"blocks must be (N, block_size >= 2), got {tuple(blocks.shape)}")
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    total = 0.0
    count = 0
    try:
        for start in range(0, blocks.shape[0], batch_size):
            batch = blocks[start : start + batch_size].to(device)
            mask = torch.ones_like(batch)
            logits = model(input_ids=batch, attention_mask=mask).logits
            logits = torch.as_tensor(logits).to(device=batch.device, dtype=torch.float32)
            pred = logits[:, :-1, :].reshape(-1, logits.shape[-1])
            target = batch[:, 1:].reshape(-1)
            total += float(F.cross_entropy(pred, target, reduction="sum"))
            count += target.numel()
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return total / count


def perplexity(model: Any, blocks: torch.Tensor, *, batch_size: int = 8, device: str = "cpu") -> float:
    """exp(mean token NLL): the effective number of equally likely next tokens."""
    return math.exp(nll_per_token(model, blocks, batch_size=batch_size, device=device))
