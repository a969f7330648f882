"""C18's decision: from the measured steps (and the calculator on the notes' models) to metrics,
and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
the tolerance is the claim's ``tolerance`` setting (a decision setting).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

import numpy as np

from whylab.concepts.c18_training_memory.parts import build_parts
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.errors import InputError
from whylab.memory import calculator as calc
from whylab.memory import planner
from whylab.memory.presets import PRESETS
from whylab.messages import Msg, empty
from whylab.parts import PartVerdict, combine
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C18"
SPEC = load_spec(CLAIM_ID)


def notes_model_rows(points: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The validated calculator on the notes' models: mixed-precision (bf16) AdamW fine-tuning, sdpa attention.

    Per point: the exact terms, the notes' formula (as written and with its factors added per parameter)
    and activations / weight bytes, the quantity the notes put at 20–30%.
    """
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for pt in points:
        name, batch, seq = str(pt["model"]), int(pt["batch"]), int(pt["seq"])
        attention = str(pt.get("attention", "sdpa"))
        cfg = PRESETS[name]
        try:
            plan = planner.plan(cfg, planner.Setup(batch=batch, seq=seq, attention=attention), name)
        except InputError as exc:
            skipped.append(Msg("C18.skipped.notes_model", name=name, batch=batch, seq=seq, error=str(exc)))
            continue
        c = plan.components
        n = plan.params
        literal = calc.notes_training_bytes(n, "bf16", "adamw", 0.25, "literal")
        additive = calc.notes_training_bytes(n, "bf16", "adamw", 0.25, "additive")
        rows.append(
            {
                "model": name,
                "batch": batch,
                "seq": seq,
                "attention": attention,
                "params": n,
                "weights": c["weights"],
                "master": c["master copy"],
                "gradients": c["gradients"],
                "optimizer": c["optimizer state"],
                "activations": c["activations"],
                "logits": c["logits"],
                "peak": plan.peak,
                "activation_over_model": c["activations"] / c["weights"],
                "model_state_bytes_per_param": (
                    c["weights"] + c["master copy"] + c["gradients"] + c["optimizer state"]
                )
                / n,
                "notes_literal": literal,
                "notes_additive": additive,
                "notes_literal_rel_err": (literal - plan.peak) / plan.peak,
                "notes_additive_rel_err": (additive - plan.peak) / plan.peak,
            }
        )
    return rows, skipped


def plan_rows(entries: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The planner's answer for each ``memory.plan`` entry (GiB per component, fits on 24/40/80 GB)."""
    out = []
    for e in entries:
        name = str(e["model"])
        setup = planner.Setup(
            batch=int(e.get("batch", 1)),
            seq=int(e.get("seq", 512)),
            dtype=str(e.get("dtype", "bf16")),
            optimizer=str(e.get("optimizer", "adamw")),
            checkpointing=bool(e.get("checkpointing", False)),
            lora=int(e.get("lora", 0)),
            qlora=bool(e.get("qlora", False)),
            offload=str(e.get("offload", "none")),
        )
        p = planner.plan(PRESETS[name], setup, name)
        trick = ", ".join(
            t
            for t in (
                f"LoRA r={setup.lora}" if setup.lora and not setup.qlora else "",
                f"QLoRA r={setup.lora}" if setup.qlora else "",
                "checkpointing" if setup.checkpointing else "",
                f"offload {setup.offload}" if setup.offload != "none" else "",
                setup.optimizer if setup.optimizer != "adamw" else "",
            )
            if t
        )
        out.append(
            {
                "label": f"{name} b{setup.batch}×{setup.seq} {setup.dtype}"
                + (f" + {trick}" if trick else ""),
                "model": name,
                "params": p.params,
                "components": p.components,
                "host": p.host,
                "peak": p.peak,
                "fits": p.fits,
                "accelerate_total": p.accelerate["total_size"],
                "accelerate_training": p.accelerate["training_using_adam"],
            }
        )
    return out


def rss_rows(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The RSS check's points with their spread and their ratio to the tracked growth."""
    out = []
    for r in raw:
        spread = Spread.of(r["rss_peak_deltas"])
        out.append(
            {
                "batch": r["batch"],
                "seq": r["seq"],
                "rss_peak_delta_mean": spread.mean,
                "rss_peak_delta_std": spread.std,
                "n": spread.n,
                "tracked_step_delta": r["tracked_step_delta"],
                "rss_over_tracked": spread.mean / r["tracked_step_delta"],
            }
        )
    return out


def summarize(measured: Measured) -> dict[str, Any]:
    s, w = measured.settings, measured.whole
    shape = calc.LlamaShape.from_model_cfg(s["model"])
    notes_rows, _skipped = notes_model_rows(list(s["notes_models"]))
    metrics = _metrics(
        s, shape, w["grid"], w["per_optimizer"], rss_rows(w["rss"]), w["rss_noise_floor_bytes"]
    )
    metrics.update(_notes_metrics(notes_rows))
    metrics["plan"] = plan_rows(list(s.get("plan", [])))
    metrics["peak_example"] = peak_example(notes_rows)
    ada = {
        ("beta1" if r["beta1"] else "no_beta1"): r["bytes_per_param"]
        for r in w.get("adafactor_real_shape", [])
    }
    if ada:
        first = w["adafactor_real_shape"][0]
        ada.update(shapes=first["shapes"], params=first["params"])
    metrics["adafactor_real_shape"] = ada or None
    return metrics


def peak_example(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where the planner's peak sits for the largest notes' model at its smallest batch and longest
    sequence: the optimizer step (weights, master, gradients, state) or the start of backward
    (weights, master, state, activations, logits), with the activations gradient checkpointing leaves."""
    if not rows:
        return None
    r = min(rows, key=lambda x: (-x["params"], x["batch"], -x["seq"]))
    setup = planner.Setup(batch=r["batch"], seq=r["seq"], attention=r["attention"])
    plain = planner.plan(PRESETS[r["model"]], setup, r["model"])
    ckpt = planner.plan(
        PRESETS[r["model"]],
        planner.Setup(batch=r["batch"], seq=r["seq"], attention=r["attention"], checkpointing=True),
        r["model"],
    )
    c = plain.components
    step = c["weights"] + c["master copy"] + c["gradients"] + c["optimizer state"] + c["buffers"]
    gib = 2**30
    return {
        "model": r["model"],
        "batch": r["batch"],
        "seq": r["seq"],
        "peak": plain.peak / gib,
        "step": step / gib,
        "backward": (step - c["gradients"] + c["activations"] + c["logits"]) / gib,
        "activations": c["activations"] / gib,
        "activations_ckpt": ckpt.components["activations"] / gib,
        "peak_ckpt": ckpt.peak / gib,
    }


def _fit_korthikanti(grid: list[dict[str, Any]], shape: calc.LlamaShape) -> dict[str, float]:
    """Per-layer activation bytes / (s·b·h) = c0 + c1·(a·s/h), fitted over the grid (Korthikanti's form)."""
    xs, ys = [], []
    for g in grid:
        head = calc.llama_head_activation_bytes(shape, g["batch"], g["seq"], 4)
        per_layer = (g["saved_activations"] - head) / shape.layers
        xs.append(shape.heads * g["seq"] / shape.hidden)
        ys.append(per_layer / (g["seq"] * g["batch"] * shape.hidden))
    if len(set(xs)) < 2:
        return {"c0": math.nan, "c1": math.nan, "max_residual": math.nan}
    c1, c0 = np.polyfit(xs, ys, 1)
    resid = max(abs(y - (c0 + c1 * x)) / y for x, y in zip(xs, ys, strict=True))
    return {"c0": float(c0), "c1": float(c1), "max_residual": float(resid)}


def _metrics(
    s: Mapping[str, Any],
    shape: calc.LlamaShape,
    grid: list[dict[str, Any]],
    per_opt: list[dict[str, Any]],
    rss_rows: list[dict[str, Any]],
    noise: list[int],
) -> dict[str, Any]:
    rows = grid + per_opt
    by_opt = {r["optimizer"]: r for r in per_opt}
    fractions = [g["activation_over_model"] for g in grid]
    # activations ∝ batch: A(b, s) / (b · A(1, s)) for the smallest batch as the unit
    b0 = min(s["batch_sizes"])
    batch_dev = []
    for g in grid:
        base = next(x for x in grid if x["batch"] == b0 and x["seq"] == g["seq"])
        batch_dev.append(abs(g["saved_activations"] * b0 / (base["saved_activations"] * g["batch"]) - 1))
    seq_exp = []
    for b in s["batch_sizes"]:
        pts = sorted((g["seq"], g["saved_activations"]) for g in grid if g["batch"] == b)
        if len(pts) >= 2:
            seq_exp.append(math.log(pts[-1][1] / pts[0][1]) / math.log(pts[-1][0] / pts[0][0]))
    return {
        "grid": grid,
        "per_optimizer": per_opt,
        "rss": rss_rows,
        "rss_noise_floor_bytes": noise,
        "params": grid[0]["params"],
        "exact_max_abs_rel_err": max(abs(r["exact_rel_err"]) for r in rows),
        "sum_of_terms_median_rel_err": statistics.median(r["sum_rel_err"] for r in rows),
        # over the AdamW FP32 grid only: the rows the formula's Adam factor is about
        "small_notes_literal_median_rel_err": statistics.median(r["notes_literal_rel_err"] for r in grid),
        # the sign varies over the grid: the size of the error, and its range
        "small_notes_literal_median_abs_rel_err": statistics.median(
            abs(r["notes_literal_rel_err"]) for r in grid
        ),
        "small_notes_literal_rel_err_min": min(r["notes_literal_rel_err"] for r in grid),
        "small_notes_literal_rel_err_max": max(r["notes_literal_rel_err"] for r in grid),
        "small_notes_additive_median_abs_rel_err": statistics.median(
            abs(r["notes_additive_rel_err"]) for r in grid
        ),
        "small_activation_fraction_min": min(fractions),
        "small_activation_fraction_max": max(fractions),
        "activation_batch_proportionality_max_dev": max(batch_dev),
        "activation_seq_exponent": statistics.fmean(seq_exp) if seq_exp else None,
        "adam_state_bytes_per_param": by_opt.get("adamw", by_opt.get("adam", {})).get(
            "optimizer_bytes_per_param"
        ),
        "sgd_state_bytes_per_param": by_opt.get("sgd", {}).get("optimizer_bytes_per_param"),
        "sgd_momentum_state_bytes_per_param": by_opt.get("sgd_momentum", {}).get("optimizer_bytes_per_param"),
        "adafactor_state_bytes_per_param": by_opt.get("adafactor", {}).get("optimizer_bytes_per_param"),
        "fp32_gradient_bytes_per_param": by_opt.get("adamw", per_opt[0])["gradient_bytes_per_param"],
        "mixed_model_state_bytes_per_param": by_opt.get("mixed_adamw", {}).get("model_state_bytes_per_param"),
        "mixed_gradient_bytes_per_param": by_opt.get("mixed_adamw", {}).get("gradient_bytes_per_param"),
        "korthikanti_fit": _fit_korthikanti(grid, shape),
        # a·s/h at the longest measured sequence: how much room the s² attention term had to show
        "attention_x_max": shape.heads * max(s["seq_lens"]) / shape.hidden,
        "rss_over_tracked_max_dev": max((abs(r["rss_over_tracked"] - 1) for r in rss_rows), default=None),
        "tolerance": float(s["tolerance"]),
        # CUDA: points share one process; the allocator's leftover before each point (bytes beyond the
        # model's own tensors: library workspaces and what earlier points left) is measured and bounded here
        "cuda_allocator_leftover_max": max((r["allocator_overhead"] for r in rows), default=0),
        "cuda_reserved_peak_max": max((r["reserved_peak"] or 0 for r in rows), default=0) or None,
        "cuda_context_bytes": next(
            (r["cuda_context"] for r in rows if r.get("cuda_context") is not None), None
        ),
    }


def _notes_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The primary numbers: the notes' formula and activation band on the notes' models."""
    lo, hi = calc.NOTES_ACTIVATION_FRACTION
    if not rows:
        return {"notes_models": [], "activation_fraction_share_in_notes_band": None}
    fr = [r["activation_over_model"] for r in rows]
    return {
        "notes_models": rows,
        "notes_literal_median_rel_err": statistics.median(r["notes_literal_rel_err"] for r in rows),
        "notes_literal_median_abs_rel_err": statistics.median(abs(r["notes_literal_rel_err"]) for r in rows),
        "notes_literal_rel_err_min": min(r["notes_literal_rel_err"] for r in rows),
        "notes_literal_rel_err_max": max(r["notes_literal_rel_err"] for r in rows),
        "notes_additive_median_abs_rel_err": statistics.median(
            abs(r["notes_additive_rel_err"]) for r in rows
        ),
        "activation_fraction_min": min(fr),
        "activation_fraction_max": max(fr),
        "activation_fraction_share_in_notes_band": sum(lo <= f <= hi for f in fr) / len(fr),
        "notes_models_state_bytes_per_param": statistics.median(
            r["model_state_bytes_per_param"] for r in rows
        ),
        "notes_points": len(rows),
    }


def _line(part: PartVerdict) -> Msg | str:
    """A line of the notes' block as the reason lists it; AdaFactor's with or without β₁."""
    which = {"adafactor_no_beta1": "C18.reason.without_beta1", "adafactor_beta1": "C18.reason.with_beta1"}
    return Msg(which[part.id], words=part.words) if part.id in which else part.words


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """The claim's label combines its parts' run labels (:func:`whylab.parts.combine`): each line of
    the notes' block is judged on its own, so any mix, all supported or all not supported, can come
    out; a calculator that misses the measured steps, or no notes' model, leaves it undecided."""
    tol = metrics["tolerance"]
    exact = metrics["exact_max_abs_rel_err"]
    part = SPEC.part("formula")
    assert part.primary is not None
    out = VerdictOf(Kind.EXPERIMENT, primary=Msg(part.primary.text, n=metrics.get("notes_points", 0)))
    if exact > tol:
        return out.branch(Label.INCONCLUSIVE, "C18.verdict.calculator_off", exact=exact, tol_pct=100 * tol)
    if not metrics.get("notes_models"):
        out.limited.append(Msg("C18.limited.notes_models"))
        return out.branch(Label.INCONCLUSIVE, "C18.verdict.no_notes_models")
    parts = build_parts(metrics)
    out.parts.extend(parts)
    label = combine([p.run for p in parts])
    ada = metrics.get("adafactor_real_shape") or {}
    mixed = metrics.get("mixed_model_state_bytes_per_param")
    facts = Msg(
        "C18.reason.facts",
        n=metrics.get("notes_points", 0),
        abs_median=metrics["notes_literal_median_abs_rel_err"],
        err_lo=metrics["notes_literal_rel_err_min"],
        err_hi=metrics["notes_literal_rel_err_max"],
        lo=metrics["activation_fraction_min"],
        hi=metrics["activation_fraction_max"],
        omitted=Msg("C18.reason.omitted_measured", mixed=mixed)
        if mixed is not None
        else Msg("C18.reason.omitted"),
        adafactor=Msg("C18.reason.adafactor", none=ada["no_beta1"], beta1=ada["beta1"])
        if "no_beta1" in ada and "beta1" in ada
        else Msg("C18.reason.adafactor_missing"),
    )
    small = metrics.get("small_notes_literal_median_abs_rel_err")
    validated = Msg(
        "C18.reason.validated",
        exact=exact,
        params=metrics.get("params", 0),
        small_part=Msg(
            "C18.reason.validated_small",
            small=small,
            lo=metrics["small_notes_literal_rel_err_min"],
            hi=metrics["small_notes_literal_rel_err_max"],
        )
        if small is not None
        else empty(),
    )
    held = [_line(p) for p in parts if p.run is Label.SUPPORTED]
    failed = [_line(p) for p in parts if p.run is Label.NOT_SUPPORTED]
    common = {"facts": facts, "validated": validated, "held": held or ["-"], "failed": failed or ["-"]}
    # the activation band part is decided whenever a notes' model was computed, so label is decisive
    key = {Label.SUPPORTED: "C18.verdict.supported", Label.NOT_SUPPORTED: "C18.verdict.not_supported"}.get(
        label, "C18.verdict.partly"
    )
    return out.branch(label, key, **common)
