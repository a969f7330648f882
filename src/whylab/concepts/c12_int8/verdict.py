"""C12's decision: the INT8 loss, size and speed parts, each from its primary comparison.

Pure (no torch, no files). The claimed ranges and tolerances are in ``claim.yaml``; what C12
shares with C13 (the parts, the label) is in :mod:`whylab.quant.claim_parts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.quant.claim_parts import (
    PRIMARY_INT8,
    Part,
    decide,
    loss_part,
    model_words,
    primary_name,
    real_label,
    size_part,
    speed_part,
    summarize_variants,
)
from whylab.quant.part_verdicts import loss_verdict, size_verdict, speed_gpu_verdict, speed_verdict
from whylab.verdict import Verdict

CLAIM_ID = "C12"
SPEC = load_spec(CLAIM_ID)
# the notes' figures, and how far from them a measurement still counts as "in the range"
CLAIMED: dict[str, Any] = SPEC.threshold("claimed")
TOLERANCE: dict[str, Any] = SPEC.threshold("tolerance")
# the scale from which the loss part speaks for the notes' models (below it: limited by this run)
REGIME: dict[str, Any] = SPEC.threshold("regime")


def summarize(measured: Measured) -> dict[str, Any]:
    return summarize_variants(measured, CLAIMED, TOLERANCE, REGIME)


def part_results(metrics: Mapping[str, Any]) -> dict[str, Part]:
    """part -> (status, fact, clause) for C12."""
    return {
        "loss": loss_part(metrics, "int8"),
        "size": size_part(metrics, "bert", "int8"),
        "speed": speed_part(metrics, "int8"),
    }


def primary_text(metrics: Mapping[str, Any]) -> Msg:
    int8 = primary_name(metrics, "int8") or PRIMARY_INT8
    per = "per_channel" if metrics.get("per_channel", True) else "per_tensor"
    return Msg(
        "C12.primary",
        variant=int8,
        per=Msg(f"quant.{per}"),
        model=model_words(metrics),
        bert=real_label(metrics, "bert"),
        llama=real_label(metrics, "llama"),
    )


def part_verdicts(metrics: Mapping[str, Any], results: Mapping[str, Part]) -> list[Any]:
    """Each part of the notes' sentence judged (VALIDITY 7-9): run label with its power, the
    literature's label from claim.yaml's published numbers."""
    words = {p.id: p.words for p in SPEC.parts}
    return [
        loss_verdict(CLAIM_ID, metrics, results["loss"], words["loss"]),
        size_verdict(CLAIM_ID, metrics, results["size"], words["size"], "bert", "int8"),
        speed_verdict(metrics, results["speed"], words["speed"]),
        speed_gpu_verdict(metrics, words["speed_gpu"]),
    ]


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    results = part_results(metrics)
    return decide(results, primary_text(metrics), CLAIM_ID, part_verdicts(metrics, results))
