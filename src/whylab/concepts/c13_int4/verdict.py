"""C13's decision: the INT4 loss and size parts, each from its primary comparison.

Pure (no torch, no files). The claimed ranges and tolerances are in ``claim.yaml``; what C13
shares with C12 (the parts, the label) is in :mod:`whylab.quant.claim_parts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.quant import report as qr
from whylab.quant.claim_parts import (
    PRIMARY_INT4,
    Part,
    decide,
    loss_part,
    model_words,
    primary_name,
    real_label,
    size_part,
    summarize_variants,
)
from whylab.quant.part_verdicts import loss_verdict, size_verdict
from whylab.verdict import Verdict

CLAIM_ID = "C13"
SPEC = load_spec(CLAIM_ID)
# the notes' figures, and how far from them a measurement still counts as "in the range"
CLAIMED: dict[str, Any] = SPEC.threshold("claimed")
TOLERANCE: dict[str, Any] = SPEC.threshold("tolerance")
# the scale from which the loss part speaks for the notes' models (below it: limited by this run)
REGIME: dict[str, Any] = SPEC.threshold("regime")


def summarize(measured: Measured) -> dict[str, Any]:
    """C12's and C13's metrics, plus every 4-bit variant's per-block NLLs (for the paired
    comparisons of the literature checks) and AWQ's chosen scaling exponents."""
    metrics = summarize_variants(measured, CLAIMED, TOLERANCE, REGIME)
    int4_rows = [r for r in measured.whole["rows"] if r["family"] == "int4"]
    metrics["block_nll"] = {r["variant"]: r["block_nll"] for r in qr.measured(int4_rows)}
    metrics["awq_alphas"] = {
        r["variant"]: (r.get("diagnostics") or {}).get("alphas")
        for r in qr.measured(int4_rows)
        if r["algorithm"] == "awq"
    }
    return metrics


def part_results(metrics: Mapping[str, Any]) -> dict[str, Part]:
    return {
        "loss": loss_part(metrics, "int4"),
        "size": size_part(metrics, "llama", "int4"),
    }


def primary_text(metrics: Mapping[str, Any]) -> Msg:
    block = (metrics.get("real_scale") or {}).get("int4_block_size", PRIMARY_INT4[1])
    return Msg(
        "C13.primary",
        variant=primary_name(metrics, "int4") or Msg("C13.reason.not_configured"),
        model=model_words(metrics),
        llama=real_label(metrics, "llama"),
        block=block,
    )


def part_verdicts(metrics: Mapping[str, Any], results: Mapping[str, Part]) -> list[Any]:
    """Each part of the notes' sentence judged (VALIDITY 7-9). The literature's loss label is
    decided by the primary algorithm's published number (AWQ); RTN, GPTQ and GPTQ with reordering
    are shown beside it."""
    words = {p.id: p.words for p in SPEC.parts}
    return [
        loss_verdict(CLAIM_ID, metrics, results["loss"], words["loss"], algorithm=PRIMARY_INT4[0]),
        size_verdict(CLAIM_ID, metrics, results["size"], words["size"], "llama", "int4"),
    ]


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    results = part_results(metrics)
    return decide(results, primary_text(metrics), CLAIM_ID, part_verdicts(metrics, results))
