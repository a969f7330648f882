"""C17's decision: from the counts and the loaded formats to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
the tolerances are the claim's settings (decision settings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from whylab.concepts.c17_model_memory import parts as c17_parts
from whylab.concepts.c17_model_memory.parts import build_parts
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.memory import calculator
from whylab.messages import Msg, empty
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C17"
SPEC = load_spec(CLAIM_ID)

# The notes' own numbers (GPU 메모리 계산방식): model name in the config -> (quoted params, {dtype: value}, unit)
NOTES_QUOTES: dict[str, tuple[float, dict[str, float], str]] = {
    "bert-base": (110e6, {"fp32": 440.0, "fp16": 220.0, "int8": 110.0}, "MB"),
    "gpt3-175b": (175e9, {"fp32": 700.0, "fp16": 350.0, "int8": 175.0, "int4": 87.5}, "GB"),
}
UNITS = {"MB": (calculator.MB, calculator.MiB, "MiB"), "GB": (calculator.GB, calculator.GiB, "GiB")}


def _rel(quoted: float, exact: float) -> float:
    return (quoted - exact) / exact


def notes_rows(counts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The notes' numbers against exact counts × bytes, in decimal and binary units."""
    exact = {row["model"]: row["meta"] for row in counts}
    rows = []
    for name, (_quoted_params, values, unit) in NOTES_QUOTES.items():
        if name not in exact:
            continue
        dec, binary, bunit = UNITS[unit]
        for dtype, quoted in values.items():
            nbytes = calculator.model_bytes(exact[name], dtype)
            rows.append(
                {
                    "model": name,
                    "dtype": dtype,
                    "notes": quoted,
                    "unit": unit,
                    "exact_decimal": nbytes / dec,
                    "exact_binary": nbytes / binary,
                    "binary_unit": bunit,
                    "rel_err_decimal": _rel(quoted, nbytes / dec),
                    "rel_err_if_binary": _rel(quoted, nbytes / binary),
                }
            )
    return rows


def format_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A loaded format's measured bytes as ratios to the nominal bytes per value."""
    params, lin, total = raw["params"], raw["linear_params"], raw["model_bytes"]
    per_value, layer_bytes = raw["nominal_bytes_per_value"], raw["layer_bytes"]
    rss = raw["rss_resident"]
    spread = Spread.of(rss) if rss else Spread(math.nan, math.nan, 0)
    return {
        **{k: raw[k] for k in ("nominal", "library", "packed", "description")},
        "nominal_bytes_per_value": per_value,
        "params": params,
        "linear_params": lin,
        "model_bytes": total,
        "model_nominal_bytes": params * per_value,
        "model_ratio": total / (params * per_value),
        "layer_bytes": layer_bytes,
        "layer_bytes_per_value": layer_bytes / lin if layer_bytes is not None else total / params,
        "layer_ratio": (layer_bytes / (lin * per_value))
        if layer_bytes is not None
        else total / (params * per_value),
        # embedding and norms: the formats leave them as they were (FP32)
        "unquantized_bytes": (params - lin) * 4 if layer_bytes is not None else 0,
        "rss_resident_mean": spread.mean,
        "rss_resident_std": spread.std,
        "rss_n": spread.n,
        "rss_over_tensor_bytes": spread.mean / total if total else math.nan,
    }


def whole_at_scale(counts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per counted architecture, a whole model's bytes over parameters × nominal bytes in INT8 and
    INT4 when its Linear weights are quantized and everything else (embeddings, norms, biases, the
    output head) stays in 16-bit floats, as weight-only quantizers leave them: the rule at the
    notes' scale, from exact counts (no weights)."""
    rows = []
    for c in counts:
        n, q = c.get("meta"), c.get("quantizable")
        if not n or q is None:
            continue
        rest = n - q
        rows.append(
            {
                "model": c["model"],
                "params": n,
                "quantizable": q,
                "share_outside": rest / n,
                **{fmt: (q * b + rest * 2) / (n * b) for fmt, b in (("int8", 1.0), ("int4", 0.5))},
            }
        )
    return rows


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    counts: list[dict[str, Any]] = measured.whole["counts"]
    nrows = notes_rows(counts)
    fmts = {k: format_row(v) for k, v in measured.whole["formats"].items()}
    floats = {k: v for k, v in fmts.items() if v["nominal"] in ("fp32", "fp16", "bf16")}
    quants = {k: v for k, v in fmts.items() if v["nominal"] in ("int8", "int4")}
    rss_dev = [abs(v["rss_over_tensor_bytes"] - 1) for v in fmts.values() if v["nominal"] == "fp32"]
    return {
        "counts": counts,
        "counts_match_meta": all(c["match"] for c in counts),
        "notes_rows": nrows,
        "notes_max_abs_rel_err_decimal": max((abs(r["rel_err_decimal"]) for r in nrows), default=None),
        "notes_max_abs_rel_err_if_binary": max((abs(r["rel_err_if_binary"]) for r in nrows), default=None),
        "formats": fmts,
        "float_max_abs_dev": max((abs(v["model_ratio"] - 1) for v in floats.values()), default=None),
        # "INT4 = 0.5 byte" is judged on packed formats (bitsandbytes NF4: two values per byte); a layout
        # that keeps one 4-bit value per byte (torchao's CPU int4) is reported as a property of that kernel
        "quant_layer_ratios": {k: v["layer_ratio"] for k, v in quants.items() if v.get("packed", True)},
        "unpacked_layer_ratios": {
            k: v["layer_ratio"] for k, v in quants.items() if not v.get("packed", True)
        },
        "quant_bits_per_weight": {k: 8 * v["layer_bytes_per_value"] for k, v in quants.items()},
        "quant_model_ratios": {k: v["model_ratio"] for k, v in quants.items()},
        "rss_fp32_abs_dev": max(rss_dev) if rss_dev else None,
        "whole_at_scale": whole_at_scale(counts),
        "tolerance_float": float(s["tolerance_float"]),
        "tolerance_quant": float(s["tolerance_quant"]),
        "tolerance_notes": float(s["tolerance_notes"]),
    }


def _unpacked_note(metrics: Mapping[str, Any]) -> Msg:
    unpacked = metrics.get("unpacked_layer_ratios") or {}
    bits = metrics.get("quant_bits_per_weight") or {}
    if not unpacked:
        return empty()
    parts = [
        Msg("C17.reason.unpacked_part", name=k, bits=bits.get(k, 8 * 0.5 * r), ratio=r)
        for k, r in unpacked.items()
    ]
    return Msg("C17.reason.unpacked", parts=parts)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    tol_f, tol_q, tol_n = metrics["tolerance_float"], metrics["tolerance_quant"], metrics["tolerance_notes"]
    float_dev = metrics.get("float_max_abs_dev")
    notes_err = metrics.get("notes_max_abs_rel_err_decimal")
    part = SPEC.part("model_memory")
    assert part.primary is not None
    out = VerdictOf(Kind.DEFINITION, primary=Msg(part.primary.text))
    out.parts.extend(build_parts(metrics))
    if float_dev is None or not metrics.get("counts_match_meta", False):
        return out.branch(Label.INCONCLUSIVE, "C17.verdict.unmeasured")
    if float_dev > tol_f:
        return out.branch(
            Label.NOT_SUPPORTED, "C17.verdict.float_bytes_differ", dev=float_dev, tol_pct=100 * tol_f
        )
    if notes_err is not None and notes_err > SPEC.threshold("notes_numbers_off"):
        return out.branch(Label.NOT_SUPPORTED, "C17.verdict.notes_numbers_off", notes_err=notes_err)
    quant = metrics.get("quant_layer_ratios", {})
    bits = metrics.get("quant_bits_per_weight") or {}
    bad = {k: r for k, r in quant.items() if abs(r - 1) > tol_q}
    extra = _unpacked_note(metrics)
    notes_part = (
        Msg("C17.reason.notes_within", notes_err=notes_err)
        if notes_err is not None
        else Msg("C17.reason.notes_not_counted")
    )
    common = {"float_dev": float_dev, "notes_part": notes_part, "extra": extra}
    if notes_err is not None and notes_err > tol_n:
        return out.branch(
            Label.PARTLY, "C17.verdict.notes_drift", **common, notes_err=notes_err, tol_pct=100 * tol_n
        )
    if not quant:
        out.limited.append(Msg("C17.limited.no_quantized"))
        return out.branch(Label.PARTLY, "C17.verdict.no_quantized", **common)
    if bad:
        worst = max(bad, key=lambda k: abs(bad[k] - 1))
        return out.branch(
            Label.PARTLY,
            "C17.verdict.quant_overhead",
            **common,
            worst=worst,
            ratio=bad[worst],
            tol_pct=100 * tol_q,
        )
    worst = max(quant, key=lambda k: abs(quant[k] - 1))
    packed = [Msg("C17.reason.packed_part", name=k, bits=bits[k]) for k in quant if k in bits]
    scale = c17_parts.scale_items(metrics, notes_only=True)
    if scale and next(p for p in out.parts if p.id == "model_memory").run in (
        Label.PARTLY,
        Label.NOT_SUPPORTED,
    ):
        # the layers follow the rule, a whole model of the notes' does not: its other parameters stay 16-bit
        return out.branch(
            Label.PARTLY,
            "C17.verdict.whole_models",
            **common,
            quant_dev=abs(quant[worst] - 1),
            packed=packed,
            scale=scale,
        )
    return out.branch(
        Label.SUPPORTED,
        "C17.verdict.supported",
        **common,
        quant_dev=abs(quant[worst] - 1),
        packed=packed,
    )
