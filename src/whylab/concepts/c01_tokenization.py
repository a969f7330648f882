"""C01 — tokenization turns text into numbers (and, the test adds, back again).

A definition check: what a tokenizer *does* is read off the library's own tokenizers (Hugging
Face ``tokenizers``, trained here). Every trained tokenizer encodes each validation paragraph to
ids and decodes the ids back. We check that every id is an integer inside the vocabulary, count how
often the text comes back exactly, and, where it does not, why: an unknown token replaced a
character, only the whitespace differs (the decoder rejoins pieces with single spaces), or only the
Unicode normal form differs. Byte-level BPE is lossless by construction (every byte has an id and
the spaces travel inside the pieces); the verdict says which algorithms are reversible and, from
the counted causes and their pre-tokenizer and decoder, why the others are not. The notes' own
sample sentence is shown as tokens and ids.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.concepts.tokenizer_suite import read_split, trained_tokenizers
from whylab.results import Evidence, Table
from whylab.verdict import Kind, Label, Verdict

CLAIM_ID = "C01"
LOSSLESS = 1.0  # exact round trip on every validation paragraph


def _squash(text: str) -> str:
    return "".join(text.split())


def pipeline(tokenizer: Any) -> dict[str, Any]:
    """The parts of a tokenizer that decide whether its ids can give the text back."""
    import json

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


def run(ctx: ConceptContext) -> Evidence:
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

    frame = pd.DataFrame(rows)
    by_algorithm = {
        str(algo): {
            "min_exact_round_trip": float(g["exact_round_trip"].min()),
            "min_round_trip_ignoring_spaces": float(g["round_trip_ignoring_spaces"].min()),
            "max_unk_rate": float(g["unk_rate"].max()),
            "paragraphs": int(g["paragraphs"].sum()),
            **{
                k: int(g[k].sum())
                for k in (
                    "failed",
                    "failed_unknown_token",
                    "failed_whitespace_only",
                    "failed_normal_form_only",
                    "failed_other",
                )
            },
            **{k: str(g[k].iloc[0]) for k in ("normalizer", "pre_tokenizer", "decoder")},
            "byte_fallback": bool(g["byte_fallback"].any()),
            "has_unknown_token": bool(g["has_unknown_token"].any()),
        }
        for algo, g in frame.groupby("algorithm")
    }
    metrics = {
        "tokenizers": int(frame["tokenizer"].nunique()),
        "all_ids_in_range": bool(frame["ids_in_range"].all()),
        "by_algorithm": by_algorithm,
        "rows": rows,
    }

    fig, ax = plt.subplots(figsize=(8, 4))
    long = frame.melt(
        id_vars=["algorithm", "language"],
        value_vars=["exact_round_trip", "round_trip_ignoring_spaces"],
        var_name="check",
        value_name="share",
    )
    sns.barplot(long, x="algorithm", y="share", hue="check", errorbar=("pi", 100), ax=ax)
    ax.set_xlabel("tokenization algorithm")
    ax.set_ylabel("share of validation paragraphs (fraction)")
    ax.set_ylim(0, 1.05)
    figure = plotting.save(
        fig,
        ctx.outdir,
        "round_trip",
        "Text → ids → text: how much comes back",
        "Share of validation paragraphs that decode back to exactly the input text, and to the "
        "input up to whitespace, per algorithm (bars: mean over vocab sizes, scopes and languages; "
        "whiskers: min to max).",
    )
    return Evidence(
        method=(
            "Each trained tokenizer (byte-level BPE, WordPiece, Unigram; every vocab size; per-language "
            "and joint) encodes every validation paragraph to integer ids and decodes them back. We count "
            "exact round trips, round trips up to whitespace, ids outside the vocabulary and unknown tokens."
        ),
        metrics=metrics,
        tables=[
            Table.from_records(
                "samples", "The sample sentences as tokens and ids (largest vocab size).", samples
            ),
            Table.from_records("round_trip", "Round trip per tokenizer and language.", rows),
        ],
        figures=[figure],
    )


PRIMARY = (
    "text → ids → text on every validation paragraph, for each trained tokenizer (BPE, WordPiece, "
    "Unigram × vocab sizes × scopes): every id an integer inside the vocabulary, and which algorithms "
    "give the text back exactly"
)
TAKEAWAY = (
    "A tokenizer cuts text into pieces and maps each piece to an integer id in its vocabulary; only "
    "some tokenizers (byte-level BPE here) can always turn the ids back into the exact text."
)


def why_reversible(m: Mapping[str, Any]) -> str:
    """Why an algorithm gave every paragraph back, from its pipeline."""
    if m["pre_tokenizer"] == "ByteLevel":
        return "byte-level: every byte has an id and spaces travel inside the pieces"
    if m["pre_tokenizer"] == "Metaspace":
        return "spaces are kept as ▁ inside the pieces and no character was unknown"
    return f"{m['pre_tokenizer']} pre-tokenizer and {m['decoder']} decoder lost nothing on this text"


def why_lossy(m: Mapping[str, Any]) -> str:
    """Why an algorithm did not give every paragraph back, from the counted causes and its pipeline."""
    causes = []
    if m.get("failed_unknown_token"):
        causes.append(
            f"characters outside its vocabulary became the unknown token ({m['failed_unknown_token']} "
            f"paragraphs; up to {m['max_unk_rate']:.2%} of tokens)"
            + ("" if not m.get("byte_fallback") else " despite byte fallback")
        )
    if m.get("failed_whitespace_only"):
        how = (
            "its pre-tokenizer drops the whitespace and its decoder rejoins the pieces with single spaces"
            if m["pre_tokenizer"] in ("BertPreTokenizer", "Whitespace", "WhitespaceSplit")
            else f"its {m['pre_tokenizer']} pre-tokenizer and {m['decoder']} decoder do not keep the spacing"
        )
        causes.append(f"{how} ({m['failed_whitespace_only']} paragraphs differ only in whitespace)")
    if m.get("failed_normal_form_only"):
        causes.append(
            f"its {m['normalizer']} normalizer rewrites characters ({m['failed_normal_form_only']} paragraphs "
            "differ only in Unicode normal form)"
        )
    if m.get("failed_other"):
        causes.append(f"{m['failed_other']} paragraphs differ otherwise")
    counted = f"{m.get('failed', '?')}/{m.get('paragraphs', '?')} paragraphs not exact"
    return f"{counted}: " + "; ".join(causes) if causes else counted


def _verdict(label: Label, reason: str, limited: tuple[str, ...] = (), correction: str = "") -> Verdict:
    """A verdict of this claim: its kind, primary comparison and takeaway filled in."""
    return Verdict(label, reason, Kind.DEFINITION, PRIMARY, limited, TAKEAWAY, correction)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    by_algo: Mapping[str, Mapping[str, Any]] = metrics["by_algorithm"]
    if not metrics["all_ids_in_range"]:
        return _verdict(
            Label.NOT_SUPPORTED,
            "Some tokenizer produced ids outside its vocabulary.",
        )
    lossless = sorted(a for a, m in by_algo.items() if m["min_exact_round_trip"] >= LOSSLESS)
    lossy = {a: m for a, m in sorted(by_algo.items()) if a not in lossless}
    reversible = "; ".join(f"{a} is reversible ({why_reversible(by_algo[a])})" for a in lossless)
    lossy_text = "; ".join(f"{a} is not ({why_lossy(m)})" for a, m in lossy.items())
    if lossless and not lossy:
        return _verdict(
            Label.SUPPORTED,
            f"All {metrics['tokenizers']} tokenizers map text to in-vocabulary integer ids and back exactly, "
            f"on every validation paragraph: {reversible}.",
        )
    if lossless:
        return _verdict(
            Label.SUPPORTED,
            f"Every tokenizer maps text to in-vocabulary integer ids. Back from the ids: {reversible}; "
            f"{lossy_text} (paragraphs summed over vocab sizes, scopes and languages; rates the worst case).",
        )
    best = max(by_algo.values(), key=lambda m: m["min_round_trip_ignoring_spaces"])
    if best["min_round_trip_ignoring_spaces"] >= 0.99:
        return _verdict(
            Label.PARTLY,
            f"Text does become in-vocabulary ids, but no algorithm round-trips exactly, only up to whitespace: "
            f"{lossy_text}.",
            correction="Tokenization turns text into integer ids, but these tokenizers lose the exact spacing.",
        )
    return _verdict(
        Label.NOT_SUPPORTED,
        f"Ids are valid but the text does not come back: {lossy_text}.",
        correction="These tokenizers turn text into ids that do not determine the text.",
    )
