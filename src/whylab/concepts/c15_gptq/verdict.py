"""C15's decision: does GPTQ compute gradients, and is its result driven by the Hessian instead?

Pure (no torch, no files): from the probe's counts and the Hessian checks to a verdict. The
group size that decides is in ``claim.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
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


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """A definition check: does GPTQ compute gradients, and is its result driven by the Hessian instead?"""
    out = VerdictOf(Kind.DEFINITION, primary_text(metrics))
    control = metrics["probe_control"]
    grads = metrics["gradients"]
    h = metrics["hessian"]
    if control["backward_calls"] + control["grad_calls"] == 0 or control["saved_for_backward"] == 0:
        return out.branch(Label.INCONCLUSIVE, "C15.verdict.blind_probe")
    used = grads["backward_calls"] + grads["grad_calls"] + grads["saved_for_backward"]
    ppl = metrics.get("ppl_gptq_vs_rtn") or {}
    ppl_list = ppl_texts(ppl)
    ppl_text = Msg("C15.reason.ppl_all", items=ppl_list) if ppl_list else empty()
    if used > 0:
        return out.branch(
            Label.SUPPORTED,
            "C15.verdict.gradients",
            backward=grads["backward_calls"],
            grad=grads["grad_calls"],
            saved=grads["saved_for_backward"],
        )
    depends = h["codes_differ_from_rtn_frac"] > 0 and h["codes_differ_between_calibration_sets_frac"] > 0
    ratio = h.get("error_ratio_gptq_vs_rtn")
    if depends and h["identity_equals_rtn"] and ratio is not None and ratio < 1.0:
        return out.branch(
            Label.NOT_SUPPORTED,
            "C15.verdict.hessian",
            changed=100 * h["codes_differ_from_rtn_frac"],
            ratio=ratio,
            ppl=ppl_text,
        )
    failed = [
        Msg(f"C15.reason.failed.{name}")
        for ok, name in (
            (h["codes_differ_from_rtn_frac"] > 0, "equals_rtn"),
            (h["codes_differ_between_calibration_sets_frac"] > 0, "calibration_unused"),
            (bool(h["identity_equals_rtn"]), "identity_not_rtn"),
            (ratio is not None and ratio < 1.0, "no_lower_error"),
        )
        if not ok
    ]
    return out.branch(Label.INCONCLUSIVE, "C15.verdict.no_hessian_evidence", failed=failed, ppl=ppl_text)
