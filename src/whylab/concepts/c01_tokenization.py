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
from whylab.messages import Msg, empty
from whylab.results import Evidence, Table
from whylab.verdict import Kind, Label, Verdict, VerdictOf

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
    figure = plotting.save_figure(fig, ctx.outdir, "C01.figure.round_trip")
    return Evidence(
        method=Msg("C01.method"),
        metrics=metrics,
        tables=[
            Table.from_records("samples", Msg("C01.table.samples.caption"), samples),
            Table.from_records("round_trip", Msg("C01.table.round_trip.caption"), rows),
        ],
        figures=[figure],
    )


PRIMARY = "C01.primary"
WHITESPACE_PRE_TOKENIZERS = ("BertPreTokenizer", "Whitespace", "WhitespaceSplit")
ALGORITHMS = ("bpe", "wordpiece", "unigram")  # with a display name in the catalogue (C01.algorithm.<id>)


def algorithm_name(algo: str) -> str:
    """An algorithm's display name in sentences ("byte-level BPE"); an unknown one as its id."""
    return Msg(f"C01.algorithm.{algo}") if algo in ALGORITHMS else algo


def why_reversible(m: Mapping[str, Any]) -> Msg:
    """Why an algorithm gave every paragraph back, from its pipeline."""
    if m["pre_tokenizer"] == "ByteLevel":
        return Msg("C01.reason.reversible.byte_level")
    if m["pre_tokenizer"] == "Metaspace":
        return Msg("C01.reason.reversible.metaspace")
    return Msg("C01.reason.reversible.other", pre=m["pre_tokenizer"], decoder=m["decoder"])


def why_lossy(m: Mapping[str, Any]) -> Msg:
    """Why an algorithm did not give every paragraph back, from the counted causes and its pipeline."""
    causes: list[Msg] = []
    if m.get("failed_unknown_token"):
        causes.append(
            Msg(
                "C01.reason.lossy.unknown_token",
                n=m["failed_unknown_token"],
                rate=m["max_unk_rate"],
                fallback=Msg("C01.reason.lossy.despite_byte_fallback") if m.get("byte_fallback") else empty(),
            )
        )
    if m.get("failed_whitespace_only"):
        how = (
            Msg("C01.reason.lossy.spaces_dropped")
            if m["pre_tokenizer"] in WHITESPACE_PRE_TOKENIZERS
            else Msg("C01.reason.lossy.spacing_not_kept", pre=m["pre_tokenizer"], decoder=m["decoder"])
        )
        causes.append(Msg("C01.reason.lossy.whitespace_only", how=how, n=m["failed_whitespace_only"]))
    if m.get("failed_normal_form_only"):
        causes.append(
            Msg(
                "C01.reason.lossy.normal_form_only",
                normalizer=m["normalizer"],
                n=m["failed_normal_form_only"],
            )
        )
    if m.get("failed_other"):
        causes.append(Msg("C01.reason.lossy.other", n=m["failed_other"]))
    counted = Msg(
        "C01.reason.lossy.counted", failed=m.get("failed", "?"), paragraphs=m.get("paragraphs", "?")
    )
    return Msg("C01.reason.lossy.with_causes", counted=counted, causes=causes) if causes else counted


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    out = VerdictOf(Kind.DEFINITION, primary=Msg(PRIMARY))
    by_algo: Mapping[str, Mapping[str, Any]] = metrics["by_algorithm"]
    if not metrics["all_ids_in_range"]:
        return out.branch(Label.NOT_SUPPORTED, "C01.verdict.ids_out_of_range")
    lossless = sorted(a for a, m in by_algo.items() if m["min_exact_round_trip"] >= LOSSLESS)
    lossy = {a: m for a, m in sorted(by_algo.items()) if a not in lossless}
    reversible = [Msg("C01.reason.is_reversible", algo=a, why=why_reversible(by_algo[a])) for a in lossless]
    lossy_text = [Msg("C01.reason.is_not", algo=a, why=why_lossy(m)) for a, m in lossy.items()]
    texts = {
        "tokenizers": metrics["tokenizers"],
        "reversible": reversible,
        "lossy": lossy_text,
        "lossless": [algorithm_name(a) for a in lossless],
    }
    if lossless and not lossy:
        return out.branch(Label.SUPPORTED, "C01.verdict.all_reversible", **texts)
    if lossless:
        return out.branch(Label.SUPPORTED, "C01.verdict.some_reversible", **texts)
    best = max(by_algo.values(), key=lambda m: m["min_round_trip_ignoring_spaces"])
    if best["min_round_trip_ignoring_spaces"] >= 0.99:
        return out.branch(Label.PARTLY, "C01.verdict.spacing_lost", **texts)
    return out.branch(Label.NOT_SUPPORTED, "C01.verdict.not_reversible", **texts)
