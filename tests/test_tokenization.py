"""Tokenizers: each algorithm trains, round-trips where it should, and loads with AutoTokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from whylab import tokenization
from whylab.errors import InputError


@pytest.mark.parametrize("algorithm", ["bpe", "wordpiece", "unigram"])
def test_trained_tokenizer_saves_both_formats(tiny_tokenizers: Path, algorithm: str) -> None:
    from transformers import AutoTokenizer

    folder = tiny_tokenizers / "joint" / f"{algorithm}-800"
    tok = tokenization.load(folder / "tokenizer.json")
    if algorithm == "wordpiece":
        # WordPiece keeps every character of the training text, even past the requested size
        assert tok.get_vocab_size() >= 800
    else:
        assert 0 < tok.get_vocab_size() <= 800
    hf = AutoTokenizer.from_pretrained(str(folder / "hf"))
    text = "우리 가족은 the interpreter"
    assert hf(text)["input_ids"] == tok.encode(text).ids
    assert set(hf(text)) == {"input_ids", "attention_mask"}  # no token_type_ids: generate() works
    assert hf.pad_token == "<pad>" and hf.eos_token == "</s>"


def test_byte_level_bpe_round_trips_exactly(tiny_tokenizers: Path) -> None:
    tok = tokenization.load(tiny_tokenizers / "joint" / "bpe-800")
    for text in ["내일 점심에 팀장님이랑 밥 약속이 있어.", "def f(x):  return x ** 2  # ünïcödé", "🙂 emoji"]:
        assert tok.decode(tok.encode(text).ids) == text


def test_unigram_vocab_too_small_is_a_clear_error(tiny_corpus: Path) -> None:
    with pytest.raises(InputError, match="too small for unigram"):
        tokenization.train("unigram", 300, [tiny_corpus / "ko" / "train.txt"])


def test_training_is_deterministic(tiny_corpus: Path) -> None:
    files = [tiny_corpus / "en" / "train.txt"]
    a = tokenization.train("bpe", 500, files).to_str()
    b = tokenization.train("bpe", 500, files).to_str()
    assert a == b
