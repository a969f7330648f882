"""What C01 and C02 share: finding the trained tokenizers and the corpus splits on disk."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from whylab import tokenization


@dataclass(frozen=True)
class TrainedTokenizer:
    scope: str  # a language code, or "joint"
    algorithm: str
    vocab_size: int  # as configured
    tokenizer: Tokenizer

    @property
    def name(self) -> str:
        return f"{self.scope}/{self.algorithm}-{self.vocab_size}"

    def display_pieces(self, ids: list[int]) -> list[str]:
        """Pieces a reader can read: byte-level BPE pieces are shown decoded (a piece that is
        only part of a character's UTF-8 bytes shows as �); the others as the model sees them."""
        if self.algorithm == "bpe":
            return [self.tokenizer.decode([i]) for i in ids]
        return [self.tokenizer.id_to_token(i) for i in ids]

    def languages(self, all_languages: list[str]) -> list[str]:
        """The languages this tokenizer is evaluated on: its own, or all for a joint one."""
        return list(all_languages) if self.scope == "joint" else [self.scope]


def trained_tokenizers(settings: Mapping[str, Any], root: Path) -> Iterator[TrainedTokenizer]:
    for scope in settings["tokenizer_scopes"]:
        for algorithm in settings["tokenizers"]["algorithms"]:
            for vocab in settings["tokenizers"]["vocab_sizes"]:
                path = root / scope / f"{algorithm}-{vocab}" / "tokenizer.json"
                yield TrainedTokenizer(scope, algorithm, int(vocab), tokenization.load(path))


def read_split(corpus_root: Path, lang: str, split: str) -> list[str]:
    text = (corpus_root / lang / f"{split}.txt").read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line]
