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
# a figure text with no Korean entry (messages/ko/drawn/) is recorded, not raised, so the tests'
# stand-in claims may draw texts of their own; test_e2e checks the real claims have every entry

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


@pytest.fixture(scope="session")
def test_dag_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG on config/test.yaml, uninterrupted, in a fresh folder: run once per session.

    tests/test_e2e.py checks its report; tests/test_resume.py compares a killed-and-resumed run with it.
    WHYLAB_TEST_DAG=FOLDER reuses a finished run of config/test.yaml of this code instead (a
    workflow copy with its results/ and reports/), to save minutes while developing.
    """
    import subprocess
    import sys

    from workflow_copy import workflow_copy

    reuse = os.environ.get("WHYLAB_TEST_DAG")
    if reuse:
        assert (Path(reuse) / "reports" / "index.html").is_file(), f"WHYLAB_TEST_DAG={reuse}: no report there"
        return Path(reuse)
    work = workflow_copy(tmp_path_factory.mktemp("dag"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/test.yaml"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work
