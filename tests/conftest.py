"""Shared fixtures: a tiny corpus and tokenizers, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# every figure a test (or the DAG a test runs) saves must pass the layout check: no legend over
# data, no overlapping labels (whylab.plotting); outside the tests a problem is only recorded
os.environ.setdefault("WHYLAB_STRICT_FIGURES", "1")

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default corpus, capped small: results/corpus layout under a temp root."""
    from whylab import corpus
    from whylab.config import check_config

    root = tmp_path_factory.mktemp("corpus")
    settings = check_config({"corpus": {"max_chars_per_language": 40000}})["corpus"]
    corpus.build(settings, root, REPO)
    return root


@pytest.fixture(scope="session")
def tiny_tokenizers(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Joint BPE/WordPiece/Unigram tokenizers at vocab 800 over the tiny corpus."""
    from whylab import tokenization

    root = tmp_path_factory.mktemp("tokenizers")
    tokenization.run_step(
        {"algorithms": ["bpe", "wordpiece", "unigram"], "vocab_sizes": [800]},
        {"train_en": tiny_corpus / "en" / "train.txt", "train_ko": tiny_corpus / "ko" / "train.txt"},
        {"root": root / "joint"},
        1,
    )
    return root
