"""Builders for the C14/C16 tests: tiny Llama models and an en+ko corpus tree like the DAG writes.

``tiny_llama`` is a random ``LlamaForCausalLM`` (optionally with grouped-query attention and
a few LLM-like outlier channels); ``build_tree`` saves one with its tokenizer under
``model/`` next to ``corpus/{en,ko}/{train,valid}.txt``, the layout the concept rules read.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lm_helpers import write_corpus, write_tokenizer

TINY = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_size": 96,
    "max_position_embeddings": 64,
}


def tiny_llama(vocab: int = 128, kv_heads: int = 4, outliers: bool = True, seed: int = 0) -> LlamaForCausalLM:
    """A random Llama; ``outliers`` makes two hidden channels large at every RMSNorm output."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    if outliers:
        with torch.no_grad():
            for layer in model.model.layers:
                layer.input_layernorm.weight[[5, 40]] = 25.0
                layer.post_attention_layernorm.weight[[5, 40]] = 15.0
    return model


def korean_text() -> str:
    """The Constitution of Korea shipped with konlpy, one paragraph per line."""
    import konlpy

    path = Path(konlpy.__file__).parent / "data" / "corpus" / "kolaw" / "constitution.txt"
    lines = [" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines()]
    return "".join(line + "\n" for line in lines if len(line) >= 10)


def build_tree(root: Path, seed: int = 0) -> dict[str, Path]:
    """corpus/{en,ko}/{train,valid}.txt and model/ (tiny random Llama + joint tokenizer)."""
    from whylab.lm.data import load_tokenizer
    from whylab.lm.model import build_model

    en = write_corpus(root / "corpus" / "en", chars=12_000)
    ko_text = korean_text()
    cut = int(len(ko_text) * 0.8)
    ko_dir = root / "corpus" / "ko"
    ko_dir.mkdir(parents=True, exist_ok=True)
    (ko_dir / "train.txt").write_text(ko_text[:cut], encoding="utf-8")
    (ko_dir / "valid.txt").write_text(ko_text[cut:], encoding="utf-8")
    joint = root / "joint.txt"
    joint.write_text(en["train"].read_text(encoding="utf-8") + ko_text[:cut], encoding="utf-8")
    tok = load_tokenizer(write_tokenizer(root / "tok", joint, vocab_size=400))
    torch.manual_seed(seed)
    model = build_model(
        TINY,
        len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return {"root": root, "model": root / "model", "corpus": root / "corpus"}
