"""Subword tokenizers: byte-level BPE, WordPiece and Unigram, trained with Hugging Face tokenizers.

Each tokenizer is saved as ``<root>/<algorithm>-<vocab>/tokenizer.json`` and
as ``<root>/<algorithm>-<vocab>/hf/``, a folder that
``transformers.AutoTokenizer.from_pretrained`` loads (with
``model_input_names = [input_ids, attention_mask]``, so ``generate()`` works).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from whylab.errors import InputError
from whylab.files import atomic_path

ALGORITHMS = ("bpe", "wordpiece", "unigram")
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]


def new_tokenizer(algorithm: str, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer and its trainer. All three share the NFC normaliser.

    - bpe: byte-level (GPT-2 style): every string is representable, no unknown token.
    - wordpiece: BERT style, split at whitespace and punctuation, ``##`` continuations.
    - unigram: SentencePiece style, ``▁`` marks a word start.
    """
    if algorithm == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer: trainers.Trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    elif algorithm == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=100))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
    elif algorithm == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            unk_token=UNK,
            show_progress=False,
            max_piece_length=16,
        )
    else:
        raise InputError(f"tokenizers.algorithms: unknown algorithm {algorithm!r}")
    tok.normalizer = normalizers.NFC()
    return tok, trainer


def _lines(paths: Sequence[Path]) -> Iterator[str]:
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield line.rstrip("\n")


def train(algorithm: str, vocab_size: int, train_files: Sequence[Path]) -> Tokenizer:
    if algorithm == "unigram":
        # Unigram must hold every character of the training text as a piece of its own.
        n_chars = len({ch for line in _lines(train_files) for ch in line if not ch.isspace()})
        needed = n_chars + len(SPECIAL_TOKENS) + 1  # + the word-start marker
        if vocab_size < needed:
            names = ", ".join(str(p) for p in train_files)
            raise InputError(
                f"tokenizers.vocab_sizes: {vocab_size} is too small for unigram on {names}: the text has "
                f"{n_chars} distinct characters, so unigram needs at least {needed}"
            )
    tok, trainer = new_tokenizer(algorithm, vocab_size)
    tok.train_from_iterator(_lines(train_files), trainer=trainer)
    return tok


def save(tok: Tokenizer, folder: Path, algorithm: str) -> None:
    """Write ``tokenizer.json`` and the ``hf/`` folder for AutoTokenizer, atomically."""
    from transformers import PreTrainedTokenizerFast

    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        tok.save(str(tmp / "tokenizer.json"))
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token=PAD,
            unk_token=UNK,
            bos_token=BOS,
            eos_token=EOS,
            model_input_names=["input_ids", "attention_mask"],
            clean_up_tokenization_spaces=False,
        )
        fast.init_kwargs["whylab_algorithm"] = algorithm
        fast.save_pretrained(str(tmp / "hf"))


def load(path: Path) -> Tokenizer:
    """Load a ``tokenizer.json`` (or a tokenizer folder holding one)."""
    path = Path(path)
    return Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    train_files = [p for name, p in sorted(inputs.items()) if name.startswith("train")]
    if not train_files:
        raise InputError("tokenizers: no training text given (--input train_*=path)")
    root = outputs["root"]
    for algorithm in settings["algorithms"]:
        for vocab_size in settings["vocab_sizes"]:
            tok = train(algorithm, int(vocab_size), train_files)
            save(tok, root / f"{algorithm}-{vocab_size}", algorithm)
