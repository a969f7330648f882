"""C01's measurements: every trained tokenizer encodes and decodes every validation paragraph.

Measuring only: the rows (one per tokenizer and language) with the round-trip shares, the
counted causes of each failed round trip and the tokenizer's pipeline, and the notes' sample
sentence as tokens and ids. Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from whylab.concepts.context import ConceptContext
from whylab.concepts.tokenizer_suite import read_split, trained_tokenizers


def _squash(text: str) -> str:
    return "".join(text.split())


def pipeline(tokenizer: Any) -> dict[str, Any]:
    """The parts of a tokenizer that decide whether its ids can give the text back."""
    spec = json.loads(tokenizer.to_str())

    def kind(part: Any) -> str:
        return str(part.get("type")) if isinstance(part, dict) else "none"

    model = spec.get("model", {})
    return {
        "normalizer": kind(spec.get("normalizer")),
        "pre_tokenizer": kind(spec.get("pre_tokenizer")),
        "decoder": kind(spec.get("decoder")),
        "byte_fallback": bool(model.get("byte_fallback", False)),
        "has_unknown_token": model.get("unk_token") is not None or model.get("unk_id") is not None,
    }


def loss_causes(
    texts: list[str], decoded: list[str], ids: list[list[int]], unk_id: int | None
) -> dict[str, int]:
    """Why each paragraph that does not come back exactly differs: an unknown token, only whitespace,
    only the Unicode normal form (NFC), or something else."""
    out = {"failed": 0, "unknown_token": 0, "whitespace_only": 0, "normal_form_only": 0, "other": 0}
    for text, back, pieces in zip(texts, decoded, ids, strict=True):
        if back == text:
            continue
        out["failed"] += 1
        if unk_id is not None and unk_id in pieces:
            out["unknown_token"] += 1
        elif back == unicodedata.normalize("NFC", text):
            out["normal_form_only"] += 1
        elif _squash(back) == _squash(unicodedata.normalize("NFC", text)):
            out["whitespace_only"] += 1
        else:
            out["other"] += 1
    return out


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """One row per (tokenizer, language) and the sample sentences at the largest vocabulary."""
    languages: list[str] = ctx.settings["languages"]
    corpus_root = ctx.inputs["corpus"]
    valid = {lang: read_split(corpus_root, lang, "valid") for lang in languages}
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for tt in trained_tokenizers(ctx.settings, ctx.inputs["tokenizers"]):
        vocab = tt.tokenizer.get_vocab_size()
        unk_id = tt.tokenizer.token_to_id("<unk>")
        pipe = pipeline(tt.tokenizer)
        for lang in tt.languages(languages):
            texts = valid[lang]
            encodings = tt.tokenizer.encode_batch(texts)
            decoded = tt.tokenizer.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
            ids = [i for e in encodings for i in e.ids]
            rows.append(
                {
                    "tokenizer": tt.name,
                    "scope": tt.scope,
                    "algorithm": tt.algorithm,
                    "vocab_size": tt.vocab_size,
                    "actual_vocab": vocab,
                    "language": lang,
                    "paragraphs": len(texts),
                    "exact_round_trip": sum(d == t for d, t in zip(decoded, texts, strict=True)) / len(texts),
                    "round_trip_ignoring_spaces": sum(
                        _squash(d) == _squash(t) for d, t in zip(decoded, texts, strict=True)
                    )
                    / len(texts),
                    "ids_in_range": all(isinstance(i, int) and 0 <= i < vocab for i in ids),
                    "unk_rate": (sum(i == unk_id for i in ids) / len(ids)) if unk_id is not None else 0.0,
                    "tokens": len(ids),
                    **{
                        f"failed_{k}" if k != "failed" else "failed": v
                        for k, v in loss_causes(texts, decoded, [e.ids for e in encodings], unk_id).items()
                    },
                    **pipe,
                }
            )
        sentences: dict[str, str] = ctx.settings.get("sample_sentences", {})
        if tt.vocab_size == max(ctx.settings["tokenizers"]["vocab_sizes"]):
            for lang in tt.languages(languages):
                if lang in sentences:
                    enc = tt.tokenizer.encode(sentences[lang])
                    samples.append(
                        {
                            "tokenizer": tt.name,
                            "language": lang,
                            "text": sentences[lang],
                            "tokens": " | ".join(tt.display_pieces(enc.ids)),
                            "ids": " ".join(map(str, enc.ids)),
                            "decoded": tt.tokenizer.decode(enc.ids),
                        }
                    )

    return {"rows": rows, "samples": samples}
