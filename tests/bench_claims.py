"""Shared by tests/test_c03.py … test_c08.py and test_bench_baseline.py: tiny settings and a runner
for the bench-model claims, and the paired-comparison entry a real run writes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from whylab.concepts._bench_stats import paired

TINY: dict[str, Any] = {
    "device": "cpu",
    "seeds": [0, 1],
    "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 64},
    "train": {"steps": 8, "batch_size": 4, "seq_len": 16, "eval_every": 4, "eval_windows": 4},
    "tokenizer": {"scope": "joint", "algorithm": "bpe", "vocab_size": 800},
}


def lm_inputs_of(tiny_corpus: Path, tiny_tokenizers: Path) -> dict[str, Path]:
    inputs = {"tokenizer": tiny_tokenizers / "joint" / "bpe-800" / "tokenizer.json"}
    for lang in ("en", "ko"):
        for split in ("train", "valid"):
            inputs[f"{split}_{lang}"] = tiny_corpus / lang / f"{split}.txt"
    return inputs


def schema_section(claim: str) -> dict[str, Any]:
    """The claim's mechanisms section with every schema default filled in."""
    from whylab.config import check_config

    return copy.deepcopy(check_config({})["mechanisms"][claim])


def run_claim(
    claim: str, section: dict[str, Any], inputs: dict[str, Path], out: Path, **over: Any
) -> dict[str, Any]:
    from whylab.concepts import run_concept

    settings = {**copy.deepcopy(TINY), **schema_section(claim), **section, "seeds": TINY["seeds"], **over}
    return run_concept(claim, settings, inputs, out / claim / "result.json", threads=1)


def comparison(a: list[float], b: list[float], floor: float) -> dict[str, Any]:
    """What a run stores for a paired comparison of per-seed values a − b."""
    return paired(a, b, floor)


def spread(values: list[float]) -> dict[str, Any]:
    from whylab.concepts._bench_stats import summary

    return summary(values)
