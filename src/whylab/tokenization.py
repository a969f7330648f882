"""Subword tokenizers: byte-level BPE, WordPiece and Unigram, trained with Hugging Face tokenizers.

Each tokenizer is saved as ``<root>/<algorithm>-<vocab>/tokenizer.json`` and
as ``<root>/<algorithm>-<vocab>/hf/``, a folder that
``transformers.AutoTokenizer.from_pretrained`` loads (with
``model_input_names = [input_ids, attention_mask]``, so ``generate()`` works).
"""

from __future__ import annotations

import json
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


# Supplementary Private Use Area-A: stand-ins for WordPiece's "##"-continued characters
_PUA_START, _PUA_END = 0xF0000, 0x10FFFD
# Hugging Face's Unigram trainer gives each required character its model lacks the lowest
# score plus this step, one step more per character, in hash-map order (trainer.rs, finalize)
_UNIGRAM_PENALTY_STEP = 1e-4
# Unigram scores are kept to this many decimals: the trainer's E-step sums over words in
# hash-map order, so the last digits (about 4e-11 here) differ from process to process
_UNIGRAM_SCORE_DECIMALS = 4


def _words(tok: Tokenizer, train_files: Sequence[Path]) -> Iterator[list[str]]:
    """Each line's words as the trainer sees them: normalised, then pre-tokenized."""
    normalizer, pre = tok.normalizer, tok.pre_tokenizer
    assert normalizer is not None and pre is not None
    for line in _lines(train_files):
        yield [word for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(line))]


def _train_wordpiece(vocab_size: int, train_files: Sequence[Path]) -> Tokenizer:
    """Hugging Face's WordPiece trainer (BPE merges with a ``##`` prefix), made deterministic.

    The trainer numbers the ``##x`` tokens in hash-map order and breaks ties between equally
    frequent pairs by those numbers, so two runs can merge differently (huggingface/tokenizers
    issue 1794). Here every continued character ``x`` is written as one private-use character
    that sorts above the text's own, and the same trainer runs without a prefix: the ``##x``
    tokens are then numbered in character order, so ties always break the same way, and each
    merge is the one Hugging Face's trainer makes under that numbering. The vocabulary is
    mapped back (private-use characters to ``##`` + character) into a WordPiece model.
    """
    tok, _ = new_tokenizer("wordpiece", vocab_size)
    lines = list(_words(tok, train_files))
    chars = sorted({ch for words in lines for word in words for ch in word})
    continued = sorted({ch for words in lines for word in words for ch in word[1:]})
    used = set(chars)
    stand_in: dict[str, str] = {}
    code = _PUA_START
    for ch in continued:
        while chr(code) in used:
            code += 1
        if code > _PUA_END:
            raise InputError("tokenizers: the training text uses too many private-use characters")
        stand_in[ch] = chr(code)
        code += 1
    original = {v: k for k, v in stand_in.items()}

    def encoded() -> Iterator[str]:
        for words in lines:
            yield " ".join(w[0] + "".join(stand_in[c] for c in w[1:]) for w in words if w)

    plain = Tokenizer(models.BPE(unk_token=None, fuse_unk=False))
    plain.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=chars,  # as Hugging Face's: every character, continued or not
    )
    plain.train_from_iterator(encoded(), trainer=trainer)

    def decode(token: str) -> str:
        if token in SPECIAL_TOKENS:
            return token
        text = "".join(original.get(c, c) for c in token)
        return "##" + text if token[0] in original else text

    vocab = {decode(token): i for token, i in plain.get_vocab().items()}
    tok.model = models.WordPiece(vocab=vocab, unk_token=UNK, max_input_chars_per_word=100)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def canonical_unigram(tok: Tokenizer) -> Tokenizer:
    """The same Unigram model, written the same way whatever the trainer's hash-map order was.

    - The required characters the trained model lacked get the lowest score plus 1e-4 steps in
      hash-map order, indistinguishable from trained characters at the lowest score: all of
      them get the lowest score.
    - Scores are rounded to ``_UNIGRAM_SCORE_DECIMALS`` decimals (the E-step's summation order
      changes their last digits), and pieces are listed by score, then by text.
    """
    data = json.loads(tok.to_str())
    model = data["model"]
    n_special = len(SPECIAL_TOKENS)
    specials = model["vocab"][:n_special]
    pieces: list[tuple[str, float]] = [(p, float(s)) for p, s in model["vocab"][n_special:]]
    low = min(s for _, s in pieces)
    steps: dict[int, list[str]] = {}
    for piece, score in pieces:
        if len(piece) == 1:
            k = round((score - low) / _UNIGRAM_PENALTY_STEP)
            if k >= 0 and abs(score - (low + k * _UNIGRAM_PENALTY_STEP)) < 1e-9:
                steps.setdefault(k, []).append(piece)
    top = 0
    while top + 1 in steps:
        top += 1
    lowest = {p for k in range(top + 1) for p in steps.get(k, [])}
    canon = [(p, round(low if p in lowest else s, _UNIGRAM_SCORE_DECIMALS)) for p, s in pieces]
    canon.sort(key=lambda item: (-item[1], item[0]))
    model["vocab"] = [*specials, *[[p, s] for p, s in canon]]
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


def train(algorithm: str, vocab_size: int, train_files: Sequence[Path]) -> Tokenizer:
    """Train one tokenizer; the same text gives the same tokenizer in every process.

    Byte-level BPE is deterministic as Hugging Face trains it; WordPiece and Unigram are not
    (hash-map order), see ``_train_wordpiece`` and ``canonical_unigram``.
    """
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
    if algorithm == "wordpiece":
        return _train_wordpiece(vocab_size, train_files)
    tok, trainer = new_tokenizer(algorithm, vocab_size)
    tok.train_from_iterator(_lines(train_files), trainer=trainer)
    return canonical_unigram(tok) if algorithm == "unigram" else tok


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
