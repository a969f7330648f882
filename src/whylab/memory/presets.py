"""Model presets for the memory planner: plain ``config.json`` dicts, as the hub ships them.

Only the keys that matter for memory are listed; every other key takes the
transformers default of that ``model_type`` (see :data:`whylab.memory.planner.DEFAULTS`).
Nothing is downloaded: these are the published shapes, typed from each model's
``config.json`` / paper.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # google-bert/bert-base-uncased config.json (= BertConfig defaults)
    "bert-base-uncased": {
        "model_type": "bert",
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "vocab_size": 30522,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    },
    # openai-community/gpt2
    "gpt2": {
        "model_type": "gpt2",
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_positions": 1024,
        "vocab_size": 50257,
    },
    # openai-community/gpt2-xl
    "gpt2-xl": {
        "model_type": "gpt2",
        "n_embd": 1600,
        "n_layer": 48,
        "n_head": 25,
        "n_positions": 1024,
        "vocab_size": 50257,
    },
    # GPT-3 175B's shape (Brown et al. 2020, Table 2.1) in GPT-2's block, GPT-2's vocabulary, context 2048
    "gpt3-175b": {
        "model_type": "gpt2",
        "n_embd": 12288,
        "n_layer": 96,
        "n_head": 96,
        "n_positions": 2048,
        "vocab_size": 50257,
    },
    # meta-llama/Llama-2-7b-hf
    "llama-2-7b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    },
    # meta-llama/Llama-2-13b-hf
    "llama-2-13b": {
        "model_type": "llama",
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    },
    # meta-llama/Meta-Llama-3-8B: grouped-query attention, 8 KV heads
    "llama-3-8b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
    },
}

# The counts the literature quotes for the presets (parameters), for the report's comparison.
QUOTED_PARAMS: dict[str, float] = {
    "bert-base-uncased": 110e6,
    "gpt2": 124e6,
    "gpt2-xl": 1.5e9,
    "gpt3-175b": 175e9,
    "llama-2-7b": 7e9,
    "llama-2-13b": 13e9,
    "llama-3-8b": 8e9,
}
