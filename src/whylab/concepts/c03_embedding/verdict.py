"""C03's decision: from the per-seed measurements to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The settings the decision reads
(``min_relative_change``, ``min_loss_gain``) are claim.yaml's ``decision_settings``; its other
thresholds are in ``claim.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from whylab.concepts._bench_stats import describe, holm_of, label_of, paired, part_status, summary
from whylab.concepts.c03_embedding import CLAIM_ID, LEARNED
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.verdict import Kind, Label, Verdict, VerdictOf

SPEC = load_spec(CLAIM_ID)


def table_name(key: str) -> Msg:
    """A frozen table's short name in the verdict ("frozen unit")."""
    return Msg(f"C03.table_name.{key}")


def nan_for_none(values: Sequence[float | None]) -> list[float]:
    """Per-seed values with failed runs (None) kept as NaN, for :func:`summary`."""
    return [math.nan if v is None else float(v) for v in values]


def arms(per_seed: Sequence[Mapping[str, Any]]) -> list[str]:
    """The arms that ran, learned first (as the measurements list them)."""
    return list(per_seed[0]["runs"])


def comparisons(measured: Measured) -> dict[str, dict[str, Any]]:
    """Per frozen table: frozen − learned validation loss, paired by seed (positive: learning the
    table helps), with the effect decision at ``min_loss_gain``."""
    per_seed = measured.per_seed
    min_gain = float(measured.settings["min_loss_gain"])
    learned = [r["runs"][LEARNED]["eval_loss"] for r in per_seed]
    return {
        key: paired([r["runs"][key]["eval_loss"] for r in per_seed], learned, min_gain)
        for key in arms(per_seed)
        if key != LEARNED
    }


def _geometry(per_seed: Sequence[Mapping[str, Any]], st: Mapping[str, Any]) -> dict[str, Any]:
    """The learned table's geometry: neighbour sets kept, same-word pairs, unseen rows."""
    r0 = per_seed[0]
    k = int(st["n_neighbours"])
    vocab_size = int(r0["vocab_size"])
    return {
        "change_vs_log_frequency_spearman": summary(nan_for_none([r["spearman"] for r in per_seed])),
        "unseen_tokens": sum(1 for c in r0["token_counts"] if c == 0),
        "unseen_token_relative_change": (
            summary(nan_for_none([r["unseen_change"] for r in per_seed]))
            if r0["unseen_change"] is not None
            else None
        ),
        "neighbour_overlap": {
            "k": k,
            "tokens": min(int(st["overlap_tokens"]), vocab_size),
            "learned": summary([r["overlap"] for r in per_seed]),
            "random_expectation": k / (vocab_size - 1),
        },
        "same_word_pair_cosine": (
            {
                "pairs": r0["pairs"],
                "before": summary(nan_for_none([r["pair_cos_before"] for r in per_seed])),
                "after": summary(nan_for_none([r["pair_cos_after"] for r in per_seed])),
            }
            if r0["pairs"]
            else None
        ),
    }


def summarize(measured: Measured) -> dict[str, Any]:
    per_seed, st = measured.per_seed, measured.settings
    keys = arms(per_seed)
    r0 = per_seed[0]
    geometry = _geometry(per_seed, st)
    return {
        "n_seeds": len(per_seed),
        "vocab_size": int(r0["vocab_size"]),
        "embedding_parameters": r0["embedding_parameters"],
        "initial_eval_loss": {
            key: summary(nan_for_none([r["runs"][key]["initial_loss"] for r in per_seed])) for key in keys
        },
        "eval_loss": {
            key: summary(nan_for_none([r["runs"][key]["eval_loss"] for r in per_seed])) for key in keys
        },
        "paired_frozen_minus_learned": comparisons(measured),
        "relative_change": {key: summary([r["table_change"][key] for r in per_seed]) for key in keys},
        **geometry,
        "embedding": r0.get("embedding"),
        "diverged": {key: sum(r["runs"][key]["diverged"] for r in per_seed) for key in keys},
        "thresholds": {
            "min_relative_change": float(st["min_relative_change"]),
            "min_loss_gain": float(st["min_loss_gain"]),
        },
    }


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """The claim's label (:func:`decide`) with its parts (``claim_parts``): the nn.Embedding
    definition check and the experiment, with the power of its primary comparison."""
    from whylab.concepts.c03_embedding.claim_parts import build_parts

    v = decide(metrics)
    return replace(v, parts=tuple(build_parts(CLAIM_ID, metrics, v.label)))


def decide(metrics: Mapping[str, Any]) -> Verdict:
    """The table must move in training (else not supported). Then one part per frozen random table,
    paired over seeds and Holm-corrected: learning clearly lowers the loss past ``min_loss_gain``
    (confirmed), the frozen table is clearly better or no different in a way that matters
    (contradicted), or neither (limited: never lowers the label). All judged parts confirmed:
    supported; any contradicted: partly (the table is trained, but a random code served as well);
    nothing judged: inconclusive."""
    th = metrics["thresholds"]
    comps = metrics["paired_frozen_minus_learned"]
    part = SPEC.part("learned")
    assert part.primary is not None
    out = VerdictOf(
        Kind.EXPERIMENT,
        primary=Msg(part.primary.text, seeds=metrics["n_seeds"], min_loss_gain=th["min_loss_gain"]),
    )

    min_seeds = SPEC.threshold("min_seeds")
    if metrics["n_seeds"] < min_seeds or any(c["n"] < min_seeds for c in comps.values()):
        return out.branch(Label.INCONCLUSIVE, "C03.verdict.one_seed")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C03.verdict.diverged")
    change = metrics["relative_change"][LEARNED]["mean"]
    moved = change >= th["min_relative_change"]
    rejected = holm_of(comps)
    status = {k: part_status(c, rejected[k]) for k, c in comps.items()}
    label = label_of(list(status.values()))
    out.limited.extend(
        Msg("C03.limited.unclear", table=table_name(k), min_loss_gain=th["min_loss_gain"])
        for k, st in status.items()
        if st == "limited"
    )
    numbers = Msg(
        "C03.reason.numbers",
        change=change,
        comparisons=[
            Msg("C03.reason.comparison", table=table_name(k), delta=describe(c, "nats/token"))
            for k, c in comps.items()
        ],
    )
    if not moved:
        # the table did not move: its limits are not this branch's (as before)
        out.limited.clear()
        return out.branch(Label.NOT_SUPPORTED, "C03.verdict.not_moved", numbers=numbers)
    if label == "inconclusive":
        return out.branch(Label.INCONCLUSIVE, "C03.verdict.no_clear_comparison", numbers=numbers)
    if label == "supported":
        return out.branch(Label.SUPPORTED, "C03.verdict.learning_helps", numbers=numbers)
    return out.branch(Label.PARTLY, "C03.verdict.random_as_good", numbers=numbers)
