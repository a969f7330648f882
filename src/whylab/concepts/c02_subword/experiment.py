"""C02's measurements: every trained tokenizer encodes every held-out word type, per language.

Measuring only: per (tokenizer, language) the pieces of the validation split's word types banded
by their training-split count, the compression and unknown-token rates on the validation text
(against a word-level vocabulary of the same size), and the configured example words as pieces.
Which bands are usable, the trend and the verdict are in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whylab.concepts.context import ConceptContext
from whylab.concepts.tokenizer_suite import TrainedTokenizer, read_split, trained_tokenizers

PUNCT = "\"'()[]{}<>.,;:!?`“”‘’«»·…-—=*#/\\|"
BELOW_THE_BANDS = "below the bands"


def words(text: str) -> list[str]:
    out = []
    for raw in text.split():
        w = raw.strip(PUNCT)
        if w:
            out.append(w)
    return out


def band_labels(edges: Sequence[int]) -> list[str]:
    labels = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        labels.append(f"{lo}+" if hi is None else (f"{lo}" if hi == lo + 1 else f"{lo}–{hi - 1}"))
    return labels


def band_of(count: int, edges: Sequence[int]) -> int:
    band = -1
    for i, lo in enumerate(edges):
        if count >= lo:
            band = i
    return band


def pieces(tt: TrainedTokenizer, word: str) -> list[int]:
    """The token ids of ``word`` as it appears inside running text (after a space)."""
    text = " " + word if tt.algorithm == "bpe" else word
    return tt.tokenizer.encode(text, add_special_tokens=False).ids


@dataclass(frozen=True)
class Bands:
    """The frequency bands: their lower edges (training-split counts) and labels."""

    edges: list[int]

    @property
    def labels(self) -> list[str]:
        return band_labels(self.edges)

    def label_of(self, count: int) -> str:
        band = band_of(count, self.edges)
        return self.labels[band] if band >= 0 else BELOW_THE_BANDS


@dataclass(frozen=True)
class Corpus:
    """Per language: word counts of the training and validation splits, and the validation text."""

    train_counts: dict[str, Counter[str]]
    valid_counts: dict[str, Counter[str]]
    valid_text: dict[str, list[str]]

    @classmethod
    def read(cls, root: Path, languages: list[str]) -> Corpus:
        def counts(split: str) -> dict[str, Counter[str]]:
            return {
                lang: Counter(w for line in read_split(root, lang, split) for w in words(line))
                for lang in languages
            }

        return cls(
            counts("train"), counts("valid"), {lang: read_split(root, lang, "valid") for lang in languages}
        )


def _identity(tt: TrainedTokenizer, lang: str) -> dict[str, Any]:
    return {
        "tokenizer": tt.name,
        "scope": tt.scope,
        "algorithm": tt.algorithm,
        "vocab_size": tt.vocab_size,
        "language": lang,
    }


def band_rows(tt: TrainedTokenizer, lang: str, corpus: Corpus, bands: Bands) -> list[dict[str, Any]]:
    """Per band (in band order): how many held-out word types fall in it, their mean number of
    pieces and the share kept whole (None for an empty band)."""
    counts = corpus.train_counts[lang]
    per_band: dict[int, list[int]] = {i: [] for i in range(len(bands.edges))}
    for word in corpus.valid_counts[lang]:
        band = band_of(counts.get(word, 0), bands.edges)
        if band >= 0:
            per_band[band].append(len(pieces(tt, word)))
    labels = bands.labels
    return [
        {
            **_identity(tt, lang),
            "band": labels[i],
            "band_index": i,
            "words": len(n_pieces),
            "pieces_per_word": sum(n_pieces) / len(n_pieces) if n_pieces else None,
            "share_whole": sum(n == 1 for n in n_pieces) / len(n_pieces) if n_pieces else None,
        }
        for i, n_pieces in per_band.items()
    ]


def config_row(tt: TrainedTokenizer, lang: str, corpus: Corpus, trained_types: int) -> dict[str, Any]:
    """Compression and unknown tokens of one tokenizer on one language's validation text."""
    unk = tt.tokenizer.token_to_id("<unk>")
    texts = corpus.valid_text[lang]
    enc = tt.tokenizer.encode_batch(texts, add_special_tokens=False)
    n_tokens = sum(len(e.ids) for e in enc)
    word_vocab = {w for w, _ in corpus.train_counts[lang].most_common(tt.vocab_size)}
    vw = list(corpus.valid_counts[lang].elements())
    return {
        **_identity(tt, lang),
        "trained_word_types": trained_types,
        "vocab_covers_word_types": tt.vocab_size >= trained_types,
        "chars_per_token": sum(len(t) for t in texts) / n_tokens,
        "subword_unk_rate": (sum(i == unk for e in enc for i in e.ids) / n_tokens)
        if unk is not None
        else 0.0,
        "word_level_oov_rate": sum(w not in word_vocab for w in vw) / len(vw),
    }


def example_rows(
    tt: TrainedTokenizer, lang: str, corpus: Corpus, bands: Bands, example_words: list[str]
) -> list[dict[str, Any]]:
    """The configured example words of a language as this tokenizer splits them."""
    out = []
    for word in example_words:
        ids = pieces(tt, word)
        count = corpus.train_counts[lang].get(word, 0)
        out.append(
            {
                "tokenizer": tt.name,
                "language": lang,
                "word": word,
                "train_count": count,
                "band": bands.label_of(count),
                "pieces": " | ".join(tt.display_pieces(ids)),
                "n_pieces": len(ids),
            }
        )
    return out


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """Rows per (tokenizer, language, band), per (tokenizer, language), and per example word."""
    s = ctx.settings
    languages: list[str] = s["languages"]
    bands = Bands(sorted(s["frequency_bands"]))
    corpus = Corpus.read(ctx.inputs["corpus"], languages)
    out: dict[str, list[dict[str, Any]]] = {"bands": [], "configs": [], "examples": []}
    for tt in trained_tokenizers(s, ctx.inputs["tokenizers"]):
        # word types in the text this tokenizer was trained on (every language for a joint one)
        trained_types = len(set().union(*(corpus.train_counts[lang] for lang in tt.languages(languages))))
        for lang in tt.languages(languages):
            out["bands"] += band_rows(tt, lang, corpus, bands)
            out["configs"].append(config_row(tt, lang, corpus, trained_types))
            out["examples"] += example_rows(tt, lang, corpus, bands, s["example_words"].get(lang, []))
    return out
