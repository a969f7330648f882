"""C10's decision: from the causality rows to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). Decided on the library models
(a definition check); the bench model is the illustration. Thresholds are in ``claim.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, part_reason, published_numbers
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C10"
SPEC = load_spec(CLAIM_ID)
KINDS = {"decoder (causal mask)": True, "encoder (no mask)": False}  # model -> causal mask
KIND_TERMS = {"decoder (causal mask)": "C10.term.decoder", "encoder (no mask)": "C10.term.encoder"}
PARTS = {
    "decoders masked": "C10.term.decoders_masked",
    "encoders bidirectional": "C10.term.encoders_bidirectional",
    "multi-head": "C10.term.multi_head",
}
# claim.yaml part -> the library check's part it rests on
PART_OF = {
    "encoder_bidirectional": "encoders bidirectional",
    "decoder_masked": "decoders masked",
    "multi_head": "multi-head",
}
MEASURES = ("relative_leak", "earlier_max_abs", "later_mean_abs", "future_attention_share")


def encoder_min_leak() -> float:
    return float(SPEC.threshold("encoder_min_leak"))


def _number(value: Any) -> float:
    """A measured number back from JSON: "inf" (a leak over no change) as inf, None as NaN."""
    return float("nan") if value is None else float(value)


def _by_kind(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model kind (in name order) and stage: each measure over the seeds, in run order."""
    out: dict[str, Any] = {}
    for kind in sorted({str(r["kind"]) for r in rows}):
        of_kind = [r for r in rows if r["kind"] == kind]
        entry: dict[str, Any] = {}
        for stage in sorted({str(r["stage"]) for r in of_kind}):
            group = [r for r in of_kind if r["stage"] == stage]
            entry[stage] = {m: [_number(r[m]) for r in group] for m in MEASURES}
            if stage == "trained":
                entry[stage]["final_eval_loss"] = [_number(r["final_eval_loss"]) for r in group]
        entry["causal_mask"] = KINDS[kind]
        out[kind] = entry
    return out


def summarize(measured: Measured) -> dict[str, Any]:
    rows: list[dict[str, Any]] = measured.whole["rows"]
    metrics: dict[str, Any] = {
        "n_seeds": len(measured.seeds),
        "leak_tolerance": float(measured.settings["leak_tolerance"]),
        "stages": sorted({str(r["stage"]) for r in rows}),
        "by_kind": _by_kind(rows),
    }
    library = measured.whole["library"]
    if library is not None:
        metrics["library"] = {
            k: {**v, "relative_leak": _number(v["relative_leak"])} for k, v in library.items()
        }
    return metrics


def kind_of(metrics: Mapping[str, Any], causal: bool) -> Mapping[str, Any]:
    for k in metrics["by_kind"].values():
        if k.get("causal_mask") is causal:
            return k
    raise KeyError(f"no {'decoder' if causal else 'encoder'} results in the metrics")


def leaks(kind: Mapping[str, Any]) -> list[float]:
    return [float(v) for stage, m in kind.items() if isinstance(m, dict) for v in m["relative_leak"]]


def library_parts(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The three parts of the claim on the library models: decoders masked, encoders bidirectional,
    every stack multi-head; with the models that fail each part."""
    tol = float(metrics["leak_tolerance"])
    lib: Mapping[str, Mapping[str, Any]] = metrics["library"]
    dec = {k: v for k, v in lib.items() if v["role"] == "decoder"}
    enc = {k: v for k, v in lib.items() if v["role"] == "encoder"}
    fails = {
        "decoders masked": [
            k for k, v in dec.items() if v["relative_leak"] > tol or v["future_attention_share"] > tol
        ],
        "encoders bidirectional": [k for k, v in enc.items() if v["relative_leak"] < encoder_min_leak()],
        "multi-head": [
            k
            for k, v in lib.items()
            if not (
                v["real_heads"] > 1
                and v["heads_in_forward"] == v["real_heads"]
                and v["head_difference"] > tol
            )
        ],
    }
    return {
        "encoders": sorted(enc),
        "decoders": sorted(dec),
        "fails": fails,
        "holds": {part: not models for part, models in fails.items()},
    }


def field_answer(part_id: str) -> FieldAnswer:
    """Vaswani et al. 2017's answer from the recorded numbers: an encoder position attends to
    every later position (share 1), a decoder position to none (share 0), and a layer runs more
    than one head."""
    published = published_numbers(SPEC.part(part_id))
    value = float(published[0].value)
    holds = {"encoder_bidirectional": value > 0, "decoder_masked": value == 0, "multi_head": value > 1}
    label = Label.SUPPORTED if holds[part_id] else Label.NOT_SUPPORTED
    return FieldAnswer(label, part_reason(f"C10.part.{part_id}.field", value=value), published)


def part_verdicts(metrics: Mapping[str, Any], parts: Mapping[str, Any] | None) -> list[PartVerdict]:
    """One part per assertion: supported where every library model holds it, not supported where
    some model fails it, inconclusive when the library check was off."""
    out = []
    lib = metrics.get("library") or {}
    for part_id, check in PART_OF.items():
        spec = SPEC.part(part_id)
        if parts is None:
            label, reason = Label.INCONCLUSIVE, part_reason("C10.part.not_judged")
        else:
            label = Label.SUPPORTED if parts["holds"][check] else Label.NOT_SUPPORTED
            says = Msg(f"C10.part.{part_id}.{'holds' if label is Label.SUPPORTED else 'broken'}")
            numbers = _part_numbers(part_id, lib, parts)
            reason = part_reason(f"C10.part.{part_id}.run", says=says, **numbers)
        field = field_answer(part_id)
        out.append(PartVerdict(part_id, spec.words, Kind.DEFINITION, label, reason, None, field))
    return out


def _part_numbers(part_id: str, lib: Mapping[str, Any], parts: Mapping[str, Any]) -> dict[str, Any]:
    fails = parts["fails"][PART_OF[part_id]] or ["-"]
    if part_id == "multi_head":
        heads = [f"{k} {v['heads_in_forward']}/{v['real_heads']}" for k, v in lib.items()]
        return {"heads": heads, "fails": fails}
    role = "encoders" if part_id == "encoder_bidirectional" else "decoders"
    models = parts[role]
    leaks = [float(lib[k]["relative_leak"]) for k in models]
    future = [float(lib[k]["future_attention_share"]) for k in models]
    return {
        "models": models or ["-"],
        "leak": (min(leaks) if role == "encoders" else max(leaks)) if leaks else float("nan"),
        "future": (min(future) if role == "encoders" else max(future)) if future else float("nan"),
        "fails": fails,
    }


def _bench_text(metrics: Mapping[str, Any]) -> Msg:
    dec, enc = leaks(kind_of(metrics, True)), leaks(kind_of(metrics, False))
    if not dec or not enc:
        return empty()
    return Msg("C10.reason.bench", dec_leak=max(dec), enc_leak=min(enc), runs=len(dec))


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided on the library models (definition check); the bench model is the illustration."""
    part = SPEC.part("self_attention")
    assert part.primary is not None
    out = VerdictOf(Kind.DEFINITION, Msg(part.primary.text))
    if not metrics.get("library"):
        out.parts.extend(part_verdicts(metrics, None))
        return out.branch(Label.INCONCLUSIVE, "C10.verdict.library_off", bench=_bench_text(metrics))
    parts = library_parts(metrics)
    out.parts.extend(part_verdicts(metrics, parts))
    lib = metrics["library"]
    heads = [f"{v['real_model']} {v['real_heads']}" for k, v in lib.items() if not k.startswith("T5 d")]
    leaks_dec = max(lib[k]["relative_leak"] for k in parts["decoders"]) if parts["decoders"] else float("nan")
    leaks_enc = min(lib[k]["relative_leak"] for k in parts["encoders"]) if parts["encoders"] else float("nan")
    numbers = Msg(
        "C10.reason.numbers",
        dec_leak=leaks_dec,
        decoders=parts["decoders"],
        enc_leak=leaks_enc,
        encoders=parts["encoders"],
        heads=heads,
    )
    holds, fails = parts["holds"], parts["fails"]
    failed = [
        Msg("C10.reason.fails", part=Msg(PARTS[part]), models=models)
        for part, models in fails.items()
        if models
    ]
    params: dict[str, Any] = {"numbers": numbers, "failed": failed, "bench": _bench_text(metrics)}
    if all(holds.values()):
        return out.branch(Label.SUPPORTED, "C10.verdict.supported", **params)
    if not holds["decoders masked"] and not holds["encoders bidirectional"]:
        return out.branch(Label.NOT_SUPPORTED, "C10.verdict.not_supported", **params)
    return out.branch(Label.PARTLY, "C10.verdict.partly", **params)
