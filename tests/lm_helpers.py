"""Shared builders for the LM tests: a tiny corpus, a tiny byte-level BPE tokenizer, a tiny model.

Real text (Python's own documentation, shipped with the standard library) so that
training actually lowers the loss; everything small enough for one CPU core.
"""

from __future__ import annotations

from pathlib import Path

TINY_MODEL = {
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def write_corpus(root: Path, chars: int = 40_000) -> dict[str, Path]:
    """train.txt / valid.txt from pydoc_data, one paragraph per line like the corpus step writes."""
    import re
    from pydoc_data.topics import topics

    raw = "\n\n".join(topics[k] for k in sorted(topics))
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", raw)]
    text = "".join(p + "\n" for p in paragraphs if len(p) >= 20)
    train, valid = text[:chars], text[chars : chars + chars // 4]
    root.mkdir(parents=True, exist_ok=True)
    paths = {"train": root / "train.txt", "valid": root / "valid.txt"}
    paths["train"].write_text(train, encoding="utf-8")
    paths["valid"].write_text(valid, encoding="utf-8")
    return paths


SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]  # as whylab.tokenization trains them


def write_tokenizer(
    folder: Path, train_file: Path, vocab_size: int = 300, special_tokens: list[str] | None = None
) -> Path:
    """A byte-level BPE trained on ``train_file``, saved as tokenizer.json plus an hf/ folder.

    The layout and special tokens follow the tokenizers rule's output
    (``<algorithm>-<vocab>/tokenizer.json`` and ``hf/``).
    """
    specials = SPECIAL_TOKENS if special_tokens is None else special_tokens
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(train_file)], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    named = dict(zip(["pad_token", "unk_token", "bos_token", "eos_token"], specials, strict=False))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, **named, model_input_names=["input_ids", "attention_mask"]
    )
    fast.save_pretrained(str(folder / "hf"))
    return folder / "hf"
