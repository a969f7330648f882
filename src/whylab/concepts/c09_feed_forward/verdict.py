"""C09's decision: from the traced structure and the bench ablations to metrics, and to a verdict.

Pure: numbers in, label and texts out (no torch, no files). Decided on the library models (a
definition check); the bench ablations are reported with it. Thresholds are in ``claim.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from whylab.concepts import _bench_stats as stats
from whylab.concepts.c09_feed_forward.claim_parts import build_parts
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.verdict import Kind, Label, PairedTest, Verdict, VerdictOf, effect, paired_test

CLAIM_ID = "C09"
SPEC = load_spec(CLAIM_ID)
NO_FFN = "no FFN"  # the ablation variant without a feed-forward block


def _num(value: Any) -> float:
    """A per-seed number back from JSON: None (a NaN, i.e. a run that blew up) becomes nan."""
    return math.nan if value is None else float(value)


def _ablation(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant (the baseline first): the loss over seeds, its parameter counts, and the
    paired test against the baseline when every run finished."""
    variants = list(per_seed[0]["variants"])
    baseline = variants[0]
    base_losses = [_num(r["variants"][baseline]["loss"]) for r in per_seed]
    ablation: dict[str, Any] = {}
    for name in variants:
        first = per_seed[0]["variants"][name]
        losses = [_num(r["variants"][name]["loss"]) for r in per_seed]
        entry: dict[str, Any] = {
            "loss": stats.summary(losses),
            "params": first["params"],
            "ffn_params": first["ffn_params"],
            "ffn_share": first["ffn_share"],
            "ffn_share_non_embedding": first["ffn_share_non_embedding"],
        }
        if name != baseline and all(math.isfinite(v) for v in losses + base_losses):
            entry["paired_minus_baseline"] = paired_test(losses, base_losses).to_dict()
        ablation[name] = entry
    return ablation


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    structure = [
        {**r, "residual_check_error": float(r["residual_check_error"])} for r in measured.whole["structure"]
    ]
    return {
        "structure": structure,
        "parameter_shares": measured.whole["parameter_shares"],
        "ablation": _ablation(measured.per_seed),
        "baseline": next(iter(measured.per_seed[0]["variants"])),
        "no_ffn": NO_FFN,
        "steps": int(s["steps"] or s["train"]["steps"]),
        "min_effect": float(s["min_effect"]),
        "residual_tolerance": float(s["residual_tolerance"]),
    }


def paired(a: Mapping[str, Any], b: Mapping[str, Any]) -> PairedTest | None:
    """Paired test of two :func:`stats.summary` entries seed by seed; None when a run failed."""
    va, vb = a.get("values", []), b.get("values", [])
    if len(va) != len(vb) or len(va) < 2 or any(v is None for v in [*va, *vb]):
        return None
    return paired_test([float(v) for v in va], [float(v) for v in vb])


def full_ffn(row: Mapping[str, Any]) -> bool:
    """The traced path has the linear layers an FFN needs."""
    return int(row["linear"]) >= int(SPEC.threshold("min_linear_layers"))


def _ablation_text(metrics: Mapping[str, Any]) -> tuple[Msg, tuple[Msg, ...]]:
    """What removing the FFN does on the bench model (illustration), and what this run could not judge."""
    abl = metrics["ablation"]
    base, none = abl[metrics["baseline"]], abl.get(metrics["no_ffn"])
    if none is None:
        return empty(), ()
    test = paired(none["loss"], base["loss"])  # no FFN - baseline, per seed
    losses = Msg("C09.reason.losses", no_ffn=stats.fmt(none["loss"], 4), baseline=stats.fmt(base["loss"], 4))
    if test is None:
        return empty(), (Msg("C09.limited.ablation_failed", losses=losses),)
    eff = effect(test, float(metrics["min_effect"]))
    diff = Msg("C09.reason.paired", diff=test.mean_diff, p=test.p, n=test.n)
    if eff > 0:
        return Msg("C09.reason.no_ffn_raises", losses=losses, paired=diff), ()
    if eff < 0:
        return Msg("C09.reason.no_ffn_lowers", losses=losses, paired=diff), ()
    return empty(), (
        Msg(
            "C09.limited.ablation_unclear",
            steps=metrics["steps"],
            losses=losses,
            paired=diff,
            min_effect=float(metrics["min_effect"]),
        ),
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """One part per component the notes name (``claim_parts``). The label: an FFN without two
    linear layers or an activation: not supported; a norm placement the residual check cannot
    confirm: inconclusive; all four in every library FFN module (the reading the notes mean, see
    ``claim_parts``): supported; otherwise partly supported. Decided on the library models; the
    bench ablations are reported with it."""
    rows = metrics["structure"]
    n = len(rows)
    tol = float(metrics["residual_tolerance"])
    min_act = int(SPEC.threshold("min_activations"))
    ffn_matters, limited = _ablation_text(metrics) if n else (empty(), ())
    part = SPEC.part("ffn_parts")
    assert part.primary is not None
    out = VerdictOf(Kind.DEFINITION, Msg(part.primary.text), list(limited))
    out.parts.extend(build_parts(CLAIM_ID, rows, int(SPEC.threshold("min_linear_layers")), min_act))
    if n == 0:
        return out.branch(Label.INCONCLUSIVE, "C09.verdict.no_models")
    unverified = [
        r["model"]
        for r in rows
        if r["norm_position"] == "none" or not (float(r["residual_check_error"]) <= tol)
    ]
    with_linear = sum(1 for r in rows if full_ffn(r))
    with_act = sum(1 for r in rows if r["activation"] >= min_act)
    with_dropout = sum(1 for r in rows if r["dropout"] >= 1)
    norm_inside = sum(1 for r in rows if r["norm_between_linears"])
    norm_module = sum(1 for r in rows if r.get("norm_in_library_ffn_module", False))
    parts = Msg(
        "C09.reason.parts",
        n=n,
        with_linear=with_linear,
        with_act=with_act,
        with_dropout=with_dropout,
        norm_inside=norm_inside,
        norm_module=norm_module,
    )
    common = {"parts": parts, "ffn_matters": ffn_matters, "n": n}
    if with_linear < n or with_act < n:
        lacking = [r["model"] for r in rows if not full_ffn(r) or r["activation"] < min_act]
        return out.branch(Label.NOT_SUPPORTED, "C09.verdict.not_supported", lacking=lacking, **common)
    if unverified and norm_module < n:
        return out.branch(Label.INCONCLUSIVE, "C09.verdict.unverified", unverified=unverified, **common)
    if norm_module == n and with_dropout == n:
        return out.branch(Label.SUPPORTED, "C09.verdict.supported", **common)
    if norm_module == n:
        # every library FFN module holds a norm, but some FFN has no dropout
        return out.branch(Label.PARTLY, "C09.verdict.partly_no_dropout", with_dropout=with_dropout, **common)
    without = [r["model"] for r in rows if not r.get("norm_in_library_ffn_module", False)]
    return out.branch(
        Label.PARTLY, "C09.verdict.partly", with_dropout=with_dropout, without_norm=without, **common
    )
