"""C05's sentence judged part by part (VALIDITY 7-9): which dimension, the variance, the vanishing
gradient, and whether the scaling helps training, each with this run's label (and power) and the
literature's label computed from the numbers recorded in ``claim.yaml``.

Pure: metrics in, :class:`~whylab.parts.PartVerdict` out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from whylab.concepts._bench_stats import describe, paired, part_status
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Power, Published, run_label
from whylab.verdict import Kind, Label

SPEC = load_spec("C05")
RAW = yaml.safe_load(Path(__file__).with_name("claim.yaml").read_text(encoding="utf-8"))
SLOPE_RANGE = tuple(float(v) for v in SPEC.threshold("slope_range"))
GRAD_SHRINK = float(SPEC.threshold("grad_shrink"))
SATURATED_ENTROPY = float(SPEC.threshold("saturated_entropy"))
STATUS = {"confirmed": Label.SUPPORTED, "contradicted": Label.NOT_SUPPORTED, "limited": Label.INCONCLUSIVE}


def published(part_id: str) -> dict[str, Published]:
    """The published numbers claim.yaml records for a part, by their ``name``."""
    (raw,) = [p for p in RAW["parts"] if p["id"] == part_id]
    return {str(p["name"]): Published.from_dict(p) for p in raw.get("literature", [])}


def _part(part_id: str, run: Label, reason: Msg, power: Power | None, field: FieldAnswer) -> PartVerdict:
    spec = SPEC.part(part_id)
    kind = Kind.DEFINITION if spec.kind == "definition" else Kind.EXPERIMENT
    return PartVerdict(part_id, spec.words, kind, run, reason, power, field)


def author(pub: Published) -> str:
    """The first author's surname (the messages add "et al." and the year in each language)."""
    return pub.source.split()[0]


def in_unit_range(var: float) -> bool:
    """A score variance the scaling's argument accepts as 1 (the slope range read as a factor)."""
    return SLOPE_RANGE[0] <= var <= SLOPE_RANGE[1]


# --------------------------------------------------------------------------- the four parts
def dimension_part(m: Mapping[str, Any]) -> PartVerdict:
    """Which dimension (a definition check): the score variance ÷√(embedding dimension) leaves at
    the most heads of the synthetic width, against the 1 that ÷√d_k gives; training's ÷√d_model vs
    ÷√d_k comparison is shown beside it (a constant factor W_q can partly absorb)."""
    heads = m["heads"]
    h = int(heads["heads"][-1])
    var_model = float(heads["score_var_scaled"]["sqrt_dmodel"][-1])
    var_dk = float(heads["score_var_scaled"]["sqrt_dk"][-1])
    run = Label.SUPPORTED if in_unit_range(var_model) else Label.NOT_SUPPORTED
    dim = m.get("paired", {}).get("dimension")
    training = (
        Msg(
            "C05.part.dimension.training",
            heads=dim["heads"],
            d_k=dim["d_k"],
            delta=describe(dim, "nats/token"),
        )
        if dim
        else Msg("C05.part.dimension.untrained")
    )
    reason = Msg(
        f"C05.part.dimension.run.{'unit' if run is Label.SUPPORTED else 'not_unit'}",
        heads=h,
        d_model=int(heads["d_model"]),
        var_model=var_model,
        var_dk=var_dk,
        training=training,
    )
    pub = published("dimension")
    d_model, d_k = float(pub["d_model"].value), float(pub["d_k"].value)
    same = d_model == d_k  # the paper divides by √d_k: the notes' dimension only where they coincide
    field = FieldAnswer(
        Label.SUPPORTED if same else Label.NOT_SUPPORTED,
        Msg("C05.part.dimension.field", d_model=d_model, d_k=d_k, source=author(pub["d_k"])),
        tuple(pub.values()),
    )
    return _part("dimension", run, reason, None, field)


def variance_part(m: Mapping[str, Any]) -> PartVerdict:
    """The variance (a definition check, arithmetic on random unit-variance vectors): var(q·k)
    grows as d_k (log-log slope in the range) and ÷√d_k brings it back to 1."""
    syn = m["synthetic"]
    slope = float(syn["var_slope"])
    scaled = [float(v) for v in syn.get("var_scaled", [])]
    ok = SLOPE_RANGE[0] <= slope <= SLOPE_RANGE[1] and all(in_unit_range(v) for v in scaled)
    reason = Msg(
        f"C05.part.variance.run.{'grows' if ok else 'not'}",
        slope=slope,
        low=SLOPE_RANGE[0],
        high=SLOPE_RANGE[1],
        d_min=int(syn["d_k"][0]),
        d_max=int(syn["d_k"][-1]),
        scaled_max=max(scaled, default=math.nan),
    )
    pub = published("variance")["exponent"]
    exponent = float(pub.value)
    field = FieldAnswer(
        Label.SUPPORTED if SLOPE_RANGE[0] <= exponent <= SLOPE_RANGE[1] else Label.NOT_SUPPORTED,
        Msg("C05.part.variance.field", exponent=exponent, source=author(pub), where=pub.where),
        (pub,),
    )
    return _part("variance", Label.SUPPORTED if ok else Label.NOT_SUPPORTED, reason, None, field)


def _statement_field(part_id: str) -> FieldAnswer:
    """A paper's own statement of the part (value ``stated``; ``suspected`` where it says it only
    suspects it): supported either way, its reason saying which."""
    pub = published(part_id)["statement"]
    return FieldAnswer(
        Label.SUPPORTED if str(pub.value) in ("stated", "suspected") else Label.INCONCLUSIVE,
        Msg(f"C05.part.{part_id}.field.{pub.value}", source=author(pub), where=pub.where),
        (pub,),
    )


def gradient_log_ratios(m: Mapping[str, Any]) -> tuple[int, list[float], list[float]] | None:
    """At the largest trained d_k with both arms: log of the gradient reaching W_q at
    initialisation (unscaled, ÷√d_k) per seed, or None."""
    training = m.get("training", {})
    pairs = [int(d) for d, t in training.items() if {"sqrt_dk", "none"} <= set(t["scalings"])]
    if not pairs:
        return None
    d_k = max(pairs)
    sc = training[str(d_k)]["scalings"]
    if "grad_wq_init" not in sc["none"]:
        return None

    def logs(arm: str) -> list[float]:
        return [math.log(v) if v and v > 0 else math.nan for v in sc[arm]["grad_wq_init"]["values"]]

    return d_k, logs("none"), logs("sqrt_dk")


def gradient_part(m: Mapping[str, Any]) -> PartVerdict:
    """The vanishing gradient (an experiment in the trained model): log(gradient reaching W_q at
    initialisation, unscaled / ÷√d_k) at the largest trained d_k, paired by seed. Only where the
    unscaled model's attention starts saturated (normalised entropy below ``saturated_entropy``)
    can the gradient vanish; elsewhere the run is limited. Vanished: the 95% CI of the log ratio
    below log(grad_shrink); clearly not: above it; else undecided."""
    field = _statement_field("gradient")
    found = gradient_log_ratios(m)
    if found is None:
        return _part("gradient", Label.INCONCLUSIVE, Msg("C05.part.gradient.run.untrained"), None, field)
    d_k, raw, scaled = found
    floor = math.log(GRAD_SHRINK)
    comp = paired(raw, scaled, -floor)
    test = comp.get("test")
    entropy = m["training"][str(d_k)]["scalings"]["none"].get("attention_entropy_init", {}).get("mean")
    power = Power.paired(
        test["sd_diff"] if test and test["sd_diff"] is not None else math.nan,
        comp["n"],
        "log ratio",  # of the gradient reaching W_q, unscaled over scaled
        predicted=floor,
    )
    params: dict[str, Any] = {"d_k": d_k, "shrink": GRAD_SHRINK, "entropy": entropy or math.nan}
    if not test or test["ci_low"] is None:
        return _part("gradient", Label.INCONCLUSIVE, Msg("C05.part.gradient.run.too_few"), power, field)
    params.update(
        ratio=math.exp(test["mean_diff"]),
        low=math.exp(test["ci_low"]),
        high=math.exp(test["ci_high"]),
        n=comp["n"],
        detectable=math.exp(-power.detectable) if math.isfinite(power.detectable) else 0.0,
    )
    if entropy is None or entropy >= SATURATED_ENTROPY:
        key, decided = "not_saturated", Label.INCONCLUSIVE
    elif test["ci_high"] < floor:
        key, decided = "vanished", Label.SUPPORTED
    elif test["ci_low"] > floor:
        key, decided = "kept", Label.NOT_SUPPORTED
    else:
        key, decided = "unclear", Label.INCONCLUSIVE
    run = run_label(decided, power)
    if run is not decided:
        key = "limited"
    return _part("gradient", run, Msg(f"C05.part.gradient.run.{key}", **params), power, field)


def training_part(m: Mapping[str, Any]) -> PartVerdict:
    """Scaling helps training (an experiment): no scaling − ÷√d_k final loss at the largest trained
    d_k, paired by seed, floor min_loss_gain (also the effect the power is judged against)."""
    field = _statement_field("training")
    sc = m.get("paired", {}).get("scaling")
    floor = float(m["thresholds"]["min_loss_gain"])
    if sc is None or sc["n"] < 2 or not sc.get("test"):
        return _part("training", Label.INCONCLUSIVE, Msg("C05.part.training.run.untrained"), None, field)
    test = sc["test"]
    power = Power.paired(test["sd_diff"] or 0.0, sc["n"], "nats/token", predicted=floor)
    decided = STATUS[part_status(sc, test["p"] is not None and test["p"] < 0.05)]
    run = run_label(decided, power)
    key = {Label.SUPPORTED: "helps", Label.NOT_SUPPORTED: "not"}.get(run, "unclear")
    detectable = power.detectable if math.isfinite(power.detectable) else math.nan
    reason = Msg(
        f"C05.part.training.run.{key}",
        d_k=sc["d_k"],
        delta=describe(sc, "nats/token"),
        detectable=detectable,
        floor=floor,
    )
    return _part("training", run, reason, power, field)


def parts_of(m: Mapping[str, Any]) -> list[PartVerdict]:
    return [dimension_part(m), variance_part(m), gradient_part(m), training_part(m)]
