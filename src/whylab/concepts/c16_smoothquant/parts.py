"""C16's parts: the notes' "활성화 함수 고려" (a definition check on torchao's SmoothQuant) and the
method's efficacy at W8A8 on the paper's smoothed inputs (an experiment, with its power).

Pure: numbers in, :class:`~whylab.parts.PartVerdict` out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

from whylab.concepts.spec import load_spec
from whylab.files import parse_yaml
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Power, Published, run_label
from whylab.verdict import Kind, Label, PairedTest, Spread, effect, equivalent

SPEC = load_spec("C16")
EXACT = 1e-5  # torchao's factors against the absmax formula, relative
SEEN = 1e-3  # the functions must change the down_proj factors by more than this to be seen


def literature(part_id: str) -> tuple[Published, ...]:
    raw = parse_yaml(files(__package__).joinpath("claim.yaml").read_text(encoding="utf-8"))
    part = next(p for p in raw["parts"] if p["id"] == part_id)
    return tuple(Published.from_dict(d) for d in part.get("literature") or ())


def definition_field(published: Sequence[Published]) -> FieldAnswer | None:
    """The paper's factor: an expression in max|X_j| and max|W_j| alone (no activation function
    f or σ in it) -> the function is not taken into account."""
    factor = next((p for p in published if p.unit == "smoothing factor"), None)
    if factor is None:
        return None
    expr = str(factor.value)
    named = any(t in expr for t in ("f(", "σ", "act"))
    label = Label.SUPPORTED if named else Label.NOT_SUPPORTED
    key = "C16.part.activation_function.field." + ("function" if named else "statistics")
    return FieldAnswer(label, Msg(key, expr=expr), tuple(published))


def efficacy_field(published: Sequence[Published]) -> FieldAnswer | None:
    """The paper's W8A8 result: a speed-up (> 1) with negligible accuracy loss -> it works."""
    speed = next((p for p in published if "speedup" in p.unit), None)
    if speed is None:
        return None
    label = Label.SUPPORTED if float(speed.value) > 1.0 else Label.NOT_SUPPORTED
    return FieldAnswer(label, Msg("C16.part.efficacy.field", speedup=float(speed.value)), tuple(published))


CHECKS = (
    "formula_max_rel_err",
    "swap_max_rel_diff",
    "norm_fed_first_layer_max_rel_diff",
    "down_max_rel_diff",
)


def factor_label(swap: Mapping[str, Any]) -> tuple[Label, str]:
    """One implementation's answer: its factors follow its formula on the recorded statistics (an
    observer given another function's statistics returns that function's factors, where it has
    observers), layer 0's norm-fed factors are equal under every function, and the functions did
    change the activation-fed factors -> not supported; else inconclusive."""
    exact = all(float(swap[k]) <= EXACT for k in CHECKS[:3] if swap.get(k) is not None)
    if exact and float(swap["down_max_rel_diff"]) > SEEN:
        return Label.NOT_SUPPORTED, "statistics"
    return Label.INCONCLUSIVE, "unseen" if exact else "not_formula"


def llmcompressor_text(llmc: Mapping[str, Any] | None, label: Label | None) -> Msg:
    """llmcompressor's SmoothQuantModifier as a cross-check: its numbers and whether it agrees, or
    why it did not run."""
    base = "C16.part.activation_function.llmcompressor."
    if not llmc:
        return Msg(base + "not_run", why=Msg(base + "unmeasured"))
    if not llmc.get("ran"):
        if llmc.get("absent"):  # not installed in the interpreter the rule found: a text in every language
            return Msg(base + "not_run", why=Msg(base + "absent", python=llmc.get("python") or "?"))
        return Msg(base + "not_run", why=llmc.get("why_not") or Msg(base + "unmeasured"))
    return Msg(
        base + "ran",
        version=(llmc.get("versions") or {}).get("llmcompressor") or "?",
        formula=float(llmc["formula_max_rel_err"]),
        paper=float(llmc["paper_formula_max_rel_diff"]),
        norm_fed=float(llmc["norm_fed_first_layer_max_rel_diff"]),
        down=float(llmc["down_max_rel_diff"]),
        down_first=float(llmc["down_first_layer_max_rel_diff"]),
        agrees=Msg(base + ("agrees" if factor_label(llmc)[0] is label else "disagrees")),
    )


def definition_part(swap: Mapping[str, Any] | None, llmc: Mapping[str, Any] | None = None) -> PartVerdict:
    """torchao's factors decide (its observer reads down_proj's own input, the activation function's
    output); llmcompressor's are the cross-check, and an answer of theirs that differs leaves the
    part inconclusive."""
    part = SPEC.part("activation_function")
    field = definition_field(literature(part.id))
    if not swap:
        return PartVerdict(
            part.id,
            part.words,
            Kind.DEFINITION,
            Label.INCONCLUSIVE,
            Msg("C16.part.activation_function.run.missing", cross=llmcompressor_text(llmc, None)),
            None,
            field,
        )
    params: dict[str, Any] = {k: float(swap[k]) for k in CHECKS}
    label, key = factor_label(swap)
    params["cross"] = llmcompressor_text(llmc, label)
    if llmc and llmc.get("ran") and factor_label(llmc)[0] is not label:
        label, key = Label.INCONCLUSIVE, "disagree"
    reason = Msg(f"C16.part.activation_function.run.{key}", **params)
    return PartVerdict(part.id, part.words, Kind.DEFINITION, label, reason, None, field)


def efficacy_part(test: PairedTest, naive_loss: float, min_gain: float, model: Any) -> PartVerdict:
    part = SPEC.part("efficacy")
    power = Power.paired(test.sd_diff, test.n, "percentage points", predicted=naive_loss)
    if naive_loss < min_gain:
        decided, key = Label.INCONCLUSIVE, "nothing_to_fix"
    elif effect(test, min_gain) > 0:
        decided, key = Label.SUPPORTED, "gain"
    elif effect(test, min_gain) < 0 or equivalent(test, min_gain):
        decided, key = Label.NOT_SUPPORTED, "no_gain"
    else:
        decided, key = Label.INCONCLUSIVE, "within_noise"
    detectable = power.detectable if math.isfinite(power.detectable) else math.nan
    reason = Msg(
        f"C16.part.efficacy.run.{key}",
        model=model,
        naive=naive_loss,
        gain=test.mean_diff,
        low=test.ci_low,
        high=test.ci_high,
        n=test.n,
        detectable=detectable,
        min_gain=min_gain,
    )
    return PartVerdict(
        part.id,
        part.words,
        Kind.EXPERIMENT,
        run_label(decided, power),
        reason,
        power,
        efficacy_field(literature(part.id)),
    )


def parts(metrics: Mapping[str, Any]) -> list[PartVerdict]:
    from whylab.concepts.c16_smoothquant.verdict import _paired, model_text

    cond = metrics["primary_condition"]
    c = metrics["conditions"][cond]
    naive = Spread.of(c["naive_change_pct"][metrics["verdict_scheme"]]).mean
    test = _paired(metrics["primary_test"])
    return [
        definition_part(metrics.get("activation_swap"), metrics.get("activation_swap_llmcompressor")),
        efficacy_part(test, naive, float(metrics["ppl_gain_pct_min"]), model_text(cond)),
    ]
