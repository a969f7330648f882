"""C18's parts: each line of the notes' memory block judged on its own (``claim.yaml``).

Pure: numbers in, :class:`~whylab.parts.PartVerdict` out. Memory accounting is deterministic (the
same step holds the same bytes on every seed), so each part is a definition check on torch's and
transformers' own optimizers and autograd, or arithmetic by the calculator those checks validate;
no part has a seed spread to state a power from. Each part's literature answer is computed from the
numbers ``claim.yaml`` records (ZeRO, Adafactor, Korthikanti et al.).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from whylab.concepts.spec import load_spec
from whylab.files import parse_yaml
from whylab.memory import calculator as calc
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Published, run_label
from whylab.verdict import Kind, Label

SPEC = load_spec("C18")
S, P, N, U = Label.SUPPORTED, Label.PARTLY, Label.NOT_SUPPORTED, Label.INCONCLUSIVE
# Llama-2-7B's attention and MLP matrices and a norm vector (experiment.ADAFACTOR_SHAPES)
LLAMA_7B_SHAPES: tuple[tuple[int, ...], ...] = ((4096, 4096), (11008, 4096), (4096,))


@cache
def literature(part_id: str) -> tuple[Published, ...]:
    """The published numbers ``claim.yaml`` records for a part."""
    raw = parse_yaml(files(__package__).joinpath("claim.yaml").read_text(encoding="utf-8"))
    part = next(p for p in raw["parts"] if p["id"] == part_id)
    return tuple(Published.from_dict(x) for x in part.get("literature") or ())


def band_distance(fraction: float) -> float:
    """How far activations / weight bytes lie outside the notes' 20-30% band (0 inside it)."""
    lo, hi = calc.NOTES_ACTIVATION_FRACTION
    return max(lo - fraction, fraction - hi, 0.0)


def band_label(distances: Sequence[float]) -> Label:
    if not distances:
        return U
    if max(distances) <= SPEC.threshold("band_supported_max_distance"):
        return S
    if statistics.median(distances) > SPEC.threshold("band_not_supported_median_distance"):
        return N
    return P


def formula_label(abs_errors: Sequence[float], tol: float) -> Label:
    if not abs_errors:
        return U
    if max(abs_errors) <= tol:
        return S
    return P if statistics.median(abs_errors) <= SPEC.threshold("formula_partly_median_abs_err") else N


def proportional_label(batch_dev: float | None, seq_exponent: float | None, tol: float) -> Label:
    if batch_dev is None or seq_exponent is None:
        return U
    holds = [batch_dev <= tol, abs(seq_exponent - 1) <= SPEC.threshold("seq_exponent_slack")]
    return S if all(holds) else P if any(holds) else N


def in_band(value: float | None) -> Label:
    """The notes' AdaFactor 2-4 B/param, with a slack at the edges (4.0018 is "4")."""
    if value is None:
        return U
    lo, hi = SPEC.threshold("adafactor_band")
    slack = SPEC.threshold("adafactor_band_slack")
    return S if lo * (1 - slack) <= value <= hi * (1 + slack) else N


def within(value: float | None, name: str) -> Label:
    if value is None:
        return U
    at, tol = SPEC.threshold(name)
    return S if abs(value - at) <= tol else N


def korthikanti_gpt3() -> dict[str, float]:
    """Korthikanti et al.'s Eq. (1) at GPT-3 175B: activations / 16-bit weights, and the log-log
    exponent of activations in sequence length between s/2 and s."""
    g = SPEC.threshold("gpt3")
    s, b, h, a, layers = g["seq"], g["batch"], g["hidden"], g["heads"], g["layers"]

    def per_layer(seq: float) -> float:
        return seq * b * h * (34 + 5 * a * seq / h)

    fraction = layers * per_layer(s) / (2 * float(g["params"]))
    exponent = math.log(per_layer(s) / per_layer(s / 2)) / math.log(2)
    return {"fraction": fraction, "seq_exponent": exponent, "seq": s, "quadratic": 5 * a * s / h}


def _part(pid: str, run: Label, reason: Msg, field: FieldAnswer | None = None) -> PartVerdict:
    spec = SPEC.part(pid)
    return PartVerdict(pid, spec.words, Kind.DEFINITION, run_label(run, None), reason, None, field)


def _field(pid: str, label: Label, **params: Any) -> FieldAnswer:
    return FieldAnswer(label, Msg(f"C18.part.{pid}.field", **params), literature(pid))


def _adafactor_parts(m: Mapping[str, Any]) -> list[PartVerdict]:
    ada = m.get("adafactor_real_shape") or {}
    shapes = [tuple(s) for s in ada.get("shapes", LLAMA_7B_SHAPES)]
    paper = calc.optimizer_bytes_per_param(shapes, "adafactor", step_bytes=0)
    out = []
    for pid, key, extra in (("adafactor_no_beta1", "no_beta1", 0.0), ("adafactor_beta1", "beta1", 4.0)):
        value = ada.get(key)
        reason = (
            Msg(f"C18.part.{pid}.run", value=value, params=ada.get("params", 0))
            if value is not None
            else Msg("C18.part.unmeasured")
        )
        field = _field(pid, in_band(paper + extra), value=paper + extra)
        out.append(_part(pid, in_band(value), reason, field))
    return out


def _factor_parts(m: Mapping[str, Any]) -> list[PartVerdict]:
    adam, sgd = m.get("adam_state_bytes_per_param"), m.get("sgd_state_bytes_per_param")
    grad32, grad16 = m.get("fp32_gradient_bytes_per_param"), m.get("mixed_gradient_bytes_per_param")
    zero_k = float(literature("adam")[0].value)
    zero_adam = zero_k - SPEC.threshold("zero_adam_master_bytes")
    sgd_label = U if sgd is None else S if sgd <= SPEC.threshold("sgd_state_bytes_per_param_max") else N

    def measured(pid: str, value: float | None) -> Msg:
        return Msg(f"C18.part.{pid}.run", value=value) if value is not None else Msg("C18.part.unmeasured")

    return [
        _part(
            "adam",
            within(adam, "adam_state_bytes_per_param"),
            measured("adam", adam),
            _field("adam", within(zero_adam, "adam_state_bytes_per_param"), k=zero_k, value=zero_adam),
        ),
        *_adafactor_parts(m),
        _part("sgd", sgd_label, measured("sgd", sgd)),
        _part(
            "gradient_fp32",
            within(grad32, "fp32_gradient_bytes_per_param"),
            measured("gradient_fp32", grad32),
        ),
        _part(
            "gradient_fp16",
            within(grad16, "fp16_gradient_bytes_per_param"),
            measured("gradient_fp16", grad16),
        ),
    ]


def _activation_parts(m: Mapping[str, Any]) -> list[PartVerdict]:
    tol = float(m["tolerance"])
    ko = korthikanti_gpt3()
    batch_dev, seq_exp = m.get("activation_batch_proportionality_max_dev"), m.get("activation_seq_exponent")
    fit = m.get("korthikanti_fit") or {}
    x_max = m.get("attention_x_max")
    share = None
    if x_max is not None and math.isfinite(fit.get("c0", math.nan)) and fit["c0"] > 0:
        share = fit["c1"] * x_max / (fit["c0"] + fit["c1"] * x_max)
    gpt3_share = ko["quadratic"] / (34 + ko["quadratic"])
    prop_run = proportional_label(batch_dev, seq_exp, tol)
    limited = share is not None and share < SPEC.threshold("attention_share_limit") * gpt3_share
    if limited and prop_run is S:  # proportional only because the s² term had no room to show
        prop_run = U
    fractions = [r["activation_over_model"] for r in m.get("notes_models", [])]
    distances = [band_distance(f) for f in fractions]
    band_reason = (
        Msg(
            "C18.part.activation_band.run",
            n=len(fractions),
            lo=min(fractions),
            hi=max(fractions),
            median=statistics.median(distances),
            inside=sum(d == 0 for d in distances),
        )
        if fractions
        else Msg("C18.part.unmeasured")
    )
    return [
        _part(
            "activation_proportional",
            prop_run,
            Msg(
                "C18.part.activation_proportional.run",
                batch_dev=batch_dev,
                seq_exp=seq_exp,
                limit=Msg("C18.part.activation_proportional.limited", share=share, gpt3=gpt3_share)
                if limited
                else Msg("common.empty"),
            )
            if batch_dev is not None and seq_exp is not None
            else Msg("C18.part.unmeasured"),
            _field(
                "activation_proportional",
                proportional_label(0.0, ko["seq_exponent"], tol),
                seq_exp=ko["seq_exponent"],
                seq=ko["seq"],
                quadratic=ko["quadratic"],
            ),
        ),
        _part(
            "activation_band",
            band_label(distances),
            band_reason,
            _field(
                "activation_band",
                band_label([band_distance(ko["fraction"])]),
                fraction=ko["fraction"],
            ),
        ),
    ]


def _formula_part(m: Mapping[str, Any]) -> PartVerdict:
    tol = float(m["tolerance"])
    rows = m.get("notes_models", [])
    errs = [r["notes_literal_rel_err"] for r in rows]
    abs_errs = [abs(e) for e in errs]
    zero = float(literature("formula")[0].value)
    # 16-bit base × (Adam 8 + FP16 gradients 2): the model states of the formula as written
    notes_states = 2 * (calc.NOTES_OPTIMIZER_BYTES["adamw"][0] + calc.NOTES_GRADIENT_BYTES["fp16"])
    field_err = (notes_states - zero) / zero
    peak = m.get("peak_example")
    where = Msg("C18.part.formula.peak", **peak) if peak else Msg("common.empty")
    reason = (
        Msg(
            "C18.part.formula.run",
            n=len(errs),
            median=statistics.median(abs_errs),
            lo=min(errs),
            hi=max(errs),
            peak=where,
        )
        if errs
        else Msg("C18.part.unmeasured")
    )
    field = _field(
        "formula", formula_label([abs(field_err)], tol), notes=notes_states, zero=zero, err=field_err
    )
    return _part("formula", formula_label(abs_errs, tol), reason, field)


def build_parts(metrics: Mapping[str, Any]) -> list[PartVerdict]:
    """Every part of ``claim.yaml``, in its order."""
    made = {p.id: p for p in [_formula_part(metrics), *_factor_parts(metrics), *_activation_parts(metrics)]}
    return [made[p.id] for p in SPEC.parts]
