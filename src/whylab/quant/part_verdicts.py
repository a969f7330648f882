"""C12's and C13's parts judged as VALIDITY sections 7-9 ask: each part's run label with its power,
the literature's label from the published numbers in ``claim.yaml``, and the tables of the parts.

Pure (no torch, no files but the claim packages' own ``claim.yaml``). The statuses that decide the
claim's label are :mod:`whylab.quant.claim_parts`'; this module turns them into
:class:`whylab.parts.PartVerdict` records:

* **loss** (experiment): the run label from the primary variant's 95% t interval against the
  claimed range, with its power over the evaluation blocks; *limited by this run* where the
  measured LM is below the scale the notes speak of (``thresholds.regime``). The literature's
  label: the published losses at scale (``literature``) against the claimed range.
* **size** (definition check): what ONNX Runtime writes, with the bytes per parameter the format
  predicts (codes, scales, zero points, layers left in FP32) beside the measured file.
* **speed** (C12, experiment): INT8 vs FP32 on ONNX Runtime's CPU kernels, judged from the
  per-round speed-ups (their power) with the bytes per token and achieved bandwidths as the why;
  not judged without an INT8 kernel or where the cache, not memory, fed the weights. The
  literature's label: the published INT8 vs FP16 speed-ups on GPUs, the notes' own comparison.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from whylab.files import parse_yaml
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, Power, Published, run_label
from whylab.quant import report as qr
from whylab.quant.claim_parts import (
    CACHE_LIMITED,
    NO_FAST_PATH,
    REGIME,
    Part,
    decode_record,
    judged,
    loss_power,
    loss_status,
    pct,
    primary_name,
    real_record,
    size_status,
    variant_named,
)
from whylab.quant.loss_interval import interval_between
from whylab.results import Table
from whylab.verdict import Kind, Label

FP32_BYTES = 4.0
# MatMulNBits: 4-bit codes, one fp32 scale per group, one 4-bit zero point per group (asymmetric)
INT4_SCALE_BYTES, INT4_ZERO_POINT_BYTES = 4.0, 0.5
DECIDED = {"in": Label.SUPPORTED, "below": Label.NOT_SUPPORTED, "above": Label.NOT_SUPPORTED}


# ----------------------------------------------------------------------------- published numbers
@cache
def literature(claim_id: str, part_id: str) -> tuple[dict[str, Any], ...]:
    """The ``literature`` list of a part in the claim's ``claim.yaml`` (source, where, value, unit,
    url; a quantized number names its ``baseline`` and which way is ``better``)."""
    from whylab.concepts import REGISTRY

    raw = parse_yaml(files(REGISTRY[claim_id]).joinpath("claim.yaml").read_text(encoding="utf-8"))
    part = next(p for p in raw["parts"] if p["id"] == part_id)
    return tuple(dict(e) for e in part.get("literature") or ())


def published(entries: Sequence[Mapping[str, Any]]) -> tuple[Published, ...]:
    return tuple(Published.from_dict(dict(e)) for e in entries)


def published_losses(entries: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], float]]:
    """Each quantized number with its loss (%) against its baseline: the perplexity rise for a
    lower-is-better metric, the relative drop for a higher-is-better one."""
    by_id = {e["id"]: e for e in entries}
    out = []
    for e in entries:
        if "baseline" not in e:
            continue
        base = float(by_id[e["baseline"]]["value"])
        ratio = float(e["value"]) / base
        out.append(
            (e, 100.0 * (ratio - 1.0) if e.get("better", "lower") == "lower" else 100.0 * (1.0 - ratio))
        )
    return out


def _combined(statuses: Sequence[str]) -> Label:
    if not statuses:
        return Label.INCONCLUSIVE
    if all(s == "in" for s in statuses):
        return Label.SUPPORTED
    return Label.NOT_SUPPORTED if not any(s == "in" for s in statuses) else Label.PARTLY


def loss_field(claim_id: str, metrics: Mapping[str, Any], algorithm: str | None = None) -> FieldAnswer:
    """The published losses at scale against the notes' range ± tolerance: every deciding number in
    it -> supported, none -> not supported, some -> partly. ``algorithm``: only that algorithm's
    number decides (C13: the primary, AWQ); the others are shown."""
    claimed, tol = metrics["claimed"]["loss_pct"], metrics["tolerance"]["loss_pct"]
    entries = literature(claim_id, "loss")
    losses = published_losses(entries)
    deciding = [(e, loss) for e, loss in losses if algorithm is None or e.get("algorithm") == algorithm]
    label = _combined([loss_status(loss, loss, claimed, tol) for _, loss in deciding])
    items = [Msg("quant.field.item", where=e["where"], source=e["source"], loss=loss) for e, loss in losses]
    reason = Msg(
        f"quant.field.loss.{label.name.lower()}",
        items=items,
        deciding=[Msg("quant.field.item", where=e["where"], source=e["source"], loss=x) for e, x in deciding],
        claimed_low=claimed[0],
        claimed_high=claimed[1],
        tol=tol,
    )
    return FieldAnswer(label, reason, published(entries))


def size_field(claim_id: str, metrics: Mapping[str, Any]) -> FieldAnswer | None:
    """A published compression factor (× smaller) as a size cut, against the claimed cut ± tol."""
    entries = literature(claim_id, "size")
    if not entries:
        return None
    claimed, tol = metrics["claimed"]["size_cut_pct"], metrics["tolerance"]["size_cut_pct"]
    cuts = [(e, 100.0 * (1.0 - 1.0 / float(e["value"]))) for e in entries]
    label = _combined([size_status(cut, claimed, tol) for _, cut in cuts])
    reason = Msg(
        f"quant.field.size.{label.name.lower()}",
        items=[Msg("quant.field.size_item", where=e["where"], source=e["source"], cut=c) for e, c in cuts],
        claimed=claimed,
    )
    return FieldAnswer(label, reason, published(entries))


# ----------------------------------------------------------------------------- the loss part
def draw_diffs(v: Mapping[str, Any]) -> list[list[float]]:
    """A variant's per-block NLL differences against its reference, one list per calibration draw
    (one list for a quantizer without calibration data, or a record from before the draws)."""
    return [list(d) for d in v.get("draw_block_diff") or [v["block_diff"]]]


def bits_apart(metrics: Mapping[str, Any]) -> Msg:
    """Whether this model tells 4 bits from 8: the primary INT4 and INT8 variants' NLLs on the
    same blocks, paired (both against the same FP32 reference)."""
    int8 = variant_named(metrics, primary_name(metrics, "int8"))
    int4 = variant_named(metrics, primary_name(metrics, "int4"))
    if not int8 or not int4 or not int8.get("block_diff") or not int4.get("block_diff"):
        return Msg("quant.partv.loss.bits.unknown")
    if len(int8["block_diff"]) != len(int4["block_diff"]):
        return Msg("quant.partv.loss.bits.unknown")
    mean, low, high, *_ = interval_between(draw_diffs(int4), draw_diffs(int8))
    apart = "apart" if low > 0 or high < 0 else "same"
    return Msg(
        f"quant.partv.loss.bits.{apart}",
        int4=int4["variant"],
        int8=int8["variant"],
        change4=int4["ppl_change_pct"],
        change8=int8["ppl_change_pct"],
        diff=pct(mean),
        low=pct(low),
        high=pct(high),
    )


def loss_verdict(
    claim_id: str, metrics: Mapping[str, Any], part: Part, words: str, algorithm: str | None = None
) -> PartVerdict:
    family = "int8" if claim_id == "C12" else "int4"
    claimed = metrics["claimed"]["loss_pct"]
    v = variant_named(metrics, primary_name(metrics, family))
    power = loss_power(v, float(claimed[0]))
    run = run_label(DECIDED.get(part.status, Label.INCONCLUSIVE), power)
    if v is None:
        reason = Msg("quant.partv.loss.missing", fact=part.fact)
    else:
        reason = Msg(
            f"quant.partv.loss.{'regime' if part.status == REGIME else 'decided'}",
            fact=part.fact,
            detectable=Msg("quant.partv.unrecorded")
            if power is None
            else power_text(v, power.detectable, power.n)
            if math.isfinite(power.detectable)
            else Msg("quant.partv.no_power", n=power.n),
            bits=bits_apart(metrics),
            why=part.why_open,
        )
    return PartVerdict(
        "loss", words, Kind.EXPERIMENT, run, reason, power, loss_field(claim_id, metrics, algorithm)
    )


def power_text(v: Mapping[str, Any], detectable: float, n: int) -> Msg:
    """What the loss interval could detect, and which spreads it samples: the evaluation blocks
    and, for a calibrated quantizer run on several calibration draws, the draws; never LM seeds."""
    draws = int(v.get("calibration_draws") or 1)
    if draws > 1:
        changes = [f"{c:+.2f}%" for c in v.get("draw_changes_pct") or []]
        return Msg("quant.partv.power_draws", detectable=detectable, n=n, draws=draws, changes=changes)
    if v.get("algorithm") in ("static", "gptq", "awq"):  # calibrated, on one draw only
        return Msg("quant.partv.power_one_draw", detectable=detectable, n=n, variant=v["variant"])
    return Msg("quant.partv.power", detectable=detectable, n=n, variant=v["variant"])


# ----------------------------------------------------------------------------- the size part
def bytes_per_weight(fmt: str, block: int) -> float:
    """What the format stores per quantized weight: INT8 1 byte (per-channel scales and zero
    points add 5 bytes per output column, under 1%); MatMulNBits 4 bits plus a scale and a zero
    point per group."""
    if fmt == "int8":
        return 1.0
    return 0.5 + (INT4_SCALE_BYTES + INT4_ZERO_POINT_BYTES) / block


def size_accounting(real: Mapping[str, Any], fmt: str, block: int) -> dict[str, float] | None:
    """The file the format predicts beside the measured one. INT8 (ONNX Runtime dynamic, MatMul
    and Gather quantized): every weight at 1 byte. INT4 (MatMulNBits): linear weights at
    :func:`bytes_per_weight`, the rest (embedding tables, norms, biases) left in FP32."""
    params = real.get("parameters") or {}
    total, linear = params.get("total"), params.get("linear_weights")
    if not total or (fmt == "int4" and not linear):
        return None
    bpw = bytes_per_weight(fmt, block)
    if fmt == "int8":
        kept, predicted = 0.0, float(total) * bpw
    else:
        kept = float(total) - float(linear or 0)
        predicted = float(linear or 0) * bpw + kept * FP32_BYTES
    size = float(real["formats"][fmt]["size_bytes"])
    return {
        "bytes_per_parameter": size / float(total),
        "bytes_per_weight": bpw,
        "kept_fp32_millions": kept / 1e6,
        "predicted_mb": predicted / 1e6,
        "predicted_cut_pct": 100.0 * (1.0 - predicted / (float(total) * FP32_BYTES)),
        "nominal_cut_pct": 100.0 * (1.0 - bpw / FP32_BYTES),
    }


def size_verdict(
    claim_id: str, metrics: Mapping[str, Any], part: Part, words: str, model: str, fmt: str
) -> PartVerdict:
    real = real_record(metrics, model)
    block = int((metrics.get("real_scale") or {}).get("int4_block_size", 128))
    acct = None if real is None else size_accounting(real, fmt, block)
    if acct is None:
        reason = Msg("quant.partv.size.plain", fact=part.fact)
    else:
        reason = Msg(f"quant.partv.size.{fmt}", fact=part.fact, block=block, **acct)
        bert = real_record(metrics, "bert")
        if fmt == "int4" and bert is not None:
            reason = Msg("quant.partv.size.with_bert", run=reason, bert=bert_int4_vs_int8(bert, block))
    run = DECIDED.get(part.status, Label.INCONCLUSIVE)
    return PartVerdict("size", words, Kind.DEFINITION, run, reason, None, size_field(claim_id, metrics))


def bert_int4_vs_int8(bert: Mapping[str, Any], block: int) -> Msg:
    """Why BERT-base's INT4 file can be larger than its INT8 one: MatMulNBits leaves the
    embedding tables in FP32, ONNX Runtime's dynamic INT8 quantizes their Gather too."""
    acct = size_accounting(bert, "int4", block) or {"kept_fp32_millions": math.nan}
    return Msg(
        "quant.partv.size.bert",
        model=qr.model_label("bert", bert),
        int4=qr.mb(bert["formats"]["int4"]["size_bytes"]),
        int8=qr.mb(bert["formats"]["int8"]["size_bytes"]),
        kept=acct["kept_fp32_millions"],
        kept_mb=acct["kept_fp32_millions"] * FP32_BYTES,
    )


# ----------------------------------------------------------------------------- the speed part
def speed_power(decode: Mapping[str, Any], claimed_low: float) -> Power:
    """Over the timing rounds: the per-round speed-ups' sd (the interquartile range / 1.349
    where the rounds are not recorded), against the claimed speed-up over 1×."""
    rounds = decode.get("speedup_rounds") or []
    n = int(decode.get("speedup_n") or len(rounds))
    if len(rounds) >= 2:
        sd = statistics.stdev(rounds)
    elif decode.get("speedup_q25") is not None and decode.get("speedup_q75") is not None:
        sd = (float(decode["speedup_q75"]) - float(decode["speedup_q25"])) / 1.349
    else:
        sd = math.nan
    return Power.paired(sd, n, "×", predicted=claimed_low - 1.0)


def speed_field(claim_id: str, metrics: Mapping[str, Any]) -> FieldAnswer | None:
    """The published INT8 speed-ups for the notes' own comparison (INT8 vs FP16 on a GPU, the
    heading the notes list it under) against the claimed range ± its relative tolerance."""
    entries = literature(claim_id, "speed_gpu")
    if not entries:
        return None
    claimed, rel = metrics["claimed"]["speedup"], metrics["tolerance"]["speedup_rel"]
    lo, hi = claimed[0] * (1 - rel), claimed[1] * (1 + rel)
    # a speed-up decides; a finding recorded without a number (LLM.int8()'s slowdown) is shown
    numbers = [e for e in entries if isinstance(e["value"], int | float)]
    findings = [e for e in entries if not isinstance(e["value"], int | float)]
    values = [float(e["value"]) for e in numbers]
    label = _combined(["below" if v < lo else "above" if v > hi else "in" for v in values])
    also = [
        Msg("quant.field.finding", where=e["where"], source=e["source"], finding=e["value"]) for e in findings
    ]
    reason = Msg(
        f"quant.field.speed.{label.name.lower()}",
        items=[
            Msg("quant.field.speed_item", where=e["where"], source=e["source"], x=e["value"]) for e in numbers
        ],
        claimed_low=claimed[0],
        claimed_high=claimed[1],
        also=Msg("quant.field.speed_also", items=also) if also else empty(),
    )
    return FieldAnswer(label, reason, published(entries))


def speed_verdict(metrics: Mapping[str, Any], part: Part, words: str) -> PartVerdict:
    """INT8 vs FP32 on this CPU, judged against the notes' 2-4× for what it measures, with the
    bytes moved per token and the achieved bandwidths as the why; the literature's label is for
    the notes' own comparison, INT8 vs FP16 on a GPU."""
    real = real_record(metrics, "llama")
    claimed_low = float(metrics["claimed"]["speedup"][0])
    if real is None:
        power = Power.paired(math.nan, 0, "×", predicted=claimed_low - 1.0)
        reason = Msg("quant.partv.speed.missing")
    else:
        power = speed_power(real["decode"]["int8"], claimed_low)
        decode = decode_record(metrics, "int8")
        why = part.why_open if decode is None or part.status.startswith(NO_FAST_PATH) else decode.why()
        reason = Msg(
            "quant.partv.speed.cpu",
            fact=part.fact,
            detectable=Msg("quant.partv.speed.power", detectable=power.detectable, n=power.n)
            if math.isfinite(power.detectable)
            else Msg("quant.partv.speed.no_power", n=power.n),
            why=why or Msg("quant.partv.speed.unexplained"),
        )
    run = run_label(DECIDED.get(part.status, Label.INCONCLUSIVE), power)
    return PartVerdict("speed", words, Kind.EXPERIMENT, run, reason, power)


def speed_gpu_verdict(metrics: Mapping[str, Any], words: str) -> PartVerdict:
    """INT8 vs FP16 on a GPU, the comparison the notes list their 2-4× under: the DAG times ONNX
    Runtime's CPU kernels against FP32 (the speed part), so this one is limited by the run and
    the published INT8 vs FP16 speed-ups decide what to believe."""
    claimed_low = float(metrics["claimed"]["speedup"][0])
    power = Power.paired(math.nan, 0, "×", predicted=claimed_low - 1.0)
    reason = Msg("quant.partv.speed_gpu.cpu_only")
    field = speed_field("C12", metrics)
    return PartVerdict("speed_gpu", words, Kind.EXPERIMENT, Label.INCONCLUSIVE, reason, power, field)


# ----------------------------------------------------------------------------- tables
def parts_table(metrics: Mapping[str, Any], results: Mapping[str, Part]) -> Table:
    # the evidence is the part's fact as a catalogue message, and so is a status that carries a
    # sentence (no fast path: why); the other statuses and judgements are single words
    records = [
        {
            "part": p,
            "judgement": judged(part.status),
            "status": part.why_open
            if part.status.startswith((NO_FAST_PATH, *CACHE_LIMITED.values())) and part.why_open
            else part.status,
            "evidence": part.fact,
        }
        for p, part in results.items()
    ]
    return Table.from_records("parts", Msg("quant.table.parts.caption"), records)


def accuracy_table(metrics: Mapping[str, Any], family: str) -> Table:
    records = [
        {
            "variant": v["variant"],
            "primary": v["variant"] == primary_name(metrics, family),
            "perplexity change (%)": round(v["ppl_change_pct"], 3),
            "95% t interval (%)": f"[{v['ppl_change_low_pct']:.3g}, {v['ppl_change_high_pct']:.3g}]",
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
