"""Corpus files -> fixed-size blocks of token ids, with the trained tokenizer.

Every consumer (training, evaluation, quantization, fine-tuning) calls
:func:`token_blocks` on the corpus files itself instead of sharing tensors on disk:
it is cheap and deterministic, so everyone measures on exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from whylab.errors import InputError

INPUT_NAMES = ["input_ids", "attention_mask"]
# names special tokens go by in the usual conventions, most specific first
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "[EOS]", "<|eos|>", "[SEP]")
_BOS_CANDIDATES = ("<s>", "<bos>", "[BOS]", "<|bos|>", "[CLS]")
_PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>")
_UNK_CANDIDATES = ("<unk>", "[UNK]", "<|unk|>")
# added only when the tokenizer has no end-of-text token of its own
FALLBACK_EOS = "<|endoftext|>"


def _find(tokenizer: PreTrainedTokenizerFast, candidates: Sequence[str]) -> str | None:
    vocab = tokenizer.get_vocab()
    return next((c for c in candidates if c in vocab), None)


def load_tokenizer(hf_dir: Path) -> PreTrainedTokenizerFast:
    """Load a trained tokenizer with its special tokens set for causal LM use.

    ``hf_dir`` is a folder ``AutoTokenizer`` loads (``tokenizer_config.json``), or a
    folder holding only ``tokenizer.json`` (or that file itself, or a folder whose
    parent holds it). Returns a fast tokenizer whose ``model_input_names`` are
    input_ids and attention_mask (token_type_ids would break ``generate``), with an
    end-of-text token (added as ``<|endoftext|>`` only if the vocabulary has none),
    and pad = eos and bos = eos when those are missing, as GPT-style models do.
    """
    path = Path(hf_dir)
    if (path / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(path), model_input_names=INPUT_NAMES)
        if not isinstance(tokenizer, PreTrainedTokenizerFast):
            raise InputError(f"{path}: expected a fast (tokenizers-backed) tokenizer")
    else:
        candidates = (
            [path] if path.suffix == ".json" else [path / "tokenizer.json", path.parent / "tokenizer.json"]
        )
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            raise InputError(f"{path}: no tokenizer_config.json or tokenizer.json found")
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(file), model_input_names=INPUT_NAMES)
    tokenizer.model_input_names = list(INPUT_NAMES)
    _set_special_tokens(tokenizer)
    return tokenizer


def _set_special_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    if tokenizer.eos_token is None:
        found = _find(tokenizer, _EOS_CANDIDATES)
        if found is None:
            tokenizer.add_special_tokens({"eos_token": FALLBACK_EOS})
        else:
            tokenizer.eos_token = found
    if tokenizer.bos_token is None:
        tokenizer.bos_token = _find(tokenizer, _BOS_CANDIDATES) or tokenizer.eos_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = _find(tokenizer, _PAD_CANDIDATES) or tokenizer.eos_token
    if tokenizer.unk_token is None:
        unk = _find(tokenizer, _UNK_CANDIDATES)
        if unk is not None:
            tokenizer.unk_token = unk
    tokenizer.padding_side = "left"  # batched generation continues right after each prompt


def token_ids(text_paths: Sequence[Path], tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """All files' paragraphs tokenized, each followed by the end-of-text token.

    A paragraph is one non-empty line: the corpus step writes one paragraph per
    line. Files are read in the order given (callers pass a fixed order).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the tokenizer has no end-of-text token; load it with load_tokenizer")
    ids: list[int] = []
    for path in text_paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"corpus file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        paragraphs = [p.strip() for p in text.splitlines()]
        paragraphs = [p for p in paragraphs if p]
        if not paragraphs:
            continue
        encoded = tokenizer(paragraphs, add_special_tokens=False)["input_ids"]
        for piece in encoded:
            ids.extend(piece)
            ids.append(eos)
    return ids


def token_blocks(
    text_paths: Sequence[Path],
    tokenizer: PreTrainedTokenizerFast,
    block_size: int,
    max_blocks: int | None = None,
) -> torch.Tensor:
    """Non-overlapping ``(N, block_size)`` blocks of the files' tokens, in reading order.

    The token stream of :func:`token_ids` is cut into consecutive blocks and the
    incomplete tail is dropped; ``max_blocks`` keeps the first N. Deterministic: the
    same files and tokenizer always give the same tensor. Raises InputError when the
    text is too short for a single block.
    """
    if block_size < 2:
        raise InputError(f"block_size must be at least 2, got {block_size}")
    ids = token_ids(text_paths, tokenizer)
    n = len(ids) // block_size
    if max_blocks is not None:
        n = min(n, int(max_blocks))
    if n < 1:
        names = ", ".join(str(p) for p in text_paths)
        raise InputError(f"{names}: {len(ids)} tokens, fewer than one block of {block_size}")
    return torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size)


def corpus_files(
    corpus: Path, languages: Sequence[str], split: str, key: str = "corpus.languages"
) -> list[Path]:
    """``corpus/<lang>/<split>.txt`` of each language; every missing one named in one InputError.

    ``key`` is the config key that chose the languages, so the error points at it.
    """
    files = [Path(corpus) / lang / f"{split}.txt" for lang in languages]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(
            f"{key}: corpus file(s) missing: {', '.join(missing)} (is every language in corpus.languages?)"
        )
    return files
