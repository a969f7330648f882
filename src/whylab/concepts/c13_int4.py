"""C13 — "INT4 quantization (GPT-J, LLaMA; AWQ) costs 40–50% of performance and cuts size by 87.5%".

Every 4-bit weight-only variant of the trained LM runs as ONNX Runtime MatMulNBits: ORT's
round-to-nearest and HQQ, and whylab's GPTQ and AWQ (written from the papers onto the same
grid), each at several group sizes. The two parts of the claim are checked as in C12:
perplexity change vs FP32 (paired 95% interval) against 40–50%, and the size cut against
87.5% — on the whole file and on the quantized tensors alone (4-bit codes plus one scale and
zero point per group cost more than 4 bits per weight; the embedding table stays FP32).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from whylab.concepts import ConceptContext
from whylab.concepts.c12_int8 import collect, decide, parts_table
from whylab.quant import report as qr
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Verdict

CLAIM_ID = "C13"
CLAIMED = {"loss_pct": [40.0, 50.0], "size_cut_pct": 87.5}
TOLERANCE = {"loss_pct": 5.0, "size_cut_pct": 5.0, "speedup_rel": 0.1}


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    return decide(metrics, "int4", "INT4")


def by_algorithm(metrics: Mapping[str, Any]) -> dict[int, dict[str, float]]:
    """block size -> algorithm -> perplexity change (%)."""
    out: dict[int, dict[str, float]] = {}
    for v in metrics["variants"]:
        if v["family"] == "int4":
            out.setdefault(int(v["block_size"]), {})[v["algorithm"]] = float(v["ppl_change_pct"])
    return out


def paired_difference(a: list[float], b: list[float], z: float = 2.0) -> tuple[float, float]:
    """Mean per-block NLL difference a − b (nats/token) and its z·SE half-width (same blocks, paired)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    half = z * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.inf
    return float(d.mean()), half


def compare(metrics: Mapping[str, Any], better: str, than: str) -> tuple[bool | None, str]:
    """Whether ``better`` beats ``than`` at every group size both ran at, on the same eval blocks.

    Per group size the per-block NLLs are compared pairwise: clearly lower (mean difference
    + 2 SE < 0) counts for, clearly higher against; a difference inside the noise at every
    size leaves the question open (None). Without per-block NLLs the perplexity changes decide.
    """
    table = by_algorithm(metrics)
    names = {
        (v["algorithm"], int(v["block_size"])): v["variant"]
        for v in metrics["variants"]
        if v["family"] == "int4"
    }
    nll = metrics.get("block_nll", {})
    pairs = [
        (bs, algs[better], algs[than])
        for bs, algs in sorted(table.items())
        if better in algs and than in algs
    ]
    if not pairs:
        return None, f"{better} and {than} were not both measured"
    outcomes, texts = [], []
    for bs, a, b in pairs:
        na, nb = nll.get(names[(better, bs)]), nll.get(names[(than, bs)])
        if na and nb and len(na) == len(nb):
            diff, half = paired_difference(na, nb)
            outcomes.append(True if diff + half < 0 else False if diff - half > 0 else None)
            texts.append(
                f"group {bs}: {better} {a:+.3f}% vs {than} {b:+.3f}% "
                f"(NLL difference {diff:+.2e} ± {half:.1e} nats/token)"
            )
        else:
            outcomes.append(a <= b)
            texts.append(f"group {bs}: {better} {a:+.3f}% vs {than} {b:+.3f}%")
    if any(o is False for o in outcomes):
        agrees: bool | None = False
    elif all(o is True for o in outcomes):
        agrees = True
    elif any(o is True for o in outcomes):
        agrees = True  # clearly better somewhere, never clearly worse
    else:
        agrees = None
    return agrees, "; ".join(texts)


def group_size_trend(metrics: Mapping[str, Any]) -> tuple[bool | None, str]:
    """Whether smaller groups give a lower (or equal) perplexity change for every algorithm."""
    table = by_algorithm(metrics)
    sizes = sorted(table)
    if len(sizes) < 2:
        return None, "only one group size measured"
    checks = []
    for alg in sorted({a for algs in table.values() for a in algs}):
        vals = [(bs, table[bs][alg]) for bs in sizes if alg in table[bs]]
        if len(vals) >= 2:
            checks.append((alg, all(vals[i][1] <= vals[i + 1][1] for i in range(len(vals) - 1)), vals))
    if not checks:
        return None, "no algorithm measured at two group sizes"
    text = "; ".join(f"{alg}: " + ", ".join(f"g{bs} {v:+.2f}%" for bs, v in vals) for alg, _, vals in checks)
    return all(ok for _, ok, _ in checks), text


def run(ctx: ConceptContext) -> Evidence:
    rows, metrics = collect(ctx, CLAIMED, TOLERANCE)
    int4_rows = [r for r in rows if r["family"] == "int4"]
    metrics["block_nll"] = {r["variant"]: r["block_nll"] for r in qr.measured(int4_rows)}
    metrics["awq_alphas"] = {
        r["variant"]: (r.get("diagnostics") or {}).get("alphas")
        for r in qr.measured(int4_rows)
        if r["algorithm"] == "awq"
    }
    figures = [
        qr.plot_pareto(rows, ctx.outdir, highlight="int4"),
        qr.plot_bits_and_groups(
            rows,
            ctx.outdir,
            "bits_and_groups",
            "Perplexity vs bits and vs INT4 group size",
            "Left: the best variant at each bit width, per runtime. Right: perplexity change "
            "of each 4-bit algorithm against its group size (weights sharing one scale and "
            "zero point).",
        ),
    ]
    gptq_ok, gptq_text = compare(metrics, "gptq", "rtn")
    awq_ok, awq_text = compare(metrics, "awq", "rtn")
    trend_ok, trend_text = group_size_trend(metrics)
    int4 = [v for v in metrics["variants"] if v["family"] == "int4"]
    worst = max((v["ppl_change_pct"] for v in int4), default=None)
    literature = [
        LiteratureCheck(
            "Frantar et al. 2023, GPTQ",
            "At 4 bits GPTQ keeps perplexity close to FP16 and clearly below round-to-nearest "
            "(OPT and BLOOM families, up to 175B).",
            gptq_ok,
            gptq_text,
        ),
        LiteratureCheck(
            "Lin et al. 2024, AWQ",
            "Scaling salient input channels by activation magnitude before group-wise INT4 "
            "round-to-nearest lowers perplexity below plain RTN (LLaMA, OPT; group size 128).",
            awq_ok,
            awq_text,
        ),
        LiteratureCheck(
            "Frantar et al. 2023; Lin et al. 2024 (group size ablations)",
            "Smaller quantization groups lower the 4-bit error at the cost of more scales.",
            trend_ok,
            trend_text,
        ),
        LiteratureCheck(
            "Lin et al. 2024, AWQ; Frantar et al. 2023, GPTQ (magnitude of the loss)",
            "Group-wise 4-bit LLaMA/OPT models lose a few percent of perplexity, not 40–50%.",
            None if worst is None else worst < 20.0,
            ""
            if worst is None
            else f"Largest 4-bit perplexity change here: {worst:.2f}%; agreement means under 20%.",
        ),
    ]
    alpha_rows = [{"variant": name, **(alphas or {})} for name, alphas in metrics["awq_alphas"].items()]
    tables = [qr.variants_table(rows), parts_table(metrics, "int4")]
    if alpha_rows:
        tables.append(
            Table.from_records(
                "awq_alphas", "AWQ's chosen α per scaling group (0 = plain RTN; s = mean|x|^α).", alpha_rows
            )
        )
    method = (
        "The trained LM's linear layers were quantized to 4-bit weights (activations stay float) with "
        "ONNX Runtime's MatMulNBits quantizer (round-to-nearest and HQQ) and with whylab's GPTQ and AWQ, "
        "written from the papers onto ONNX Runtime's grid, at each configured group size; the embedding "
        "table stays FP32. Each variant's validation perplexity is compared with FP32 on the same blocks "
        "(paired 95% interval), and its size cut is measured on the whole file and on the quantized "
        "tensors alone, against the notes' 40–50% loss and 87.5% size cut."
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=metrics["skipped"],
    )
