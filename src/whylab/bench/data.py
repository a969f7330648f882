"""Token streams for the bench experiments: the spine's corpus through the spine's tokenizer.

The language-modelling experiments (C03–C09) train on random windows of one long
id stream and evaluate on fixed, non-overlapping windows of the validation split,
so every variant of a comparison sees exactly the same validation tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from whylab.errors import InputError


def load_tokenizer(path: Path) -> Tokenizer:
    """A Hugging Face ``tokenizer.json``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"tokenizer file {str(path)!r} does not exist")
    return Tokenizer.from_file(str(path))


def encode_file(path: Path, tokenizer: Tokenizer) -> Tensor:
    """The whole text file as one 1-D LongTensor of ids (line by line, newlines kept)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"text file {str(path)!r} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    ids: list[int] = []
    for enc in tokenizer.encode_batch(lines, add_special_tokens=False):
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


def encode_inputs(inputs: Mapping[str, Path], prefix: str, tokenizer: Tokenizer) -> Tensor:
    """Concatenate the ids of every input whose name starts with ``prefix`` (e.g. train_en,
    train_ko), in name order, so the stream does not depend on argument order."""
    names = sorted(n for n in inputs if n.startswith(prefix))
    if not names:
        raise InputError(f"no input named {prefix}* was given (got: {', '.join(sorted(inputs))})")
    return torch.cat([encode_file(inputs[n], tokenizer) for n in names])


def lm_batches(
    ids: Tensor, *, batch_size: int, seq_len: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """Infinite random (input, target) windows of ``ids``; target = input shifted by one."""
    n_starts = ids.numel() - seq_len - 1
    if n_starts < 1:
        raise InputError(f"the token stream has {ids.numel()} ids, too few for seq_len={seq_len}")
    offsets = torch.arange(seq_len)
    while True:
        starts = torch.randint(0, n_starts + 1, (batch_size,), generator=generator)
        idx = starts[:, None] + offsets[None]
        yield ids[idx], ids[idx + 1]


def eval_windows(ids: Tensor, *, seq_len: int, max_windows: int) -> tuple[Tensor, Tensor]:
    """Fixed, non-overlapping validation windows from the start of ``ids`` (deterministic)."""
    n = min(max_windows, (ids.numel() - 1) // seq_len)
    if n < 1:
        raise InputError(f"the validation stream has {ids.numel()} ids, too few for seq_len={seq_len}")
    x = ids[: n * seq_len].view(n, seq_len)
    y = ids[1 : n * seq_len + 1].view(n, seq_len)
    return x, y


def lm_data(inputs: Mapping[str, Path]) -> tuple[Tokenizer, Tensor, Tensor]:
    """What a mechanism rule hands a concept: (tokenizer, train ids, valid ids).

    ``inputs`` holds ``tokenizer`` and every ``train*`` / ``valid*`` corpus file.
    """
    if "tokenizer" not in inputs:
        raise InputError("no input named tokenizer was given")
    tokenizer = load_tokenizer(inputs["tokenizer"])
    return tokenizer, encode_inputs(inputs, "train", tokenizer), encode_inputs(inputs, "valid", tokenizer)
