"""whylab.parts: power, what to believe, and the rule that combines parts into a claim's label."""

from __future__ import annotations

import math
import random

import pytest

from whylab.messages import Msg
from whylab.parts import (
    Belief,
    FieldAnswer,
    PartVerdict,
    Power,
    Published,
    Source,
    believed,
    combine,
    run_label,
    what_to_believe,
)
from whylab.verdict import Kind, Label, VerdictOf, effect, holm, paired_test

S, P, N, U = Label.SUPPORTED, Label.PARTLY, Label.NOT_SUPPORTED, Label.INCONCLUSIVE  # U: undecided
PAPER = Published("Xiong et al. 2020", "Figure 3", 4.0, "x", "https://arxiv.org/abs/2002.04745")


def field(label: Label) -> FieldAnswer:
    return FieldAnswer(label, Msg("common.empty"), (PAPER,))


def test_power_is_the_paired_detectable_effect() -> None:
    # (t_0.975,4 + t_0.8,4) * sd / sqrt(5) = (2.776 + 0.941) * 1 / 2.236
    power = Power.paired(sd=1.0, n=5, unit="nats/token", predicted=2.0)
    assert power.detectable == pytest.approx((2.7764 + 0.9410) / math.sqrt(5), rel=1e-3)
    assert not power.limited
    assert Power.paired(sd=1.0, n=5, unit="u", predicted=1.0).limited  # 1.66 > 1.0: could not see it
    assert Power.paired(sd=1.0, n=5, unit="u").limited is False  # nobody predicts a size


def test_zero_spread_and_one_seed_are_limits_not_certainty() -> None:
    ceiling = Power.paired(sd=0.0, n=5, unit="accuracy")
    assert ceiling.zero_spread and ceiling.limited and ceiling.to_dict()["detectable"] is None
    assert Power.paired(sd=0.3, n=1, unit="u").limited


def test_a_limited_run_is_inconclusive_never_lower() -> None:
    limited = Power.paired(sd=0.0, n=5, unit="u")
    assert run_label(N, limited) is U and run_label(P, limited) is U
    assert run_label(S, limited) is S  # an effect seen despite the limit still counts
    assert run_label(N, Power.paired(sd=0.01, n=5, unit="u", predicted=1.0)) is N


@pytest.mark.parametrize(
    ("run", "lit", "want"),
    [
        (S, S, Belief(S, Source.BOTH)),
        (N, S, Belief(N, Source.DISAGREE)),
        (U, N, Belief(N, Source.LITERATURE)),
        (S, None, Belief(S, Source.RUN)),
        (U, None, Belief(U, Source.NEITHER)),
        (U, U, Belief(U, Source.NEITHER)),
        (P, U, Belief(P, Source.RUN)),
    ],
)
def test_what_to_believe(run: Label, lit: Label | None, want: Belief) -> None:
    assert what_to_believe(run, None if lit is None else field(lit)) == want


@pytest.mark.parametrize(
    ("labels", "want"),
    [([S, S], S), ([N, N], N), ([S, N], P), ([S, U], S), ([N, U], N), ([U, U], U), ([P], P), ([], U)],
)
def test_combine(labels: list[Label], want: Label) -> None:
    assert combine(labels) is want


def test_believed_says_when_the_literature_carries_the_claim() -> None:
    def part(run: Label, lit: Label | None) -> PartVerdict:
        return PartVerdict("p", "words", Kind.EXPERIMENT, run, Msg("common.empty"), None, lit and field(lit))

    assert believed([part(U, N), part(U, N)]) == Belief(N, Source.LITERATURE)
    assert believed([part(S, S), part(U, N)]) == Belief(P, Source.BOTH)
    assert believed([part(N, S)]).source is Source.DISAGREE


def test_parts_reach_the_result_record() -> None:
    out = VerdictOf(Kind.EXPERIMENT, primary="p")
    out.parts.append(
        PartVerdict(
            "dimension",
            "임베딩 차원",
            Kind.EXPERIMENT,
            U,
            Msg("common.empty"),
            Power.paired(0.0, 5, "u"),
            field(N),
        )
    )
    # any catalogue branch carries the parts; C01's needs only these parameters
    record = out.branch(
        S, "C01.verdict.all_reversible", tokenizers=1, reversible=[], lossy=[], lossless=[]
    ).to_dict()
    (part,) = record["parts"]  # type: ignore[misc]
    assert part["believe"] == {"label": "not supported", "source": "the literature"}
    assert part["run"]["power"]["zero_spread"] is True
    assert part["literature"]["published"][0]["url"].startswith("https://arxiv.org/")
    assert record["believe"] == {"label": "not supported", "source": "the literature"}


def test_the_combined_decision_rule_is_rarely_decisive_under_the_null() -> None:
    """Two identical arms, five seeds, three parts decided by a paired test with a minimum effect,
    Holm across the parts, a power gate and the combining rule: a decisive claim label (supported
    or not supported, from nothing) comes out in at most 5% of simulated runs."""
    rng = random.Random(0)
    runs, decisive = 2000, 0
    for _ in range(runs):
        tests = {}
        for name in ("a", "b", "c"):
            a = [rng.gauss(0.0, 1.0) for _ in range(5)]
            b = [rng.gauss(0.0, 1.0) for _ in range(5)]
            tests[name] = paired_test(a, b)
        rejected = holm({k: t.p for k, t in tests.items()})
        labels = []
        for name, test in tests.items():
            sign = effect(test, min_effect=0.1) if rejected[name] else 0
            decided = S if sign > 0 else N if sign < 0 else U
            labels.append(run_label(decided, Power.paired(test.sd_diff, test.n, "u", predicted=1.0)))
        decisive += combine(labels) in (S, N)
    assert decisive / runs <= 0.05, decisive / runs
