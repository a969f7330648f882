"""C12 — "INT8 quantization costs 20–30% of performance, cuts model size by 75%, speeds inference up 2–4×".

The claim has three measurable parts, each checked on every INT8 variant of the trained LM
(ONNX Runtime dynamic and static, torchao dynamic and weight-only), against the FP32 model of
the same runtime, on this machine:

* performance: validation-perplexity change vs FP32 (with a paired 95% interval over blocks);
* size: the cut in bytes on disk (whole model file) and on the quantized tensors alone;
* speed: batch-1 latency speed-up, timed interleaved with FP32 in the same job, per round (on
  one CPU thread by the thread's CPU time, which preemption on a busy machine does not inflate).

A part holds when at least one INT8 variant lands in the claimed range (with a tolerance);
all three → supported, none → not supported, otherwise partly. A size cut reached only on
the quantized tensors (not on the whole file, where unquantized tensors remain) counts as partly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from whylab.concepts import ConceptContext
from whylab.quant import report as qr
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, Verdict

CLAIM_ID = "C12"
# the notes' figures, and how far from them a measurement still counts as "in the range"
CLAIMED = {"loss_pct": [20.0, 30.0], "size_cut_pct": 75.0, "speedup": [2.0, 4.0]}
TOLERANCE = {"loss_pct": 5.0, "size_cut_pct": 5.0, "speedup_rel": 0.1}


def loss_status(low: float, high: float, claimed: tuple[float, float], tol: float) -> str:
    """'in' when the interval [low, high] meets the claimed range ± tol, else 'below' / 'above'."""
    lo, hi = claimed[0] - tol, claimed[1] + tol
    if high < lo:
        return "below"
    if low > hi:
        return "above"
    return "in"


def size_status(whole_cut: float | None, tensor_cut: float | None, claimed: float, tol: float) -> str:
    """'in' when the whole-file cut is within tol of the claim; 'tensors' when only the quantized tensors are."""
    if whole_cut is not None and abs(whole_cut - claimed) <= tol:
        return "in"
    if tensor_cut is not None and abs(tensor_cut - claimed) <= tol:
        return "tensors"
    if whole_cut is not None and whole_cut > claimed + tol:
        return "above"
    return "below"


def speed_status(
    q25: float | None,
    median: float | None,
    q75: float | None,
    n: int,
    claimed: tuple[float, float],
    rel_tol: float,
) -> str:
    """Where the per-round speed-ups fall against the claimed range (needs at least 5 rounds).

    'in' when at least three quarters of the rounds reach the claimed minimum (−tol) and the
    median stays within the maximum (+tol); 'above' when they exceed it; 'below' when three
    quarters fall short; 'unclear' in between (the rounds disagree); 'unknown' without data.
    """
    if median is None or q25 is None or q75 is None or n < 5:
        return "unknown"
    lo, hi = claimed[0] * (1 - rel_tol), claimed[1] * (1 + rel_tol)
    if q25 >= lo:
        return "in" if median <= hi else "above"
    if q75 < lo:
        return "below"
    return "unclear"


def part_results(metrics: Mapping[str, Any], family: str) -> dict[str, dict[str, str]]:
    """variant -> {part: status} for the claim's parts, from the metrics alone."""
    claimed, tol = metrics["claimed"], metrics["tolerance"]
    out = {}
    for v in metrics["variants"]:
        if v["family"] != family:
            continue
        parts = {
            "loss": loss_status(
                v["ppl_change_low_pct"], v["ppl_change_high_pct"], claimed["loss_pct"], tol["loss_pct"]
            ),
            "size": size_status(
                v["size_cut_pct"], v["quantized_tensor_cut_pct"], claimed["size_cut_pct"], tol["size_cut_pct"]
            ),
        }
        if "speedup" in claimed:
            parts["speed"] = speed_status(
                v["speedup_q25"],
                v["speedup_median"],
                v["speedup_q75"],
                v["speedup_n"],
                claimed["speedup"],
                tol["speedup_rel"],
            )
        out[v["variant"]] = parts
    return out


def decide(metrics: Mapping[str, Any], family: str, what: str) -> Verdict:
    """Shared by C12 and C13: each part holds if any variant of ``family`` is in range."""
    results = part_results(metrics, family)
    if not results:
        return Verdict(Label.INCONCLUSIVE, f"No {what} variant could be measured on this machine.")
    variants = {v["variant"]: v for v in metrics["variants"]}
    parts = list(next(iter(results.values())))
    holds = {p: [n for n, r in results.items() if r[p] == "in"] for p in parts}
    best_loss = min(results, key=lambda n: variants[n]["ppl_change_pct"])
    worst_loss = max(results, key=lambda n: variants[n]["ppl_change_pct"])
    best_size = max(results, key=lambda n: variants[n]["size_cut_pct"] or -math.inf)
    facts = [
        f"perplexity change {variants[best_loss]['ppl_change_pct']:.2f}% to "
        f"{variants[worst_loss]['ppl_change_pct']:.2f}% (claimed {metrics['claimed']['loss_pct'][0]:g}–"
        f"{metrics['claimed']['loss_pct'][1]:g}%)",
        f"size cut up to {variants[best_size]['size_cut_pct']:.1f}% of the file "
        f"({variants[best_size]['quantized_tensor_cut_pct'] or float('nan'):.1f}% on the quantized tensors; "
        f"claimed {metrics['claimed']['size_cut_pct']:g}%)",
    ]
    if "speed" in parts:
        speeds = [variants[n]["speedup_median"] for n in results if variants[n]["speedup_median"] is not None]
        if speeds:
            clock = next(iter(variants.values())).get("speedup_clock", "wall")
            facts.append(
                f"median batch-1 speed-up {min(speeds):.2f}× to {max(speeds):.2f}× "
                f"({'thread CPU time' if clock == 'cpu' else 'wall time'}; claimed "
                f"{metrics['claimed']['speedup'][0]:g}–{metrics['claimed']['speedup'][1]:g}×)"
            )
    held = [p for p in parts if holds[p]]
    # the size cut reached on the quantized tensors but not on the whole file counts half
    tensors_only = [p for p in parts if not holds[p] and any(r[p] == "tensors" for r in results.values())]
    unknown = [p for p in parts if not holds[p] and all(r[p] == "unknown" for r in results.values())]
    reason = "; ".join(facts) + f". In range: {', '.join(held) or 'no part'}"
    reason += f" (on the quantized tensors only: {', '.join(tensors_only)})." if tensors_only else "."
    if unknown and len(held) + len(unknown) == len(parts):
        return Verdict(Label.INCONCLUSIVE, reason + f" Not measurable: {', '.join(unknown)}.")
    if len(held) == len(parts):
        return Verdict(Label.SUPPORTED, reason)
    if not held and not tensors_only:
        return Verdict(Label.NOT_SUPPORTED, reason)
    return Verdict(Label.PARTLY, reason)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    return decide(metrics, "int8", "INT8")


def collect(
    ctx: ConceptContext, claimed: Mapping[str, Any], tolerance: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = qr.load_measures(ctx.inputs["variants"], ctx.settings["variants"])
    metrics = {
        "claimed": dict(claimed),
        "tolerance": dict(tolerance),
        "variants": [qr.summary(r) for r in qr.measured(rows)],
        "skipped": qr.skipped_lines(rows),
        "device": ctx.device,
        "providers": sorted({r["provider"] for r in qr.measured(rows)}),
    }
    return rows, metrics


def parts_table(metrics: Mapping[str, Any], family: str) -> Table:
    records = [{"variant": n, **r} for n, r in part_results(metrics, family).items()]
    return Table.from_records(
        "parts",
        "Where each variant falls against each part of the claim "
        "('in' = within the claimed range and tolerance; 'tensors' = only the quantized "
        "tensors, not the whole file, reach the claimed cut).",
        records,
    )


def run(ctx: ConceptContext) -> Evidence:
    rows, metrics = collect(ctx, CLAIMED, TOLERANCE)
    int8 = [v for v in metrics["variants"] if v["family"] == "int8"]
    figures = [
        qr.plot_pareto(rows, ctx.outdir, highlight="int8"),
        qr.plot_latency(
            rows,
            ctx.outdir,
            "latency",
            "Batch-1 latency and speed-up per variant",
            "Left: p50 latency of one forward pass (batch 1, fixed prompt), tick at p90. Right: "
            "speed-up over FP32 of the same runtime, one value per interleaved timing round; "
            "the shaded band is the notes' 2–4×.",
            claimed=tuple(CLAIMED["speedup"]),
        ),
    ]
    best = min(int8, key=lambda v: v["ppl_change_pct"]) if int8 else None
    literature = [
        LiteratureCheck(
            "Dettmers et al. 2022, LLM.int8()",
            "8-bit inference (vector-wise quantization plus fp16 outlier decomposition) keeps the 16-bit "
            "perplexity of models up to 175B parameters: no performance loss, half the fp16 memory.",
            None if best is None else best["ppl_change_high_pct"] < 1.0,
            ""
            if best is None
            else f"Best INT8 variant here ({best['variant']}): perplexity change {best['ppl_change_pct']:.2f}% "
            f"(95% CI up to {best['ppl_change_high_pct']:.2f}%); agreement means under 1%. This model is far "
            "below the 6.7B scale where LLM.int8() found the outlier features that break naive INT8.",
        ),
    ]
    method = (
        "The trained language model was quantized to INT8 four ways: ONNX Runtime dynamic (weights INT8 "
        "ahead of time, activations per batch) and static (activation ranges calibrated on training-split "
        "blocks), and torchao dynamic (W8A8) and weight-only (W8A16) in PyTorch. Each variant ran in its "
        "own job that measured validation perplexity on the same blocks as FP32, the file size, and batch-1 "
        "latency timed in alternation with the FP32 model of the same runtime. Each part of the notes' "
        "claim (20–30% loss, 75% smaller, 2–4× faster) is checked against every INT8 variant."
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=[qr.variants_table(rows), parts_table(metrics, "int8")],
        figures=figures,
        literature=literature,
        skipped=metrics["skipped"],
    )
