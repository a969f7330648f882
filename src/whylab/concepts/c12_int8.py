"""C12 — "INT8 quantization (BERT, GPT) costs 20–30% of performance, cuts model size by 75%, speeds inference up 2–4×".

Three parts, each decided by one pre-registered comparison (``../shared/VALIDITY.md``, rule 2);
every other variant is shown, none decides:

* **loss** — the primary INT8 variant, ONNX Runtime dynamic quantization with per-channel
  weight scales, against ONNX Runtime FP32 on the trained LM: validation-perplexity change,
  with a 95% interval from per-block paired NLL differences, against 20–30%. The NLL difference
  (nats/token) and next-token top-1 accuracy are reported beside it; the perplexity change
  decides. The measured model's size is stated next to the claim.
* **size** — at real scale: the whole ONNX file of a BERT-base encoder (the notes' example;
  random weights, built from config) in FP32 vs the same INT8 quantization, against 75%.
* **speed** — at real scale: batch-1 decode tokens/s with the KV cache on a Llama-2-7B-width
  decoder layer, INT8 vs FP32, timed interleaved per round, against 2–4×. Where the CPU has no
  INT8 fast path for that regime the part is not judged (inconclusive, not refuted); the kernel
  path that ran and the CPU's instruction sets are recorded. BERT-base prefill latency and the
  small LM's timings are shown as evidence.

Label: every judged part holds → supported; none holds → not supported; some → partly; no
part judged → inconclusive. A part not judged is listed as limited and never lowers the label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.files import read_json
from whylab.quant import report as qr
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict

CLAIM_ID = "C12"
# the notes' figures, and how far from them a measurement still counts as "in the range"
CLAIMED: dict[str, Any] = {"loss_pct": [20.0, 30.0], "size_cut_pct": 75.0, "speedup": [2.0, 4.0]}
LOSS_BAND = (20.0, 30.0)
TOLERANCE = {"loss_pct": 5.0, "size_cut_pct": 5.0, "speedup_rel": 0.1}
PRIMARY_INT8 = "ort-int8-dynamic"
PRIMARY_INT4 = ("gptq", 128)  # GPTQ at group 128: the GPTQ/AWQ papers' setting
HOLDS, FAILS, OPEN = "holds", "does not hold", "not judged"


# ----------------------------------------------------------------------------- part statuses
def loss_status(low: float, high: float, claimed: Sequence[float], tol: float) -> str:
    """'in' when the interval [low, high] meets the claimed range ± tol, else 'below' / 'above'."""
    lo, hi = claimed[0] - tol, claimed[1] + tol
    if high < lo:
        return "below"
    if low > hi:
        return "above"
    return "in"


def size_status(cut: float, claimed: float, tol: float) -> str:
    """'in' when the whole-file cut is within tol of the claimed cut, else 'below' / 'above'."""
    if abs(cut - claimed) <= tol:
        return "in"
    return "above" if cut > claimed else "below"


def speed_status(
    q25: float | None,
    median: float | None,
    q75: float | None,
    n: int,
    claimed: Sequence[float],
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


def judged(status: str) -> str:
    return HOLDS if status == "in" else FAILS if status in ("below", "above") else OPEN


# ----------------------------------------------------------------------------- primary variants
def primary_int4(names: Sequence[str]) -> str | None:
    """GPTQ at group 128 when configured; else GPTQ at the widest configured group below 128
    (the model's layers are narrower), else None. Fixed by the config, never by the outcome."""
    algorithm, group = PRIMARY_INT4
    groups = sorted(int(n.rsplit("-b", 1)[1]) for n in names if n.startswith(f"ort-int4-{algorithm}-b"))
    if group in groups:
        return f"ort-int4-{algorithm}-b{group}"
    below = [g for g in groups if g < group]
    return f"ort-int4-{algorithm}-b{below[-1]}" if below else None


def primary_name(metrics: Mapping[str, Any], family: str) -> str | None:
    return (metrics.get("primary") or {}).get(family)


# ----------------------------------------------------------------------------- the parts
def _variant(metrics: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
    return next((v for v in metrics["variants"] if v["variant"] == name), None)


def model_words(metrics: Mapping[str, Any]) -> str:
    params = (metrics.get("model") or {}).get("parameters")
    return f"a {params / 1e6:.2g}M-parameter LM" if params else "the measured LM"


def loss_part(metrics: Mapping[str, Any], family: str) -> tuple[str, str]:
    """(status, fact) of the loss part from the primary variant of ``family``."""
    claimed, tol = metrics["claimed"]["loss_pct"], metrics["tolerance"]["loss_pct"]
    name = primary_name(metrics, family)
    v = _variant(metrics, name)
    if v is None:
        return "unknown", f"loss: the primary variant {name or '(none configured)'} was not measured"
    status = loss_status(v["ppl_change_low_pct"], v["ppl_change_high_pct"], claimed, tol)
    fact = (
        f"loss: {v['variant']} changes perplexity by {v['ppl_change_pct']:+.2f}% (95% CI "
        f"{v['ppl_change_low_pct']:+.2f} to {v['ppl_change_high_pct']:+.2f}%) on {model_words(metrics)}"
        f" (claimed {claimed[0]:g}–{claimed[1]:g}%, for BERT/GPT-scale models)"
    )
    if v.get("nll_diff") is not None:
        fact += f"; NLL {v['nll_diff']:+.4f} nats/token"
    if v.get("top1") is not None and v.get("top1_reference") is not None:
        fact += f"; next-token top-1 {100 * v['top1_reference']:.1f}% → {100 * v['top1']:.1f}%"
    return status, fact


def _real(metrics: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    return (metrics.get("real_scale") or {}).get(model)


def size_part(metrics: Mapping[str, Any], model: str, fmt: str) -> tuple[str, str]:
    claimed, tol = metrics["claimed"]["size_cut_pct"], metrics["tolerance"]["size_cut_pct"]
    real = _real(metrics, model)
    if real is None:
        return "unknown", "size: the real-scale shapes were not measured"
    fp32, q = real["formats"]["fp32"], real["formats"][fmt]
    fact = (
        f"size: {qr.model_label(model, real)}, ONNX file {qr.mb(fp32['size_bytes'])} → "
        f"{qr.mb(q['size_bytes'])}, a {q['size_cut_pct']:.1f}% cut (claimed {claimed:g}%)"
    )
    return size_status(float(q["size_cut_pct"]), claimed, tol), fact


def speed_part(metrics: Mapping[str, Any], fmt: str) -> tuple[str, str]:
    """Decode tokens/s at batch 1 on the Llama-7B-width layer; not judged without a fast path."""
    claimed, rel = metrics["claimed"]["speedup"], metrics["tolerance"]["speedup_rel"]
    real = _real(metrics, "llama")
    if real is None:
        return "unknown", "speed: the real-scale decode was not measured"
    d, ref = real["decode"][fmt], real["decode"]["fp32"]
    fast = real["fast_path"][fmt]
    fact = (
        f"speed: batch-1 decode with the KV cache, {qr.model_label('llama', real)}, {ref['tokens_per_s']:.1f} → "
        f"{d['tokens_per_s']:.1f} tokens/s, median speed-up {d['speedup_median']:.2f}× "
        f"(quartiles {d['speedup_q25']:.2f}–{d['speedup_q75']:.2f}×, {d['speedup_n']} rounds; "
        f"{real['formats'][fmt]['kernel_path']}; claimed {claimed[0]:g}–{claimed[1]:g}×)"
    )
    if not fast["exists"]:
        return f"no fast path: {fast['why']}", fact
    return (
        speed_status(d["speedup_q25"], d["speedup_median"], d["speedup_q75"], d["speedup_n"], claimed, rel),
        fact,
    )


def part_results(metrics: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """part -> (status, fact) for C12."""
    return {
        "loss": loss_part(metrics, "int8"),
        "size": size_part(metrics, "bert", "int8"),
        "speed": speed_part(metrics, "int8"),
    }


def label_for(parts: Mapping[str, str]) -> Label:
    """The label from each part's judgement (holds / does not hold / not judged)."""
    held = [p for p, j in parts.items() if j == HOLDS]
    failed = [p for p, j in parts.items() if j == FAILS]
    if not held and not failed:
        return Label.INCONCLUSIVE
    if held and not failed:
        return Label.SUPPORTED
    if failed and not held:
        return Label.NOT_SUPPORTED
    return Label.PARTLY


def decide(results: Mapping[str, tuple[str, str]], primary: str, what: str) -> Verdict:
    """Shared by C12 and C13: the label and a reason that names every part's judgement."""
    judgements = {p: judged(status) for p, (status, _) in results.items()}
    label = label_for(judgements)

    def listed(j: str) -> str:
        return ", ".join(p for p, v in judgements.items() if v == j) or "none"

    facts = "; ".join(fact for _, fact in results.values())
    reason = f"{facts}. Holds: {listed(HOLDS)}. Does not hold: {listed(FAILS)}."
    not_judged = [p for p, j in judgements.items() if j == OPEN]
    limited = tuple(f"{p}: {why_open(results[p][0])}" for p in not_judged)
    if not_judged:
        reason += " Not judged: " + "; ".join(limited) + "."
    reason += " The loss part is judged on the perplexity change; NLL and top-1 accuracy are shown beside it."
    takeaway = f"{what}: " + "; ".join(f"{p} {j}" for p, j in judgements.items()) + "."
    return Verdict(label, reason, kind=Kind.EXPERIMENT, primary=primary, limited=limited, takeaway=takeaway)


def why_open(status: str) -> str:
    if status.startswith("no fast path"):
        return f"{status} (inconclusive, not refuted)"
    return {
        "unclear": "the timing rounds disagree (some in range, some below)",
        "unknown": "not measured in this run",
    }.get(status, status)


def real_label(metrics: Mapping[str, Any], model: str) -> str:
    real = _real(metrics, model)
    return qr.model_label(model, real) if real else qr.REAL_MODELS[model]


def primary_text(metrics: Mapping[str, Any]) -> str:
    int8 = primary_name(metrics, "int8") or PRIMARY_INT8
    per = "per-channel" if metrics.get("per_channel", True) else "per-tensor"
    return (
        f"{int8} (ONNX Runtime dynamic INT8, {per} weights) vs ONNX Runtime FP32: perplexity change on "
        f"{model_words(metrics)}'s validation blocks (paired per block); whole-file size of "
        f"{real_label(metrics, 'bert')}; batch-1 decode tokens/s with the KV cache on "
        f"{real_label(metrics, 'llama')} (real shapes, random weights)"
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    return decide(part_results(metrics), primary_text(metrics), "INT8")


# ----------------------------------------------------------------------------- collecting
def with_accuracy(
    summary: dict[str, Any], row: Mapping[str, Any], ref: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Add the paired NLL difference (nats/token) and next-token top-1 accuracy vs the reference."""
    import statistics

    summary["nll_diff"] = None
    summary["top1"] = row.get("valid_top1")
    summary["top1_reference"] = None
    if ref is not None and ref.get("block_nll") and len(ref["block_nll"]) == len(row.get("block_nll") or []):
        summary["nll_diff"] = statistics.fmean(
            a - b for a, b in zip(row["block_nll"], ref["block_nll"], strict=True)
        )
        summary["top1_reference"] = ref.get("valid_top1")
    return summary


def real_scale_metrics(path: Path | None) -> dict[str, Any] | None:
    """The numbers C12/C13 need from the real-scale step's measures.json (None when not given)."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise InputError(f"{path}: missing (the quant_real_scale rule did not run)")
    rec = read_json(path)
    keep = {
        k: rec[k] for k in ("cpu_features", "int8_setup", "int4_block_size", "clock", "threads") if k in rec
    }
    for model in ("bert", "llama"):
        if model in rec:
            keep[model] = rec[model]
    return keep


def collect(
    ctx: ConceptContext, claimed: Mapping[str, Any], tolerance: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    names = list(ctx.settings["variants"])
    rows = qr.load_measures(ctx.inputs["variants"], names)
    by_name = {r["variant"]: r for r in rows}
    variants = []
    for r in qr.measured(rows):
        ref = by_name.get((r.get("params") or {}).get("reference", ""))
        variants.append(with_accuracy(qr.summary(r), r, ref if ref is not r else None))
    fp32 = by_name.get("torch-fp32") or {}
    memory = fp32.get("memory_bytes")
    metrics = {
        "claimed": dict(claimed),
        "tolerance": dict(tolerance),
        "variants": variants,
        "primary": {
            "int8": PRIMARY_INT8 if PRIMARY_INT8 in names else None,
            "int4": primary_int4(names),
        },
        "per_channel": bool(ctx.settings["quantization"]["int8"]["per_channel"]),
        "model": {"parameters": int(memory) // 4 if memory else None, "source": str(ctx.inputs["model"])},
        "real_scale": real_scale_metrics(ctx.inputs.get("real_scale")),
        "skipped": qr.skipped_lines(rows),
        "device": ctx.device,
        "providers": sorted({r["provider"] for r in qr.measured(rows)}),
    }
    return rows, metrics


def parts_table(metrics: Mapping[str, Any], results: Mapping[str, tuple[str, str]]) -> Table:
    records = [
        {"part": p, "judgement": judged(status), "status": status, "evidence": fact}
        for p, (status, fact) in results.items()
    ]
    return Table.from_records(
        "parts",
        "Each part of the claim, decided by its one primary comparison ('in' = within the claimed "
        "range and tolerance; 'no fast path', 'unclear', 'unknown' = not judged, never lowering the label).",
        records,
    )


def accuracy_table(metrics: Mapping[str, Any], family: str) -> Table:
    records = [
        {
            "variant": v["variant"],
            "primary": v["variant"] == primary_name(metrics, family),
            "perplexity change (%)": round(v["ppl_change_pct"], 3),
            "NLL difference (nats/token)": None if v["nll_diff"] is None else round(v["nll_diff"], 5),
            "top-1 accuracy (%)": None if v["top1"] is None else round(100 * v["top1"], 2),
            "top-1 of its FP32 reference (%)": None
            if v["top1_reference"] is None
            else round(100 * v["top1_reference"], 2),
        }
        for v in metrics["variants"]
        if v["family"] == family
    ]
    return Table.from_records(
        "performance_loss",
        "Performance loss three ways on the trained LM: perplexity change (decides), mean per-token NLL "
        "difference and next-token top-1 accuracy vs the FP32 model of the same runtime.",
        records,
    )


def run(ctx: ConceptContext) -> Evidence:
    rows, metrics = collect(ctx, CLAIMED, TOLERANCE)
    results = part_results(metrics)
    figures = [
        qr.plot_loss_change(
            metrics["variants"], ctx.outdir, "int8", LOSS_BAND, primary_name(metrics, "int8")
        ),
    ]
    if metrics["real_scale"]:
        figures.append(qr.plot_real_scale(metrics["real_scale"], ctx.outdir, claimed_speedup=(2.0, 4.0)))
    figures.append(
        qr.plot_latency(
            rows,
            ctx.outdir,
            "latency",
            "Small LM: batch-1 latency and speed-up per variant (evidence, not deciding)",
            "Left: p50 latency of one forward pass of the trained LM (batch 1, fixed prompt), tick at p90. "
            "Right: speed-up over FP32 of the same runtime, one value per interleaved timing round; the "
            "shaded band is the notes' 2–4×. Its matrices fit in cache: the speed part is decided at real scale.",
            claimed=(2.0, 4.0),
        )
    )
    primary = _variant(metrics, primary_name(metrics, "int8"))
    params = (metrics.get("model") or {}).get("parameters")
    literature = [
        LiteratureCheck(
            "Dettmers et al. 2022, LLM.int8()",
            "Naive 8-bit quantization keeps perplexity up to ~2.7B parameters; from ~6.7B, outlier features "
            "in a few hidden dimensions break it, and vector-wise INT8 with fp16 outlier decomposition keeps "
            "the 16-bit perplexity up to 175B: no performance loss at scale.",
            None if primary is None else primary["ppl_change_high_pct"] < 1.0,
            ""
            if primary is None
            else f"Primary INT8 variant here ({primary['variant']}): perplexity change {primary['ppl_change_pct']:+.2f}% "
            f"(95% CI up to {primary['ppl_change_high_pct']:+.2f}%) on "
            f"{'%.2gM' % (params / 1e6) if params else 'a small'}-parameter LM; agreement means under 1%. "
            "This model is far below the ~6.7B scale where the outlier features appear.",
        ),
        LiteratureCheck(
            "Zafrir et al. 2019, Q8BERT",
            "8-bit BERT-base keeps its accuracy within ~1% of FP32 and is 4× smaller.",
            _bert_size_agrees(metrics),
            _bert_note(metrics),
        ),
    ]
    method = (
        "The trained LM was quantized to INT8 four ways (ONNX Runtime dynamic and static, torchao dynamic "
        "and weight-only), each measured in its own job (perplexity on the same blocks as FP32, NLL, "
        "next-token top-1, size, batch-1 latency interleaved with FP32). ONNX Runtime INT8 follows its "
        "docs: quant_pre_process, the same weight MatMuls in both modes (MatMulConstBOnly, count asserted "
        "equal), reduce_range without VNNI. Size and speed are decided at real scale: a BERT encoder (BERT-base "
        "by default) and Llama decoder layers (Llama-2-7B width by default) with random weights, exported the same way, FP32 vs INT8 "
        "(the primary variant's quantizer): file size, BERT prefill latency (batch 1, 128 tokens) and "
        "decode tokens/s at batch 1 with the KV cache. One primary comparison decides each part."
    )
    tables = [qr.variants_table(rows), parts_table(metrics, results), accuracy_table(metrics, "int8")]
    if metrics["real_scale"]:
        tables.append(qr.real_scale_table(metrics["real_scale"]))
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=metrics["skipped"],
    )


def _bert_size_agrees(metrics: Mapping[str, Any]) -> bool | None:
    bert = _real(metrics, "bert")
    if bert is None:
        return None
    return bool(abs(bert["formats"]["int8"]["size_cut_pct"] - 75.0) <= 5.0)


def _bert_note(metrics: Mapping[str, Any]) -> str:
    bert = _real(metrics, "bert")
    if bert is None:
        return "BERT-base was not measured in this run."
    p, fmt = bert["prefill"], bert["formats"]["int8"]
    fast = bert["fast_path"]["int8"]
    return (
        f"{qr.model_label('bert', bert)} here (random weights): INT8 file cut {fmt['size_cut_pct']:.1f}% (agreement: within 5 "
        f"points of 75%); prefill (batch 1, {bert['config']['prefill_tokens']} tokens) "
        f"{p['int8']['speedup_median']:.2f}× FP32 (median of {p['int8']['speedup_n']} rounds; "
        f"{fmt['kernel_path']}; INT8 fast path for compute-bound prefill: "
        f"{'yes' if fast['exists'] else 'no'}, {fast['why']})."
    )
