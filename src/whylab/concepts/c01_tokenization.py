"""C01 — tokenization turns text into numbers (and, the test adds, back again).

Every trained tokenizer encodes each validation paragraph to ids and decodes
the ids back. We count how often the text comes back exactly, how often it
comes back up to whitespace, and check that every id is an integer inside the
vocabulary. The notes' own sample sentence is shown as tokens and ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.concepts.tokenizer_suite import read_split, trained_tokenizers
from whylab.results import Evidence, Table
from whylab.verdict import Label, Verdict

CLAIM_ID = "C01"
LOSSLESS = 1.0  # exact round trip on every validation paragraph


def _squash(text: str) -> str:
    return "".join(text.split())


def run(ctx: ConceptContext) -> Evidence:
    languages: list[str] = ctx.settings["languages"]
    corpus_root = ctx.inputs["corpus"]
    valid = {lang: read_split(corpus_root, lang, "valid") for lang in languages}
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for tt in trained_tokenizers(ctx.settings, ctx.inputs["tokenizers"]):
        vocab = tt.tokenizer.get_vocab_size()
        unk_id = tt.tokenizer.token_to_id("<unk>")
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
        algo: {
            "min_exact_round_trip": float(g["exact_round_trip"].min()),
            "min_round_trip_ignoring_spaces": float(g["round_trip_ignoring_spaces"].min()),
            "max_unk_rate": float(g["unk_rate"].max()),
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


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    by_algo: Mapping[str, Mapping[str, float]] = metrics["by_algorithm"]
    if not metrics["all_ids_in_range"]:
        return Verdict(Label.NOT_SUPPORTED, "Some tokenizer produced ids outside its vocabulary.")
    lossless = sorted(a for a, m in by_algo.items() if m["min_exact_round_trip"] >= LOSSLESS)
    lossy = {a: m for a, m in by_algo.items() if a not in lossless}
    lossy_text = "; ".join(
        f"{a}: exact {m['min_exact_round_trip']:.0%}, up to spaces {m['min_round_trip_ignoring_spaces']:.0%}, "
        f"unknown tokens up to {m['max_unk_rate']:.2%}"
        for a, m in sorted(lossy.items())
    )
    if lossless and not lossy:
        return Verdict(
            Label.SUPPORTED,
            f"All {metrics['tokenizers']} tokenizers map text to in-vocabulary "
            f"ids and back exactly, on every validation paragraph.",
        )
    if lossless:
        return Verdict(
            Label.SUPPORTED,
            (
                f"Every tokenizer maps text to in-vocabulary integer ids, and {' and '.join(lossless)} "
                f"{'gets' if len(lossless) == 1 else 'get'} every "
                f"validation paragraph back exactly; the numbers are not always reversible, though ({lossy_text}, "
                f"worst case over vocab sizes and languages)."
            ),
        )
    best = max(by_algo.values(), key=lambda m: m["min_round_trip_ignoring_spaces"])
    if best["min_round_trip_ignoring_spaces"] >= 0.99:
        return Verdict(
            Label.PARTLY,
            (
                f"Text does become in-vocabulary ids, but no algorithm round-trips exactly ({lossy_text}); "
                f"only up to whitespace."
            ),
        )
    return Verdict(Label.NOT_SUPPORTED, f"Ids are valid but the text does not come back ({lossy_text}).")
