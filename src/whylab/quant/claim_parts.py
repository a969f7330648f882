"""What C12 and C13 share: each part's status and judgement, the label, and the one CI rule.

Both claims are decided part by part (loss, size and, for C12, speed), each part by one
pre-registered comparison (``../shared/VALIDITY.md``, rule 2): this module turns the variants'
rows and the real-scale record into the metrics (:func:`summarize_variants`), a part's numbers
into its status, fact and clause, and the parts into the label and reason (:func:`decide`).
Pure (no torch, no files). The claimed ranges and tolerances are in each claim's ``claim.yaml``;
the primary variants are the first arm of the ``loss`` part's primary comparison there (C12's
for INT8, C13's for INT4). The parts as :class:`whylab.parts.PartVerdict` (power, literature)
and the tables are in :mod:`whylab.quant.part_verdicts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.quant import report as qr
from whylab.quant.kernel_paths import DecodeBytes, decode_bytes, fast_path
from whylab.quant.loss_interval import Interval as Interval
from whylab.quant.loss_interval import loss_power as loss_power
from whylab.quant.loss_interval import paired_interval as paired_interval
from whylab.quant.loss_interval import pct as pct
from whylab.quant.loss_interval import with_accuracy as with_accuracy
from whylab.quant.names import parse as parse_variant
from whylab.verdict import Kind, Label, Verdict, VerdictOf

HOLDS, FAILS, OPEN = "holds", "does not hold", "not judged"
# the loss part's status where the measured LM is below the scale the notes speak of, and where
# its evaluation blocks could not have shown the claimed loss (VALIDITY 8)
REGIME = "limited: model below the notes' scale"
UNDERPOWERED = "limited: could not have detected the claimed loss"


def _primary_arm(claim_id: str) -> str:
    primary = load_spec(claim_id).part("loss").primary
    assert primary is not None, f"{claim_id}: the loss part has no primary comparison"
    return primary.arms[0]


PRIMARY_INT8 = _primary_arm("C12")  # ONNX Runtime dynamic INT8, per-channel weight scales


def _int4_primary() -> tuple[str, int]:
    variant = parse_variant(_primary_arm("C13"))
    assert variant.block_size is not None, f"C13: the primary {variant.name} is not an INT4 variant"
    return variant.algorithm, int(variant.block_size)


PRIMARY_INT4 = _int4_primary()  # AWQ at group 128: the notes name AWQ; the papers' group


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
    """AWQ at group 128 when configured; else AWQ at the widest configured group below 128
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


def variant_named(metrics: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
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
    v = variant_named(metrics, name)
    if v is None:
        missing = Msg("quant.part.loss.missing", name=name or Msg("quant.part.loss.none_configured"))
        return Part("unknown", missing, Msg("quant.clause.loss.open"))
    status = loss_status(v["ppl_change_low_pct"], v["ppl_change_high_pct"], claimed, tol)
    model = metrics.get("model") or {}
    params = model.get("parameters")
    below_regime = params is not None and params < float(metrics.get("regime_min_parameters") or 0)
    # claim.yaml's regime may ask for a pretrained checkpoint (lm.pretrained): the LM trained here is
    # undertrained at any size, so only a real checkpoint of real size makes the part decisive
    not_pretrained = bool(metrics.get("regime_pretrained")) and not model.get("pretrained")
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
    if below_regime or not_pretrained:  # VALIDITY 8: a model that cannot show the notes' effect
        regime = float(metrics["regime_min_parameters"]) / 1e6
        key = "quant.open.regime" if below_regime else "quant.open.not_pretrained"
        scale = Msg(key, model=nums["model"], regime=regime)
        return Part(REGIME, fact, Msg("quant.clause.loss.regime", **nums), scale)
    power = loss_power(v, float(claimed[0]))
    if power is not None and power.limited and status != "in":
        why = Msg("quant.open.underpowered", detectable=power.detectable, n=power.n, claimed=claimed[0])
        return Part(UNDERPOWERED, fact, Msg("quant.clause.loss.open_power", **nums), why)
    return Part(status, fact, Msg(f"quant.clause.loss.{_side(status)}", **nums))


def real_record(metrics: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    return (metrics.get("real_scale") or {}).get(model)


def size_part(metrics: Mapping[str, Any], model: str, fmt: str) -> Part:
    claimed, tol = metrics["claimed"]["size_cut_pct"], metrics["tolerance"]["size_cut_pct"]
    real = real_record(metrics, model)
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
# the speed part's statuses where this decode cannot speak for a full-size model's (VALIDITY 8)
CACHE_LIMITED = {
    "fits_cache": "limited: the FP32 weights fit in the cache",
    "cache_served": "limited: the cache served INT8's weights",
}


def decode_record(metrics: Mapping[str, Any], fmt: str) -> DecodeBytes | None:
    """The Llama layer's decode as bytes per token and achieved bandwidths (None: not measured)."""
    real = real_record(metrics, "llama")
    if real is None:
        return None
    return decode_bytes(real, fmt, (metrics.get("real_scale") or {}).get("last_level_cache_bytes"))


def speed_part(metrics: Mapping[str, Any], fmt: str) -> Part:
    """Decode tokens/s at batch 1 on the Llama-7B-width layer, INT8 vs FP32 on this CPU, judged
    from the per-round speed-ups; not judged without an INT8 kernel on this CPU (no AVX2), where
    the FP32 weights fit in the cache, or where the cache served INT8's weights (its bandwidth
    far above FP32's: :meth:`whylab.quant.kernel_paths.DecodeBytes.limit`)."""
    claimed, rel = metrics["claimed"]["speedup"], metrics["tolerance"]["speedup_rel"]
    real = real_record(metrics, "llama")
    if real is None:
        return Part(
            "unknown",
            Msg("quant.part.speed.missing"),
            Msg("quant.clause.speed.open", why=why_open("unknown")),
        )
    d, ref = real["decode"][fmt], real["decode"]["fp32"]
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
        reference_kernel=qr.kernel_text(real["formats"]["fp32"]),
        **nums,
    )
    # the CPU's INT8 kernels (the record's cache gate is not read: it is decided here from the
    # bytes and bandwidths, so a record written under an older gate is judged by this one)
    exists, no_kernel = fast_path("decode", fmt, (metrics.get("real_scale") or {}).get("cpu_features"))
    decode = decode_record(metrics, fmt)
    limit = None if decode is None else decode.limit()
    open_why: Any = ""
    if exists is False:
        status = f"{NO_FAST_PATH}{no_kernel}"
        open_why = Msg("quant.open.no_fast_path", why=no_kernel)
    elif decode is not None and limit is not None:
        status = CACHE_LIMITED[limit]
        open_why = Msg(f"quant.open.{limit}", **decode.numbers())
    else:
        status = speed_status(
            d["speedup_q25"], d["speedup_median"], d["speedup_q75"], d["speedup_n"], claimed, rel
        )
    side = _side(status)
    why = (no_kernel if exists is False else open_why) or why_open(status)
    clause = Msg(f"quant.clause.speed.{side}", **nums, **({"why": why} if side == "open" else {}))
    return Part(status, fact, clause, open_why)


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


def decide(results: Mapping[str, Part], primary: str, claim: str, parts: Sequence[Any] = ()) -> Verdict:
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
    # a label that rests only on definition checks (what ONNX Runtime writes) while the
    # experiment parts were not judged says so in its reason (VALIDITY 1, 7)
    decided = [p for p, j in judgements.items() if j != OPEN]
    definitions = {pv.id for pv in parts if pv.kind is Kind.DEFINITION}
    basis = (
        Msg("quant.reason.definition_only", parts=[part_name(p) for p in decided])
        if decided and not_judged and set(decided) <= definitions
        else empty()
    )
    out = VerdictOf(Kind.EXPERIMENT, primary, list(limited))
    out.parts.extend(parts)  # whylab.parts.PartVerdict, one per part (whylab.quant.part_verdicts)
    return out.branch(
        label,
        f"{claim}.verdict.{BRANCH[label]}",
        facts=[part.fact for part in results.values()],
        held=listed(HOLDS),
        failed=listed(FAILS),
        not_judged=Msg("quant.reason.not_judged", items=limited) if limited else empty(),
        basis=basis,
        clauses=[part.clause for part in results.values()],
    )


def why_open(status: str) -> str:
    if status in ("unclear", "unknown"):
        return Msg(f"quant.open.{status}")
    return status


def real_label(metrics: Mapping[str, Any], model: str) -> Msg:
    real = real_record(metrics, model)
    return qr.model_label(model, real) if real else qr.REAL_MODEL_NAMES[model]


def summarize_variants(
    measured: Measured,
    claimed: Mapping[str, Any],
    tolerance: Mapping[str, Any],
    regime: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics of C12 and C13 from what their measure step gathered (the variants' rows,
    the real-scale record) and the claim's claimed ranges, tolerances and regime."""
    names = list(measured.settings["variants"])
    rows: list[dict[str, Any]] = measured.whole["rows"]
    by_name = {r["variant"]: r for r in rows}
    variants = []
    for r in qr.measured(rows):
        ref = by_name.get((r.get("params") or {}).get("reference", ""))
        variants.append(with_accuracy(qr.summary(r), r, ref if ref is not r else None))
    fp32 = by_name.get("torch-fp32") or {}
    memory = fp32.get("memory_bytes")
    return {
        "claimed": dict(claimed),
        "tolerance": dict(tolerance),
        "regime_min_parameters": float((regime or {}).get("min_parameters", 0.0)),
        "regime_pretrained": bool((regime or {}).get("pretrained", False)),
        "variants": variants,
        "primary": {
            "int8": PRIMARY_INT8 if PRIMARY_INT8 in names else None,
            "int4": primary_int4(names),
        },
        "per_channel": bool(measured.settings["quantization"]["int8"]["per_channel"]),
        "model": {
            "parameters": int(memory) // 4 if memory else None,
            "source": measured.whole["model_source"],
            # lm.pretrained named this checkpoint (the measure job's settings say so)
            "pretrained": bool(measured.settings.get("lm_pretrained", False)),
        },
        "real_scale": measured.whole["real_scale"],
        "skipped": qr.skipped_lines(rows),
        "device": measured.whole["device"],
        "providers": sorted({r["provider"] for r in qr.measured(rows)}),
    }
