"""C15's decision: does GPTQ compute gradients, and is its result driven by the Hessian instead?

Pure (no torch, no files): from the probe's counts and the Hessian checks to a verdict. The
group size that decides is in ``claim.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.files import parse_yaml
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, Published
from whylab.quant import report as qr
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C15"
SPEC = load_spec(CLAIM_ID)
PRIMARY_GROUP = int(SPEC.threshold("primary_group"))  # GPTQ at group 128 decides the INT4 literature check


def gptq_vs_rtn(int4_rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """group size -> GPTQ's and RTN's perplexity (and change vs FP32), where both were measured."""
    int4 = {(r["algorithm"], r["block_size"]): r for r in qr.measured(int4_rows, "int4")}
    return {
        str(bs): {
            "gptq": int4[("gptq", bs)]["ppl_change_pct_vs_fp32"],
            "rtn": int4[("rtn", bs)]["ppl_change_pct_vs_fp32"],
            "gptq_ppl": int4[("gptq", bs)]["valid_ppl"],
            "rtn_ppl": int4[("rtn", bs)]["valid_ppl"],
        }
        for (alg, bs) in int4
        if alg == "gptq" and ("rtn", bs) in int4
    }


def summarize(measured: Measured) -> dict[str, Any]:
    w = measured.whole
    return {
        "gradients": w["gradients"],
        "hessian": w["hessian"],
        "probe_control": w["probe_control"],
        "ppl_gptq_vs_rtn": gptq_vs_rtn(w["int4_rows"]),
        "ort_builtin_gptq": w["ort_builtin_gptq"],
        "third_party": w.get("third_party"),
        "llmcompressor": w.get("llmcompressor"),
        "check_block_size": w["check_block_size"],
        "model_parameters": w["model_parameters"],
        "calibration_blocks": w["calibration_blocks"],
    }


def primary_group(ppl: Mapping[str, Any]) -> str | None:
    """The measured group size that decides: 128 (claim.yaml) when measured, else the largest one."""
    if not ppl:
        return None
    return str(PRIMARY_GROUP) if str(PRIMARY_GROUP) in ppl else max(ppl, key=int)


def primary_text(m: Mapping[str, Any]) -> Msg:
    return Msg(
        "C15.primary",
        parameters=m.get("model_parameters", 0),
        group=m.get("check_block_size", "?"),
    )


def ppl_texts(ppl: Mapping[str, Mapping[str, float]]) -> list[Msg]:
    """GPTQ vs RTN perplexity change at each measured group size, smallest group first."""
    return [
        Msg("C15.reason.ppl", group=bs, gptq=v["gptq"], rtn=v["rtn"])
        for bs, v in sorted(ppl.items(), key=lambda kv: int(kv[0]))
    ]


def literature(part_id: str) -> tuple[Published, ...]:
    """The published numbers ``claim.yaml`` records for one part."""
    raw = parse_yaml(files(__package__).joinpath("claim.yaml").read_text(encoding="utf-8"))
    part = next(p for p in raw["parts"] if p["id"] == part_id)
    return tuple(Published.from_dict(d) for d in part.get("literature") or ())


def field_answer(published: Sequence[Published]) -> FieldAnswer | None:
    """The paper's answer: the Hessian GPTQ uses is an expression in the layer inputs X alone
    (no loss derivative: no ∇, ∂ or L in it) -> not gradient-based; one with a loss derivative -> it is."""
    hessian = next((p for p in published if p.unit == "Hessian of the layer-wise error"), None)
    if hessian is None:
        return None
    expr = str(hessian.value)
    uses_loss = any(c in expr for c in "∇∂L")
    label = Label.SUPPORTED if uses_loss else Label.NOT_SUPPORTED
    key = "C15.part.gradient_based.field." + ("loss" if uses_loss else "inputs")
    hours = next((p for p in published if "GPU hours" in p.unit), None)
    return FieldAnswer(
        label,
        Msg(key, expr=expr, hours=hours.value if hours else "?"),
        tuple(published),
    )


def _own(grads: Mapping[str, Any], h: Mapping[str, Any]) -> Msg:
    """whylab's own GPTQ under the probe: an illustration (its no_grad wiring makes the zero certain)."""
    return Msg(
        "C15.reason.own",
        backward=grads["backward_calls"] + grads["grad_calls"],
        identity="yes" if h["identity_equals_rtn"] else "no",
        changed=100 * h["codes_differ_from_rtn_frac"],
        ratio=h.get("error_ratio_gptq_vs_rtn") or math.nan,
    )


NOT_RUN: dict[str, Any] = {"ran": False}  # an implementation the measurements do not record


def outcome(impl: Mapping[str, Any]) -> tuple[Label, str, list[Msg]]:
    """One implementation's answer: gradients -> supported; codes moved off RTN's and the layer's
    output error below RTN's -> not supported (Hessian-driven); else inconclusive, naming what failed."""
    ratio = impl.get("error_ratio_vs_rtn")
    if impl["backward_calls"] + impl["grad_calls"] > 0:
        return Label.SUPPORTED, "gradients", []
    if impl["codes_differ_from_rtn_frac"] > 0 and ratio is not None and ratio < 1.0:
        return Label.NOT_SUPPORTED, "hessian", []
    failed = [
        Msg(f"C15.reason.failed.{name}")
        for ok, name in (
            (impl["codes_differ_from_rtn_frac"] > 0, "equals_rtn"),
            (ratio is not None and ratio < 1.0, "no_lower_error"),
        )
        if not ok
    ]
    return Label.INCONCLUSIVE, "no_hessian_evidence", failed


def who(name: str, impl: Mapping[str, Any]) -> Msg:
    """The implementation's name as the texts give it (llmcompressor's version, torchao's device)."""
    if name == "llmcompressor":
        return Msg("C15.reason.who.llmcompressor", version=(impl.get("versions") or {}).get(name) or "?")
    where = Msg("C15.reason.where." + ("cuda" if impl.get("device") == "cuda" else "cpu"))
    return Msg("C15.reason.who.torchao", where=where)


def why_not(impl: Mapping[str, Any]) -> Msg | str:
    """Why an implementation did not run: llmcompressor absent from the interpreter the rule found
    (a text in every language), else the error's line as recorded."""
    if impl.get("absent"):
        return Msg("C15.reason.absent", python=impl.get("python") or "?")
    return impl.get("why_not") or Msg("C15.table.library_checks.unmeasured")


def cross_text(name: str, impl: Mapping[str, Any], label: Label | None) -> Msg:
    """The second implementation's numbers (or why it did not run), and whether it agrees."""
    if not impl.get("ran"):
        return Msg("C15.reason.cross.not_run", who=Msg(f"C15.reason.name.{name}"), why=why_not(impl))
    ratio = impl.get("error_ratio_vs_rtn")
    return Msg(
        "C15.reason.cross.ran",
        who=who(name, impl),
        backward=impl["backward_calls"] + impl["grad_calls"],
        changed=100 * impl["codes_differ_from_rtn_frac"],
        ratio=math.nan if ratio is None else ratio,
        agrees=Msg("C15.reason.cross." + ("agrees" if outcome(impl)[0] is label else "disagrees")),
        agree=Msg("C15.reason.cross.agree_ours", agree=100 * impl["codes_agree_with_ours_frac"])
        if "codes_agree_with_ours_frac" in impl
        else empty(),
    )


def decide(metrics: Mapping[str, Any]) -> tuple[Label, str, dict[str, Any]]:
    """The rule: llmcompressor's GPTQ (someone else's, unmodified) under the probe, grad mode on,
    decides; torchao's is the second cross-check (it decides where llmcompressor did not run); the
    two disagreeing -> inconclusive."""
    control = metrics["probe_control"]
    impls = {
        "llmcompressor": metrics.get("llmcompressor") or NOT_RUN,
        "torchao": metrics.get("third_party") or NOT_RUN,
    }
    h = metrics["hessian"]
    own = _own(metrics["gradients"], h)
    ppl_list = ppl_texts(metrics.get("ppl_gptq_vs_rtn") or {})
    ppl = Msg("C15.reason.ppl_all", items=ppl_list) if ppl_list else empty()
    base: dict[str, Any] = {"own": own, "ppl": ppl}
    if control["backward_calls"] + control["grad_calls"] == 0:
        return Label.INCONCLUSIVE, "C15.verdict.blind_probe", base
    ran = [name for name, impl in impls.items() if impl.get("ran")]
    if not ran:
        whys = [
            Msg("C15.reason.why_item", who=Msg(f"C15.reason.name.{n}"), why=why_not(i))
            for n, i in impls.items()
        ]
        return (
            Label.INCONCLUSIVE,
            "C15.verdict.no_third_party",
            base | {"why": Msg("C15.reason.whys", items=whys)},
        )
    name = ran[0]
    other = "torchao" if name == "llmcompressor" else "llmcompressor"
    decider = impls[name]
    label, key, failed = outcome(decider)
    ratio = decider.get("error_ratio_vs_rtn")
    base |= {
        "who": who(name, decider),
        "backward": decider["backward_calls"],
        "grad": decider["grad_calls"],
        "changed": 100 * decider["codes_differ_from_rtn_frac"],
        "ratio": math.nan if ratio is None else ratio,
        "cross": cross_text(other, impls[other], label),
    }
    if impls[other].get("ran") and outcome(impls[other])[0] is not label:
        return (
            Label.INCONCLUSIVE,
            "C15.verdict.disagree",
            base | {"label": Msg(f"C15.reason.label.{label.name.lower()}")},
        )
    if key == "no_hessian_evidence":
        return Label.INCONCLUSIVE, "C15.verdict.no_hessian_evidence", base | {"failed": failed}
    return label, f"C15.verdict.{key}", base


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """A definition check on llmcompressor's GPTQ (torchao's where it did not run, and as a cross-check):
    does it compute gradients, or is its result driven by the Hessian of the layer inputs instead?
    whylab's own GPTQ is shown as an illustration."""
    out = VerdictOf(Kind.DEFINITION, primary_text(metrics))
    label, key, params = decide(metrics)
    part = SPEC.part("gradient_based")
    out.parts.append(
        PartVerdict(
            part.id,
            part.words,
            Kind.DEFINITION,
            label,
            Msg(key + ".reason", **params),
            None,
            field_answer(literature(part.id)),
        )
    )
    return out.branch(label, key, **params)
