"""C05's decision: from the synthetic rows and the training runs to metrics, and from the metrics
to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
the floor of the training comparisons is the config's ``min_loss_gain`` (a decision setting).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from whylab.concepts._bench_stats import describe, paired
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf, clearly_less

CLAIM_ID = "C05"
SPEC = load_spec(CLAIM_ID)
# what "the mechanism holds" needs, from the synthetic numbers
SLOPE_RANGE = tuple(float(v) for v in SPEC.threshold("slope_range"))
GRAD_SHRINK = float(SPEC.threshold("grad_shrink"))
SATURATED_SHARE = float(SPEC.threshold("saturated_share"))


def loglog_slope(x: Iterable[float], y: Iterable[float]) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(list(x), float)), np.log(np.asarray(list(y), float)), 1)[0])


def _spread(values: Iterable[Any]) -> dict[str, Any]:
    vals = [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
    ok = [v for v in vals if v is not None]
    if not ok:
        return {"mean": None, "std": None, "values": vals}
    sp = Spread.of(ok)
    return {"mean": sp.mean, "std": None if math.isnan(sp.std) else sp.std, "values": vals}


def summarise_training(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per d_k: final loss per scaling (mean, std, per seed in seed order)."""
    frame = pd.DataFrame(runs).sort_values("seed", kind="stable")
    out: dict[str, Any] = {}
    for _, group in frame.groupby("d_k"):
        per_scale = {
            scale: {
                "final_eval_loss": _spread(g["final_eval_loss"]),
                "grad_wq_init": _spread(g["grad_wq_init"]),
                "attention_entropy_init": _spread(g["attention_entropy_init"]),
                "attention_entropy_final": _spread(g["attention_entropy_final"]),
                "diverged": int(g["diverged"].sum()),
            }
            for scale, g in group.groupby("scaling")
        }
        out[str(int(group["d_k"].iloc[0]))] = {"heads": int(group["heads"].iloc[0]), "scalings": per_scale}
    return out


def training_runs(measured: Measured) -> list[dict[str, Any]]:
    """Every training run of every seed, in seed order."""
    return [run for r in measured.per_seed for run in r["runs"]]


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    dk = pd.DataFrame(measured.whole["synthetic_dk"])
    raw = dk[dk.scaling == "none"].sort_values("d_k")
    scaled = dk[dk.scaling == "sqrt_dk"].sort_values("d_k")
    heads = pd.DataFrame(measured.whole["synthetic_heads"])
    metrics: dict[str, Any] = {
        "n_keys": int(s["n_keys"]),
        "saturation_max_prob": float(s["saturation_max_prob"]),
        "synthetic": {
            "d_k": [int(v) for v in raw["d_k"]],
            "var_raw": list(raw["var_raw"]),
            "var_scaled": list(scaled["std_scaled"] ** 2),
            "var_slope": loglog_slope(raw["d_k"], raw["var_raw"]),
            "max_prob": {"none": list(raw["max_prob"]), "sqrt_dk": list(scaled["max_prob"])},
            "entropy_norm": {"none": list(raw["entropy_norm"]), "sqrt_dk": list(scaled["entropy_norm"])},
            "saturated_share": {
                "none": list(raw["saturated_share"]),
                "sqrt_dk": list(scaled["saturated_share"]),
            },
            "grad_logits": {"none": list(raw["grad_logits"]), "sqrt_dk": list(scaled["grad_logits"])},
            "grad_query": {"none": list(raw["grad_query"]), "sqrt_dk": list(scaled["grad_query"])},
        },
        "heads": {
            "d_model": int(s["heads_d_model"]),
            "heads": sorted({int(h) for h in heads["heads"]}),
            "score_var_scaled": {
                k: list(g.sort_values("heads")["score_var_scaled"]) for k, g in heads.groupby("scaling")
            },
            "entropy_norm": {
                k: list(g.sort_values("heads")["entropy_norm"]) for k, g in heads.groupby("scaling")
            },
        },
        "training": summarise_training(training_runs(measured)),
        "training_d_model": int(s["model"]["d_model"]),
        "n_seeds": len(measured.per_seed),
        "thresholds": {"min_loss_gain": float(s["min_loss_gain"])},
    }
    metrics["paired"] = paired_comparisons(metrics)
    return metrics


def mechanism(m: Mapping[str, Any]) -> tuple[bool, dict[str, float]]:
    """The synthetic part: variance ∝ d_k; at the largest d_k most unscaled softmax rows are
    saturated (few scaled ones are), and the gradient at the softmax input collapses."""
    syn = m["synthetic"]
    slope = float(syn["var_slope"])
    sat_raw = float(syn["saturated_share"]["none"][-1])
    sat_scaled = float(syn["saturated_share"]["sqrt_dk"][-1])
    grad_raw = float(syn["grad_logits"]["none"][-1])
    grad_scaled = float(syn["grad_logits"]["sqrt_dk"][-1])
    ratio = grad_raw / grad_scaled if grad_scaled > 0 else math.inf
    numbers = {
        "slope": slope,
        "saturated_raw": sat_raw,
        "saturated_scaled": sat_scaled,
        "grad_ratio": ratio,
        "d_k": float(syn["d_k"][-1]),
    }
    holds = (
        SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1]
        and sat_raw >= SATURATED_SHARE
        and sat_scaled < SATURATED_SHARE
        and ratio < GRAD_SHRINK
    )
    return holds, numbers


def paired_comparisons(m: Mapping[str, Any]) -> dict[str, Any]:
    """The two pre-registered training comparisons, paired by seed (same initial weights, same
    batches), each with the effect floor ``min_loss_gain`` (nats/token):

    - ``scaling``: no scaling − ÷√d_k at the largest trained d_k (positive: scaling helps);
    - ``dimension``: ÷√d_model − ÷√d_k at the smallest trained d_k, i.e. the most heads, where the
      two differ most (positive: d_k is the better dimension; equivalent: it does not matter,
      since a constant factor can be absorbed by W_q).
    """
    training = m.get("training", {})
    floor = float(m["thresholds"]["min_loss_gain"])
    out: dict[str, Any] = {}
    with_none = [int(d) for d, t in training.items() if {"sqrt_dk", "none"} <= set(t["scalings"])]
    if with_none:
        d_k = max(with_none)
        sc = training[str(d_k)]["scalings"]
        out["scaling"] = {
            "d_k": d_k,
            **paired(
                sc["none"]["final_eval_loss"]["values"], sc["sqrt_dk"]["final_eval_loss"]["values"], floor
            ),
        }
    with_model = [int(d) for d, t in training.items() if {"sqrt_dk", "sqrt_dmodel"} <= set(t["scalings"])]
    if with_model:
        d_k = min(with_model)
        sc = training[str(d_k)]["scalings"]
        out["dimension"] = {
            "d_k": d_k,
            "heads": training[str(d_k)]["heads"],
            **paired(
                sc["sqrt_dmodel"]["final_eval_loss"]["values"],
                sc["sqrt_dk"]["final_eval_loss"]["values"],
                floor,
            ),
        }
    return out


def _vanishing_from(m: Mapping[str, Any]) -> int | None:
    """The smallest synthetic d_k at which the unscaled gradient at the softmax input is below
    GRAD_SHRINK of the scaled one (the gradient has vanished), or None."""
    syn = m["synthetic"]
    for d_k, raw, scaled in zip(
        syn["d_k"], syn["grad_logits"]["none"], syn["grad_logits"]["sqrt_dk"], strict=True
    ):
        if scaled > 0 and raw / scaled < GRAD_SHRINK:
            return int(d_k)
    return None


def _gradient_note(m: Mapping[str, Any]) -> Msg:
    """Where the gradient vanishes, stated only where this run shows it: at the trained d_k (the
    gradient reaching W_q at initialisation) and in the synthetic check (from which d_k on)."""
    training = m.get("training", {})
    pairs = [int(d) for d, t in training.items() if {"sqrt_dk", "none"} <= set(t["scalings"])]
    start = _vanishing_from(m)
    synthetic = (
        Msg("C05.reason.synthetic_vanishes", shrink=GRAD_SHRINK, start=start)
        if start is not None
        else Msg("C05.reason.synthetic_never", shrink=GRAD_SHRINK)
    )
    if not pairs:
        return synthetic
    d_k = max(pairs)
    sc = training[str(d_k)]["scalings"]
    raw = [v for v in sc["none"]["grad_wq_init"]["values"] if v is not None]
    scaled = [v for v in sc["sqrt_dk"]["grad_wq_init"]["values"] if v is not None]
    if len(raw) < 2 or len(scaled) < 2:
        return synthetic
    r, q = Spread.of(raw).mean, Spread.of(scaled).mean
    shrunk = clearly_less(raw, scaled)
    trained = Msg(
        "C05.reason.trained_smaller" if shrunk else "C05.reason.trained_not_smaller", d_k=d_k, raw=r, scaled=q
    )
    return Msg("C05.reason.gradient", trained=trained, synthetic=synthetic)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided by training, paired over seeds (the synthetic numbers illustrate the mechanism and do
    not decide: they hold by construction on random unit-variance vectors).

    - scaling: ÷√d_k clearly better than no scaling at the largest trained d_k → the core holds;
      clearly worse → not supported; no difference that matters → partly; unclear → inconclusive.
    - dimension: ÷√d_k clearly better than ÷√d_model (the notes' "embedding dimension") → partly,
      with the correction; equivalent → no caveat (W_q absorbs a constant factor); unclear → a
      limit of this run.
    """
    part = SPEC.part("scaling")
    assert part.primary is not None
    pc = metrics.get("paired", {})
    out = VerdictOf(Kind.EXPERIMENT, Msg(part.primary.text, seeds=metrics["n_seeds"]))
    _, n = mechanism(metrics)
    mech = Msg(
        "C05.reason.mechanism",
        slope=n["slope"],
        d_k=n["d_k"],
        saturated_raw=n["saturated_raw"],
        saturated_scaled=n["saturated_scaled"],
    )
    grad_note = _gradient_note(metrics)

    sc = pc.get("scaling")
    if sc is None or sc["n"] < 2:
        return out.branch(Label.INCONCLUSIVE, "C05.verdict.no_training", mech=mech)
    sc_text = Msg("C05.reason.scaling", d_k=sc["d_k"], delta=describe(sc, "nats/token"))
    dim = pc.get("dimension")
    dim_text = empty()
    dim_wrong = False
    if dim is None or dim["n"] < 2:
        out.limited.append(Msg("C05.limited.dimension_untrained"))
    else:
        dim_note = empty()
        if dim["effect"] == 1:
            dim_wrong = True
        elif dim["equivalent"]:
            dim_note = Msg("C05.reason.dimension_equivalent")
        elif dim["effect"] == 0:
            out.limited.append(Msg("C05.limited.dimension_unclear"))
        dim_text = Msg(
            "C05.reason.dimension",
            heads=dim["heads"],
            d_k=dim["d_k"],
            delta=describe(dim, "nats/token"),
            note=dim_note,
        )
    tail = Msg("C05.reason.tail", scaling=sc_text, dimension=dim_text, gradient=grad_note)
    if sc["effect"] == -1:
        return out.branch(Label.NOT_SUPPORTED, "C05.verdict.hurts", tail=tail)
    if sc["effect"] == 0:
        if sc["equivalent"]:
            return out.branch(Label.PARTLY, "C05.verdict.no_difference", mech=mech, tail=tail)
        out.limited.append(Msg("C05.limited.scaling_unclear"))
        return out.branch(Label.INCONCLUSIVE, "C05.verdict.unclear", mech=mech, tail=tail)
    if dim_wrong:
        return out.branch(Label.PARTLY, "C05.verdict.wrong_dimension", tail=tail)
    return out.branch(Label.SUPPORTED, "C05.verdict.scaled", tail=tail)
