"""C11's decision: from the measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). Decided by the definition check on
library encoder–decoders (``roles``); the trained notes' wiring and our own model are reported with
it and do not change the label. Thresholds are in ``claim.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.c11_cross_attention.judged import judged_parts
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf, effect, equivalent, paired_test

CLAIM_ID = "C11"
SPEC = load_spec(CLAIM_ID)
TOLERANCE = float(SPEC.threshold("unchanged"))
EFFECT = float(SPEC.threshold("moved"))
TOL = float(SPEC.threshold("library_round_off"))


def notes_ceiling(length: int, symbols: int) -> float:
    """The best token accuracy the notes' wiring can reach: its values come from the decoder, so the
    source reaches the output only through the weights over decoder positions ≤ t; at t = 0 there is
    one position, the weights carry nothing, and that position is at chance."""
    return 1.0 - (1.0 - 1.0 / symbols) / length


def _changes(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Intervention -> part -> per seed (in seed order) -> per layer: the standard model's changes."""
    by_seed = sorted(per_seed, key=lambda r: int(r["seed"]))
    names = sorted({name for r in per_seed for name in r["standard"]["changes"]})
    return {
        name: {
            part: [[float(v) for v in r["standard"]["changes"][name][part]] for r in by_seed]
            for part in sorted({p for r in per_seed for p in r["standard"]["changes"][name]})
        }
        for name in names
    }


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    per_seed = measured.per_seed
    length, symbols = int(s["length"]), int(s["symbols"])
    std = [r["standard"] for r in per_seed]
    notes = [r["notes"] for r in per_seed]
    acc_std = [float(a["token_accuracy"]) for a in std]
    acc_notes = [float(a["token_accuracy"]) for a in notes]
    return {
        "task": s["task"],
        "length": length,
        "symbols": symbols,
        "n_seeds": len(per_seed),
        "steps": int(s["steps"]),
        "min_accuracy": float(s["min_accuracy"]),
        "min_effect": float(s["min_effect"]),
        "chance_accuracy": 1.0 / symbols,
        # the notes' wiring can pass the source only through its attention weights; at the first
        # target position there is one value to weigh, so that position stays at chance
        "notes_ceiling": notes_ceiling(length, symbols),
        "token_accuracy": {"standard": acc_std, "notes": acc_notes},
        "sequence_accuracy": {
            "standard": [float(a["sequence_accuracy"]) for a in std],
            "notes": [float(a["sequence_accuracy"]) for a in notes],
        },
        "diverged": {
            "standard": sum(bool(a["diverged"]) for a in std),
            "notes": sum(bool(a["diverged"]) for a in notes),
        },
        "paired_standard_minus_notes": paired_test(acc_std, acc_notes).to_dict(),
        "token_accuracy_cross_off": [float(a["token_accuracy_cross_off"]) for a in std],
        "alignment": [a["alignment"] for a in std],
        "alignment_chance": 1.0 / length,
        "shapes": std[0]["shapes"],
        "changes": _changes(per_seed),
        "unequal_lengths": measured.whole["unequal_lengths"],
        "library": measured.whole["library"] or [],
    }


def roles(row: Mapping[str, Any]) -> dict[str, bool]:
    """Where Q, K and V of one library model come from, decided from ``wiring.library_roles``'
    numbers."""
    out = {"has_cross_attention": row["cross_attention_layers"] > 0}
    if not out["has_cross_attention"]:
        return out
    src_len, tgt_len = row["source_length"], row["target_length"]

    def small(value: float | None) -> bool:
        return value is not None and value <= TOL

    for p in ("q", "k", "v"):
        encoder = (
            row[f"{p}_input_length"] == src_len
            and small(row[f"{p}_vs_encoder_output"])
            and small(row[f"{p}_moved_by_decoder"])
        )
        decoder = (
            row[f"{p}_input_length"] == tgt_len
            and not small(row[f"{p}_moved_by_decoder"])
            and small(row[f"{p}_moved_by_source"])
        )
        out[f"{p}_from_encoder"] = bool(encoder)
        out[f"{p}_from_decoder"] = bool(decoder)
    return out


def _first_layer(m: Mapping[str, Any], intervention: str, part: str) -> list[float]:
    return [float(per_seed[0]) for per_seed in m["changes"][intervention][part]]


def _all_layers(m: Mapping[str, Any], intervention: str, part: str) -> list[float]:
    return [float(v) for per_seed in m["changes"][intervention][part] for v in per_seed]


def sources(m: Mapping[str, Any]) -> dict[str, bool]:
    """Where Q, K and V come from in our trained model (illustration), from the interventions and
    the shapes (read on a decoder input shorter than the source)."""
    sh = m["shapes"]
    q_len, k_len, v_len = sh["q_input"][1], sh["k_input"][1], sh["v_input"][1]
    q_mem, q_dec = _first_layer(m, "memory", "Q"), _first_layer(m, "decoder", "Q")
    out = {
        "q_from_decoder": min(q_dec) > EFFECT and max(q_mem) <= TOLERANCE and q_len == sh["target_length"],
        "q_from_encoder": min(q_mem) > EFFECT or q_len == sh["source_length"] != sh["target_length"],
    }
    for part, length in (("K", k_len), ("V", v_len)):
        moved_by_memory = min(_all_layers(m, "memory", part)) > EFFECT
        moved_by_decoder = max(_all_layers(m, "decoder", part)) > TOLERANCE
        out[f"{part.lower()}_from_encoder"] = (
            moved_by_memory and not moved_by_decoder and length == sh["source_length"]
        )
    return out


def library_verdict_roles(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The roles every library encoder–decoder agrees on (T5, BART), and which models have none."""
    rows = [r for r in metrics["library"] if r["cross_attention_layers"] > 0]
    per_model = {r["model"]: roles(r) for r in rows}
    agreed = {key: all(v[key] for v in per_model.values()) for key in next(iter(per_model.values()), {})}
    full = [r["model"] for r in rows if r["cross_attention_layers"] == r["decoder_layers"]]
    return {
        "models": sorted(per_model),
        "roles": agreed,
        "every_layer": len(full) == len(rows),
        "without": [r["model"] for r in metrics["library"] if r["cross_attention_layers"] == 0],
    }


def ci(test: Mapping[str, Any]) -> Msg:
    if test.get("ci_low") is None:
        return Msg("C11.reason.ci_none")
    return Msg("C11.reason.ci", low=test["ci_low"], high=test["ci_high"])


def _experiment(metrics: Mapping[str, Any]) -> tuple[Msg, tuple[Msg, ...]]:
    """What the notes' wiring does, in words, and what this run could not judge about it."""
    acc_std, acc_notes = metrics["token_accuracy"]["standard"], metrics["token_accuracy"]["notes"]
    unequal = metrics["unequal_lengths"]
    shape = (
        Msg(
            "C11.reason.shape.fails",
            source=unequal["source_length"],
            target=unequal["target_length"],
            error=unequal["error"].split(":")[0],
            where=unequal["where"].split(":")[0],
        )
        if not unequal["runs"]
        else Msg("C11.reason.shape.runs")
    )
    if min(acc_std) < float(metrics["min_accuracy"]):
        return (
            Msg("C11.reason.experiment.unlearned", shape=shape),
            (
                Msg(
                    "C11.limited.unlearned",
                    accuracy=str(Spread.of(acc_std)),
                    needed=float(metrics["min_accuracy"]),
                ),
            ),
        )
    test = paired_test(acc_std, acc_notes)
    eff = effect(test, float(metrics["min_effect"]))
    numbers = Msg(
        "C11.reason.numbers",
        notes=Spread.of(acc_notes).mean,
        standard=Spread.of(acc_std).mean,
        diff=test.mean_diff,
        ci=ci(test.to_dict()),
        n=test.n,
    )
    if eff > 0:
        ceiling = metrics.get("notes_ceiling")
        why = Msg("C11.reason.ceiling", ceiling=float(ceiling)) if ceiling is not None else empty()
        return Msg("C11.reason.experiment.worse", shape=shape, numbers=numbers, why=why), ()
    if eff < 0:
        return Msg("C11.reason.experiment.better", shape=shape, numbers=numbers), ()
    if equivalent(test, float(metrics["min_effect"])):
        return Msg("C11.reason.experiment.as_well", shape=shape, numbers=numbers), ()
    return (
        Msg("C11.reason.experiment.unclear", shape=shape, numbers=numbers),
        (Msg("C11.limited.unclear", n=test.n, numbers=numbers),),
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided by the definition check on library encoder–decoders; the trained notes' wiring and
    our own model are reported with it (they do not change the label)."""
    part = SPEC.part("query_key")
    assert part.primary is not None
    out = VerdictOf(Kind.DEFINITION, Msg(part.primary.text))
    if int(metrics["n_seeds"]) < int(SPEC.threshold("min_seeds")):
        return out.branch(Label.INCONCLUSIVE, "C11.verdict.too_few_seeds", n=metrics["n_seeds"])
    if not metrics["library"]:
        return out.branch(Label.INCONCLUSIVE, "C11.verdict.library_off")
    lib = library_verdict_roles(metrics)
    roles_ = lib["roles"]
    experiment, limited = _experiment(metrics)
    out.limited.extend(limited)
    out.parts.extend(judged_parts(lib))
    scope = Msg("C11.reason.scope", without=lib["without"]) if lib["without"] else empty()
    params: dict[str, Any] = {"names": lib["models"], "experiment": experiment, "scope": scope}
    if not lib["models"] or not lib["every_layer"]:
        return out.branch(Label.NOT_SUPPORTED, "C11.verdict.no_cross_attention", **params)
    if not roles_.get("k_from_encoder"):
        return out.branch(Label.NOT_SUPPORTED, "C11.verdict.keys_not_from_encoder", **params)
    if roles_.get("q_from_encoder"):
        return out.branch(Label.SUPPORTED, "C11.verdict.queries_from_encoder", **params)
    if roles_.get("q_from_decoder"):
        if roles_.get("v_from_encoder"):
            return out.branch(Label.PARTLY, "C11.verdict.queries_from_decoder", **params)
        return out.branch(Label.PARTLY, "C11.verdict.queries_from_decoder_values_elsewhere", **params)
    return out.branch(Label.INCONCLUSIVE, "C11.verdict.queries_unread", **params)
