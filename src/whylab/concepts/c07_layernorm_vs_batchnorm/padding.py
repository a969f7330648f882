"""C07's padded batches of real sentences: sentences of mixed lengths from the corpus, padded to
the longest in their batch (PAD in x, -100 in y). Measuring only (torch)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

IGNORE = -100  # target id that cross-entropy skips (PAD positions)
PAD_TOKENS = ("<pad>", "[PAD]", "<PAD>")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


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
