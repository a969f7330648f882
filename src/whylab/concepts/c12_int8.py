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
from typing import Any, NamedTuple

from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.files import read_json
from whylab.messages import Msg, empty
from whylab.quant import report as qr
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict, VerdictOf

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
class Part(NamedTuple):
    """One part of the claim: its status ('in', 'below', 'above', or why it is not judged), the
    fact the reason quotes, and the clause the correction writes from the measured numbers."""

    status: str
    fact: str
    clause: str
    why_open: str = ""  # why a part is not judged, where its status alone does not say (no fast path)


def _variant(metrics: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
    return next((v for v in metrics["variants"] if v["variant"] == name), None)


def model_words(metrics: Mapping[str, Any]) -> Msg:
    params = (metrics.get("model") or {}).get("parameters")
    return Msg("quant.lm.sized", millions=params / 1e6) if params else Msg("quant.lm.measured")


def _side(status: str) -> str:
    """The catalogue branch of a part's clause: in, below, above, or open (not judged)."""
    return status if status in ("in", "below", "above") else "open"


def loss_part(metrics: Mapping[str, Any], family: str) -> Part:
    """The loss part from the primary variant of ``family``."""
    claimed, tol = metrics["claimed"]["loss_pct"], metrics["tolerance"]["loss_pct"]
    name = primary_name(metrics, family)
    v = _variant(metrics, name)
    if v is None:
        missing = Msg("quant.part.loss.missing", name=name or Msg("quant.part.loss.none_configured"))
        return Part("unknown", missing, Msg("quant.clause.loss.open"))
    status = loss_status(v["ppl_change_low_pct"], v["ppl_change_high_pct"], claimed, tol)
    nums = {
        "change": v["ppl_change_pct"],
        "low": v["ppl_change_low_pct"],
        "high": v["ppl_change_high_pct"],
        "model": model_words(metrics),
        "claimed_low": claimed[0],
        "claimed_high": claimed[1],
    }
    nll = Msg("quant.part.loss.nll", nll=v["nll_diff"]) if v.get("nll_diff") is not None else empty()
    top1 = (
        Msg("quant.part.loss.top1", reference=100 * v["top1_reference"], top1=100 * v["top1"])
        if v.get("top1") is not None and v.get("top1_reference") is not None
        else empty()
    )
    fact = Msg("quant.part.loss.fact", variant=v["variant"], nll=nll, top1=top1, **nums)
    return Part(status, fact, Msg(f"quant.clause.loss.{_side(status)}", **nums))


def _real(metrics: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    return (metrics.get("real_scale") or {}).get(model)


def size_part(metrics: Mapping[str, Any], model: str, fmt: str) -> Part:
    claimed, tol = metrics["claimed"]["size_cut_pct"], metrics["tolerance"]["size_cut_pct"]
    real = _real(metrics, model)
    if real is None:
        return Part("unknown", Msg("quant.part.size.missing"), Msg("quant.clause.size.open"))
    fp32, q = real["formats"]["fp32"], real["formats"][fmt]
    nums = {"model": qr.model_label(model, real), "cut": q["size_cut_pct"], "claimed": claimed}
    fact = Msg(
        "quant.part.size.fact", fp32=qr.mb(fp32["size_bytes"]), quantized=qr.mb(q["size_bytes"]), **nums
    )
    status = size_status(float(q["size_cut_pct"]), claimed, tol)
    return Part(status, fact, Msg(f"quant.clause.size.{_side(status)}", **nums))


NO_FAST_PATH = "no fast path: "


def speed_part(metrics: Mapping[str, Any], fmt: str) -> Part:
    """Decode tokens/s at batch 1 on the Llama-7B-width layer; not judged without a fast path."""
    claimed, rel = metrics["claimed"]["speedup"], metrics["tolerance"]["speedup_rel"]
    real = _real(metrics, "llama")
    if real is None:
        return Part(
            "unknown",
            Msg("quant.part.speed.missing"),
            Msg("quant.clause.speed.open", why=why_open("unknown")),
        )
    d, ref = real["decode"][fmt], real["decode"]["fp32"]
    fast = real["fast_path"][fmt]
    nums = {
        "model": qr.model_label("llama", real),
        "median": d["speedup_median"],
        "claimed_low": claimed[0],
        "claimed_high": claimed[1],
    }
    fact = Msg(
        "quant.part.speed.fact",
        reference=ref["tokens_per_s"],
        tokens_per_s=d["tokens_per_s"],
        q25=d["speedup_q25"],
        q75=d["speedup_q75"],
        n=d["speedup_n"],
        kernel=qr.kernel_text(real["formats"][fmt]),
        **nums,
    )
    open_why = ""
    if not fast["exists"]:
        status = f"{NO_FAST_PATH}{fast['why']}"
        open_why = Msg("quant.open.no_fast_path", why=qr.fast_path_text(fast))
    else:
        status = speed_status(
            d["speedup_q25"], d["speedup_median"], d["speedup_q75"], d["speedup_n"], claimed, rel
        )
    side = _side(status)
    why = qr.fast_path_text(fast) if not fast["exists"] else why_open(status)
    clause = Msg(f"quant.clause.speed.{side}", **nums, **({"why": why} if side == "open" else {}))
    return Part(status, fact, clause, open_why)


def part_results(metrics: Mapping[str, Any]) -> dict[str, Part]:
    """part -> (status, fact, clause) for C12."""
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


BRANCH = {
    Label.SUPPORTED: "supported",
    Label.PARTLY: "partly",
    Label.NOT_SUPPORTED: "not_supported",
    Label.INCONCLUSIVE: "inconclusive",
}


def part_name(part: str) -> Msg:
    return Msg(f"quant.part.name.{part}")


def decide(results: Mapping[str, Part], primary: str, claim: str) -> Verdict:
    """Shared by C12 and C13: the label, and a reason that names every part's judgement; the
    correction (partly / not supported) restates the claim from each part's measured numbers."""
    judgements = {p: judged(part.status) for p, part in results.items()}
    label = label_for(judgements)

    def listed(j: str) -> list[Msg]:
        return [part_name(p) for p, v in judgements.items() if v == j] or [Msg("quant.none")]

    not_judged = [p for p, j in judgements.items() if j == OPEN]
    limited = [
        Msg("quant.limited.part", part=part_name(p), why=results[p].why_open or why_open(results[p].status))
        for p in not_judged
    ]
    out = VerdictOf(Kind.EXPERIMENT, primary, list(limited))
    return out.branch(
        label,
        f"{claim}.verdict.{BRANCH[label]}",
        facts=[part.fact for part in results.values()],
        held=listed(HOLDS),
        failed=listed(FAILS),
        not_judged=Msg("quant.reason.not_judged", items=limited) if limited else empty(),
        clauses=[part.clause for part in results.values()],
    )


def why_open(status: str) -> str:
    if status in ("unclear", "unknown"):
        return Msg(f"quant.open.{status}")
    return status


def real_label(metrics: Mapping[str, Any], model: str) -> Msg:
    real = _real(metrics, model)
    return qr.model_label(model, real) if real else qr.REAL_MODEL_NAMES[model]


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


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    return decide(part_results(metrics), primary_text(metrics), "C12")


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


def parts_table(metrics: Mapping[str, Any], results: Mapping[str, Part]) -> Table:
    records = [
        {"part": p, "judgement": judged(part.status), "status": part.status, "evidence": str(part.fact)}
        for p, part in results.items()
    ]
    return Table.from_records("parts", Msg("quant.table.parts.caption"), records)


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
    return Table.from_records("performance_loss", Msg("quant.table.performance_loss.caption"), records)


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
            Msg("C12.figure.latency.title"),
            Msg("C12.figure.latency.caption", low=2.0, high=4.0),
            claimed=(2.0, 4.0),
        )
    )
    primary = _variant(metrics, primary_name(metrics, "int8"))
    params = (metrics.get("model") or {}).get("parameters")
    literature = [
        LiteratureCheck(
            "Dettmers et al. 2022, LLM.int8()",
            Msg("C12.literature.llm_int8.finding"),
            None if primary is None else primary["ppl_change_high_pct"] < 1.0,
            Msg("C12.literature.llm_int8.none")
            if primary is None
            else Msg(
                "C12.literature.llm_int8.note",
                variant=primary["variant"],
                change=primary["ppl_change_pct"],
                high=primary["ppl_change_high_pct"],
                model=model_words(metrics) if params else Msg("quant.lm.small"),
            ),
        ),
        LiteratureCheck(
            "Zafrir et al. 2019, Q8BERT",
            Msg("C12.literature.q8bert.finding"),
            _bert_size_agrees(metrics),
            _bert_note(metrics),
        ),
    ]
    method = Msg("C12.method")
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


def _bert_note(metrics: Mapping[str, Any]) -> Msg:
    bert = _real(metrics, "bert")
    if bert is None:
        return Msg("C12.literature.q8bert.none")
    p, fmt = bert["prefill"], bert["formats"]["int8"]
    fast = bert["fast_path"]["int8"]
    return Msg(
        "C12.literature.q8bert.note",
        model=qr.model_label("bert", bert),
        cut=fmt["size_cut_pct"],
        tokens=bert["config"]["prefill_tokens"],
        speedup=p["int8"]["speedup_median"],
        n=p["int8"]["speedup_n"],
        kernel=qr.kernel_text(fmt),
        fast=Msg("quant.yes" if fast["exists"] else "quant.no"),
        why=qr.fast_path_text(fast),
    )
