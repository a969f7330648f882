"""The settings of the tokenization claims (C01, C02) on the tiny corpus's joint tokenizers."""

from __future__ import annotations

from typing import Any

from whylab.config import check_config


def tokenization_settings(claim: str) -> dict[str, Any]:
    """The claim's default settings as its rule passes them, for joint tokenizers at vocab 800."""
    config = check_config({"tokenizers": {"vocab_sizes": [800]}})
    return {
        **config["concepts"][claim],
        "seeds": [0],
        "device": "cpu",
        "tokenizers": config["tokenizers"],
        "tokenizer_scopes": ["joint"],
        "languages": ["en", "ko"],
    }
