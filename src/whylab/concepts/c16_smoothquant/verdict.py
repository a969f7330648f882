"""C16's decision: from the seeds' perplexities to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). ``equivalence_tolerance`` and
``ppl_gain_pct_min`` are settings only the decision reads (``claim.yaml`` decision_settings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from whylab.concepts.c16_smoothquant.parts import parts
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.verdict import (
    Kind,
    Label,
    PairedTest,
    Spread,
    Verdict,
    VerdictOf,
    effect,
    equivalent,
    paired_test,
)

CLAIM_ID = "C16"
SPEC = load_spec(CLAIM_ID)


def model_text(cond: str) -> str:
    """'model as given' / 'model with outlier channels trained in', as a message."""
    return Msg(f"C16.condition.{cond}")


def primary_condition(cfg: Mapping[str, Any]) -> str:
    """The model that decides: the one with trained-in outliers, unless that condition is off."""
    return "outliers" if int(cfg["outlier_channels"]) > 0 else "trained"


def sweep_rows(per_seed: Sequence[Mapping[str, Any]], cond: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rec in per_seed:
        r = rec["conditions"][cond]
        rows.append(
            {"seed": rec["seed"], "scheme": "-", "variant": "FP32", "alpha": None, "valid_ppl": r["ppl_fp32"]}
        )
        for scheme, value in r["naive"].items():
            rows.append(
                {
                    "seed": rec["seed"],
                    "scheme": scheme,
                    "variant": "W8A8 naive",
                    "alpha": None,
                    "valid_ppl": value,
                }
            )
        for scheme, by_alpha in r["smooth"].items():
            for alpha, value in by_alpha.items():
                rows.append(
                    {
                        "seed": rec["seed"],
                        "scheme": scheme,
                        "variant": "W8A8 SmoothQuant",
                        "alpha": float(alpha),
                        "valid_ppl": value,
                    }
                )
    return rows


def _best_alpha(rows: Sequence[Mapping[str, Any]], scheme: str, alphas: Sequence[float]) -> float:
    """The α with the lowest mean smoothed perplexity over seeds (shown, never used to decide)."""

    def mean_ppl(a: float) -> float:
        vals = [r["valid_ppl"] for r in rows if r["scheme"] == scheme and r["alpha"] == a]
        return Spread.of(vals).mean if vals else math.inf

    return min(alphas, key=mean_ppl)


def _condition(recs: Sequence[Mapping[str, Any]], schemes: Sequence[str], ref: str) -> dict[str, Any]:
    """One model's per-seed numbers at alpha_ref: perplexities, changes vs FP32, outlier ratios."""
    fp32 = [r["ppl_fp32"] for r in recs]
    naive = {s: [r["naive"][s] for r in recs] for s in schemes}
    smooth = {s: [r["smooth"][s][ref] for r in recs] for s in schemes}
    return {
        "ppl_fp32": fp32,
        "ppl_naive": naive,
        "ppl_smooth_ref": smooth,
        "naive_change_pct": {
            s: [100 * (n / f - 1) for n, f in zip(naive[s], fp32, strict=True)] for s in schemes
        },
        "smooth_change_pct": {
            s: [100 * (m / f - 1) for m, f in zip(smooth[s], fp32, strict=True)] for s in schemes
        },
        "outlier_ratio_before": [r["outlier_ratio_before"] for r in recs],
        "outlier_ratio_after": [r["outlier_ratio_after"] for r in recs],
        "equivalence_diff": [r["equivalence_diff"] for r in recs],
    }


def ratio_rows(per_seed: Sequence[Mapping[str, Any]], cond: str) -> list[dict[str, Any]]:
    """One model's outlier ratios per seed and smoothed input."""
    return [{"seed": rec["seed"], **row} for rec in per_seed for row in rec["conditions"][cond]["ratio_rows"]]


def summarize(measured: Measured) -> dict[str, Any]:
    cfg, per_seed = measured.settings, measured.per_seed
    schemes, vs, ref = list(cfg["act_schemes"]), cfg["verdict_scheme"], str(float(cfg["alpha_ref"]))
    alphas = [float(a) for a in cfg["alphas"]]
    info = per_seed[0]["info"]
    conds = list(per_seed[0]["conditions"])
    per = {c: _condition([rec["conditions"][c] for rec in per_seed], schemes, ref) for c in conds}
    primary = primary_condition(cfg)
    p = per[primary]
    test = paired_test(p["naive_change_pct"][vs], p["smooth_change_pct"][vs])
    sweep = sweep_rows(per_seed, primary)
    by_kind = pd.DataFrame(ratio_rows(per_seed, "trained")).groupby("kind")["before"].mean()
    return {
        "conditions": per,
        "primary_condition": primary,
        "primary_test": test.to_dict(),
        "outlier_ratio_before_by_kind": {str(k): float(v) for k, v in by_kind.items()},
        "best_alpha_on_validation": {s: _best_alpha(sweep, s, alphas) for s in schemes},
        "verdict_scheme": vs,
        "act_schemes": schemes,
        "alphas": alphas,
        "alpha_ref": float(cfg["alpha_ref"]),
        "outlier_channels": per_seed[0].get("outlier_channels", []),
        "outlier_scale": float(cfg["outlier_scale"]),
        "outlier_train_steps": int(cfg["outlier_train_steps"]),
        "outlier_train_final_loss": [
            rec["outlier_train_losses"][-1] for rec in per_seed if "outlier_train_losses" in rec
        ],
        "equivalence_max_abs_logit_diff": max(max(c["equivalence_diff"]) for c in per.values()),
        "equivalence_tolerance": float(cfg["equivalence_tolerance"]),
        "ppl_gain_pct_min": float(cfg["ppl_gain_pct_min"]),
        "activation_swap": measured.whole.get("activation_swap"),
        "activation_swap_llmcompressor": measured.whole.get("activation_swap_llmcompressor"),
        "seeds": [rec["seed"] for rec in per_seed],
        "model_parameters": int(info["model_parameters"]),
        "smoothed_inputs_per_layer": len(cfg["groups"]),
        "smoothed_inputs_fed_by_activation_function_per_layer": int("mlp_down" in cfg["groups"]),
        "calibration_blocks": info["calibration_blocks"],
        "valid_blocks": int(cfg["measure"]["eval_blocks"]),
        "block_size": info["block_size"],
        "eval_languages": info["languages"],
    }


def model_summary(m: Mapping[str, Any], cond: str) -> dict[str, Any]:
    """The numbers of one model at the verdict scheme and alpha_ref (means over seeds)."""
    c = m["conditions"][cond]
    vs = m["verdict_scheme"]
    naive, smooth = Spread.of(c["naive_change_pct"][vs]).mean, Spread.of(c["smooth_change_pct"][vs]).mean
    before, after = Spread.of(c["outlier_ratio_before"]).mean, Spread.of(c["outlier_ratio_after"]).mean
    return {
        "naive_loss_pct": naive,
        "smooth_loss_pct": smooth,
        "ratio_before": before,
        "ratio_after": after,
        "text": Msg(
            "C16.reason.summary",
            model=model_text(cond),
            before=before,
            after=after,
            vs=vs,
            naive=naive,
            smooth=smooth,
            n=len(c["ppl_fp32"]),
        ),
    }


def primary_text(m: Mapping[str, Any]) -> str:
    cond = m["primary_condition"]
    n = len(m["conditions"][cond]["ppl_fp32"])
    how = (
        Msg(
            "C16.reason.how_outliers",
            channels=str(m["outlier_channels"]),
            scale=float(m["outlier_scale"]),
            steps=m["outlier_train_steps"],
        )
        if cond == "outliers"
        else Msg("C16.reason.how_given")
    )
    return Msg(
        "C16.primary",
        vs=m["verdict_scheme"],
        alpha=float(m["alpha_ref"]),
        model_parameters=int(m["model_parameters"]),
        model=model_text(cond),
        how=how,
        n=n,
        draw=Msg("C16.reason.draw_and_finetune" if cond == "outliers" else "C16.reason.draw"),
        min_gain=float(m["ppl_gain_pct_min"]),
    )


def _paired(d: Mapping[str, Any]) -> PairedTest:
    """The stored paired test (JSON turns nan into null)."""

    def num(key: str) -> float:
        v = d.get(key)
        return math.nan if v is None else float(v)

    return PairedTest(
        int(d["n"]), num("mean_diff"), num("sd_diff"), num("t"), num("p"), num("ci_low"), num("ci_high")
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Exactness first; then the one primary comparison (paired over seeds); the notes' wording always."""
    out = VerdictOf(Kind.EXPERIMENT, primary_text(metrics))
    out.parts.extend(parts(metrics))
    tol = float(metrics["equivalence_tolerance"])
    diff = float(metrics["equivalence_max_abs_logit_diff"])
    if not diff <= tol:
        return out.branch(Label.INCONCLUSIVE, "C16.verdict.not_exact", diff=diff, tol=tol)
    cond = metrics["primary_condition"]
    summary = model_summary(metrics, cond)
    natural: Msg = empty()
    kinds = metrics.get("outlier_ratio_before_by_kind") or {}
    if "mlp_down" in kinds and len(kinds) > 1:
        others = max(v for k, v in kinds.items() if k != "mlp_down")
        if kinds["mlp_down"] > others:
            natural = Msg("C16.reason.natural_outliers", down=kinds["mlp_down"], others=others)
    wording = Msg("C16.reason.wording", natural=natural)
    min_gain = float(metrics["ppl_gain_pct_min"])
    test = _paired(metrics["primary_test"])
    gain = Msg("C16.reason.gain", mean=test.mean_diff, low=test.ci_low, high=test.ci_high, p=test.p)
    # every branch's texts draw on these (each template uses the ones it needs)
    params: dict[str, Any] = {
        "summary": summary["text"],
        "gain": gain,
        "wording": wording,
        "n": test.n,
        "gain_points": test.mean_diff,
        "naive": summary["naive_loss_pct"],
        "smooth": summary["smooth_loss_pct"],
        "before": summary["ratio_before"],
        "after": summary["ratio_after"],
        "vs": metrics["verdict_scheme"],
        "alpha": float(metrics["alpha_ref"]),
    }
    if summary["naive_loss_pct"] < min_gain:
        return out.branch(Label.INCONCLUSIVE, "C16.verdict.nothing_to_fix", **params)
    outcome = effect(test, min_gain)
    if outcome > 0:
        return out.branch(Label.PARTLY, "C16.verdict.wins_back", **params)
    if outcome < 0 or equivalent(test, min_gain):
        return out.branch(Label.NOT_SUPPORTED, "C16.verdict.no_gain", **params)
    return out.branch(Label.INCONCLUSIVE, "C16.verdict.within_noise", **params)
