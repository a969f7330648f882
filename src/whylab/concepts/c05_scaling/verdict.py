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

from whylab.concepts._bench_stats import paired
from whylab.concepts.c05_scaling.parts import parts_of
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.parts import DECISIVE, combine
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

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


BRANCHES = {
    Label.SUPPORTED: "supported",
    Label.PARTLY: "partly",
    Label.NOT_SUPPORTED: "not_supported",
    Label.INCONCLUSIVE: "inconclusive",
}


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """The notes' sentence part by part (``parts.py``): which dimension, the variance, the vanishing
    gradient, and whether scaling helps training. The label combines the parts' run labels
    (:func:`whylab.parts.combine`: an undecided part never lowers it); without a paired training
    comparison the run is inconclusive."""
    part = SPEC.part("training")
    assert part.primary is not None
    out = VerdictOf(
        Kind.EXPERIMENT,
        Msg(
            part.primary.text,
            seeds=metrics["n_seeds"],
            min_loss_gain=float(metrics["thresholds"]["min_loss_gain"]),
        ),
    )
    parts = parts_of(metrics)
    out.parts.extend(parts)
    out.limited.extend(
        Msg("C05.limited.part", part=Msg(f"C05.part.{p.id}.name")) for p in parts if p.run not in DECISIVE
    )
    _, n = mechanism(metrics)
    mech = Msg(
        "C05.reason.mechanism",
        slope=n["slope"],
        d_k=n["d_k"],
        saturated_raw=n["saturated_raw"],
        saturated_scaled=n["saturated_scaled"],
    )
    sc = metrics.get("paired", {}).get("scaling")
    if sc is None or sc["n"] < 2:
        return out.branch(Label.INCONCLUSIVE, "C05.verdict.no_training", mech=mech)
    label = combine([p.run for p in parts])
    return out.branch(
        label,
        f"C05.verdict.{BRANCHES[label]}",
        parts=[Msg("C05.reason.part", name=Msg(f"C05.part.{p.id}.name"), reason=p.reason) for p in parts],
        held=[Msg(f"C05.part.{p.id}.name") for p in parts if p.run is Label.SUPPORTED],
        wrong=[Msg(f"C05.part.{p.id}.name") for p in parts if p.run is Label.NOT_SUPPORTED],
        corrections=[Msg(f"C05.part.{p.id}.correction") for p in parts if p.run is Label.NOT_SUPPORTED],
    )
