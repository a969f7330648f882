"""C03's sentence part by part: "임베딩 nn.Embedding 클래스 사용" (a definition check on the bench
model's token table) and "임베딩 층 자체도 학습이 된다" (the experiment: the table moves in training
and learning it beats a frozen random table, with the power of the primary paired comparison).

The literature's answer is computed from the statements claim.yaml records (a source whose value
is "learned" reports trained token embeddings): every source -> supported, none -> not supported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts.c03_embedding import FROZEN
from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Power, Published, run_label
from whylab.verdict import Kind, Label

UNIT = "nats/token"


def field_answer(key: str, published: Sequence[Published]) -> FieldAnswer | None:
    if not published:
        return None
    learned = [p for p in published if str(p.value) == "learned"]
    label = (
        Label.SUPPORTED
        if len(learned) == len(published)
        else Label.NOT_SUPPORTED
        if not learned
        else Label.PARTLY
    )
    first = published[0]
    return FieldAnswer(
        label,
        Msg(key, count=len(learned), n=len(published), source=first.source, where=first.where),
        tuple(published),
    )


def primary_key(comps: Mapping[str, Any]) -> str | None:
    """The primary frozen table: the model's own init (the learned arm's starting table) when it ran."""
    if FROZEN in comps:
        return FROZEN
    return next(iter(comps), None)


def primary_power(comps: Mapping[str, Any], min_gain: float) -> Power:
    key = primary_key(comps)
    test = comps[key].get("test") if key is not None else None
    if not test:
        return Power.paired(math.nan, int(comps[key]["n"]) if key else 0, UNIT, predicted=min_gain)
    sd = test.get("sd_diff")
    return Power.paired(math.nan if sd is None else float(sd), int(test["n"]), UNIT, predicted=min_gain)


def _embedding_part(claim_id: str, embedding: Mapping[str, Any] | None) -> PartVerdict:
    part = load_spec(claim_id).part("nn_embedding")
    if not embedding:
        run, reason = Label.INCONCLUSIVE, Msg("C03.part.nn_embedding.run.unknown")
    else:
        ok = embedding["class"] == "Embedding" and bool(embedding["trainable"])
        run = Label.SUPPORTED if ok else Label.NOT_SUPPORTED
        reason = Msg(
            "C03.part.nn_embedding.run.checked",
            cls=embedding["class"],
            trainable=Msg(f"C03.part.nn_embedding.trainable.{'yes' if embedding['trainable'] else 'no'}"),
        )
    published = [Published.from_dict(p) for p in part.literature]
    field = field_answer("C03.part.nn_embedding.field", published)
    return PartVerdict(part.id, part.words, Kind.DEFINITION, run, reason, None, field)


def build_parts(claim_id: str, metrics: Mapping[str, Any], decided: Label) -> list[PartVerdict]:
    """The two parts; ``decided`` is the claim's own label for the experiment (verdict.py)."""
    comps = metrics["paired_frozen_minus_learned"]
    min_gain = float(metrics["thresholds"]["min_loss_gain"])
    power = primary_power(comps, min_gain)
    key = primary_key(comps)
    test = comps[key].get("test") if key else None
    part = load_spec(claim_id).part("learned")
    reason = Msg(
        "C03.part.learned.run",
        change=metrics["relative_change"]["learned"]["mean"],
        table=Msg(f"C03.table_name.{key}") if key else "-",
        delta=float(test["mean_diff"]) if test else math.nan,
        n=power.n,
        detectable=power.detectable,
        min_gain=min_gain,
        limited=Msg("C03.part.learned.limited" if power.limited else "C03.part.learned.not_limited"),
    )
    published = [Published.from_dict(p) for p in part.literature]
    learned = PartVerdict(
        part.id,
        part.words,
        Kind.EXPERIMENT,
        run_label(decided, power),
        reason,
        power,
        field_answer("C03.part.learned.field", published),
    )
    return [_embedding_part(claim_id, metrics.get("embedding")), learned]
