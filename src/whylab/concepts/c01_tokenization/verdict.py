"""C01's decision: from the round-trip rows to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, part_reason, published_numbers
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C01"
SPEC = load_spec(CLAIM_ID)
WHITESPACE_PRE_TOKENIZERS = ("BertPreTokenizer", "Whitespace", "WhitespaceSplit")
ALGORITHMS = ("bpe", "wordpiece", "unigram")  # with a display name in the catalogue (C01.algorithm.<id>)
FAILURE_COUNTS = (
    "failed",
    "failed_unknown_token",
    "failed_whitespace_only",
    "failed_normal_form_only",
    "failed_other",
)


def _by_algorithm(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per algorithm (in name order): the worst round trip over its tokenizers and languages, the
    summed failure causes, and its pipeline (from its first row)."""
    out: dict[str, dict[str, Any]] = {}
    for algo in sorted({str(r["algorithm"]) for r in rows}):
        group = [r for r in rows if r["algorithm"] == algo]
        first = group[0]
        out[algo] = {
            "min_exact_round_trip": float(min(r["exact_round_trip"] for r in group)),
            "min_round_trip_ignoring_spaces": float(min(r["round_trip_ignoring_spaces"] for r in group)),
            "max_unk_rate": float(max(r["unk_rate"] for r in group)),
            "paragraphs": int(sum(r["paragraphs"] for r in group)),
            **{k: int(sum(r[k] for r in group)) for k in FAILURE_COUNTS},
            **{k: str(first[k]) for k in ("normalizer", "pre_tokenizer", "decoder")},
            "byte_fallback": any(bool(r["byte_fallback"]) for r in group),
            "has_unknown_token": any(bool(r["has_unknown_token"]) for r in group),
        }
    return out


def summarize(measured: Measured) -> dict[str, Any]:
    rows: list[dict[str, Any]] = measured.whole["rows"]
    return {
        "tokenizers": len({r["tokenizer"] for r in rows}),
        "all_ids_in_range": all(bool(r["ids_in_range"]) for r in rows),
        "by_algorithm": _by_algorithm(rows),
        "rows": rows,
    }


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


BYTE_VALUES = 256


def field_answers() -> dict[str, FieldAnswer]:
    """The published numbers: a finite vocabulary (GPT-2's 50,257 ids; BPE's initial symbols plus
    its merges) gives every piece an integer id; a base vocabulary of all 256 byte values (GPT-2's
    byte-level BPE) encodes any text without an unknown token, so its ids give the text back."""
    ids = published_numbers(SPEC.part("ids"))
    vocab = [int(p.value) for p in ids]
    ids_label = Label.SUPPORTED if all(v > 0 for v in vocab) else Label.NOT_SUPPORTED
    (base,) = published_numbers(SPEC.part("round_trip"))
    lossless = int(base.value) >= BYTE_VALUES
    return {
        "ids": FieldAnswer(
            ids_label, part_reason("C01.part.ids.field", vocab=vocab[0], merges=vocab[1]), ids
        ),
        "round_trip": FieldAnswer(
            Label.SUPPORTED if lossless else Label.PARTLY,
            part_reason("C01.part.round_trip.field", base=int(base.value)),
            (base,),
        ),
    }


def part_verdicts(metrics: Mapping[str, Any], round_trip: Label, lossless: list[str]) -> list[PartVerdict]:
    """The ids part (every id an integer inside its vocabulary) and the round-trip part (the
    claim's label: some algorithm gives every paragraph back exactly)."""
    field = field_answers()
    by_algo: Mapping[str, Mapping[str, Any]] = metrics["by_algorithm"]
    in_range = bool(metrics["all_ids_in_range"])
    worst = {algorithm_name(a): m["min_exact_round_trip"] for a, m in sorted(by_algo.items())}
    ids = PartVerdict(
        "ids",
        SPEC.part("ids").words,
        Kind.DEFINITION,
        Label.SUPPORTED if in_range else Label.NOT_SUPPORTED,
        part_reason(
            f"C01.part.ids.run.{'in_range' if in_range else 'out_of_range'}", tokenizers=metrics["tokenizers"]
        ),
        None,
        field["ids"],
    )
    shares = [Msg("C01.part.round_trip.share", algo=a, share=v) for a, v in worst.items()]
    trip = PartVerdict(
        "round_trip",
        SPEC.part("round_trip").words,
        Kind.DEFINITION,
        round_trip,
        part_reason(
            "C01.part.round_trip.run", shares=shares, lossless=[algorithm_name(a) for a in lossless] or ["-"]
        ),
        None,
        field["round_trip"],
    )
    return [ids, trip]


def _round_trip_label(by_algo: Mapping[str, Mapping[str, Any]], lossless: list[str]) -> Label:
    if lossless:
        return Label.SUPPORTED
    best = max(by_algo.values(), key=lambda m: m["min_round_trip_ignoring_spaces"])
    if best["min_round_trip_ignoring_spaces"] >= SPEC.threshold("spacing_only_round_trip"):
        return Label.PARTLY
    return Label.NOT_SUPPORTED


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    part = SPEC.part("round_trip")
    assert part.primary is not None
    out = VerdictOf(Kind.DEFINITION, primary=Msg(part.primary.text))
    by_algo: Mapping[str, Mapping[str, Any]] = metrics["by_algorithm"]
    lossless_at = SPEC.threshold("lossless_round_trip")
    lossless = sorted(a for a, m in by_algo.items() if m["min_exact_round_trip"] >= lossless_at)
    out.parts.extend(part_verdicts(metrics, _round_trip_label(by_algo, lossless), lossless))
    if not metrics["all_ids_in_range"]:
        return out.branch(Label.NOT_SUPPORTED, "C01.verdict.ids_out_of_range")
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
    if _round_trip_label(by_algo, lossless) is Label.PARTLY:
        return out.branch(Label.PARTLY, "C01.verdict.spacing_lost", **texts)
    return out.branch(Label.NOT_SUPPORTED, "C01.verdict.not_reversible", **texts)
