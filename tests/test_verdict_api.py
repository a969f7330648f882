"""The shared statistics of whylab.verdict against known values, and the per-seed measuring."""

from __future__ import annotations

import math
import sys
import types
from typing import Any

import pytest

from whylab.concepts import ConceptContext
from whylab.verdict import (
    Kind,
    Label,
    Verdict,
    effect,
    equivalent,
    holm,
    paired_test,
    t_critical,
    t_two_sided_p,
)


def test_t_distribution_matches_tables() -> None:
    # two-sided 5% critical values of Student's t (any statistics table)
    assert t_critical(2) == pytest.approx(4.3027, abs=1e-4)
    assert t_critical(4) == pytest.approx(2.7764, abs=1e-4)
    assert t_critical(30) == pytest.approx(2.0423, abs=1e-4)
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert t_two_sided_p(1.0, 10) == pytest.approx(0.34089, abs=1e-5)
    assert t_two_sided_p(-3.0, 3) == pytest.approx(t_two_sided_p(3.0, 3))


def test_paired_test_on_known_differences() -> None:
    test = paired_test([1.0, 2.0, 3.0, 4.5], [0.5, 1.1, 2.6, 3.9])  # diffs .5 .9 .4 .6
    assert test.n == 4 and test.mean_diff == pytest.approx(0.6)
    assert test.sd_diff == pytest.approx(0.216025, abs=1e-6)
    assert test.t == pytest.approx(0.6 / (0.216025 / 2), rel=1e-5)
    assert test.p == pytest.approx(0.011507, abs=1e-5)
    assert test.ci_low == pytest.approx(0.6 - 3.1824 * 0.108012, abs=1e-4)  # t(3) = 3.1824
    assert effect(test, 0.1) == 1 and effect(test, 1.0) == 0
    assert effect(paired_test([0.5, 1.1, 2.6, 3.9], [1.0, 2.0, 3.0, 4.5]), 0.1) == -1


def test_pairing_removes_the_seed_to_seed_spread() -> None:
    # arms that differ by a constant 0.1 on top of a large per-seed spread: clear only when paired
    base = [1.0, 3.0, 0.5, 2.2, 4.1]
    test = paired_test([b + 0.1 for b in base], base)
    assert test.p < 1e-10 and effect(test, 0.05) == 1


def test_one_seed_is_never_clear_and_lengths_must_match() -> None:
    test = paired_test([1.0], [0.0])
    assert math.isnan(test.p) and effect(test, 0.0) == 0 and not equivalent(test, 10.0)
    with pytest.raises(ValueError, match="one value per seed"):
        paired_test([1.0, 2.0], [1.0])


def test_equivalence_needs_a_tight_interval() -> None:
    assert equivalent(paired_test([1.00, 1.01, 0.99, 1.0], [1.0, 1.0, 1.0, 1.005]), 0.05)
    assert not equivalent(paired_test([1.0, 1.3, 0.7, 1.0], [1.0, 1.0, 1.0, 1.0]), 0.05)


def test_holm_steps_down() -> None:
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": True, "b": False, "c": False}
    assert holm({"a": 0.01, "b": 0.02, "c": 0.03}) == {"a": True, "b": True, "c": True}
    assert holm({"a": math.nan, "b": 0.001}) == {"a": False, "b": True}


def test_verdict_dict_carries_kind_and_primary() -> None:
    v = Verdict(Label.PARTLY, "why", Kind.DEFINITION, primary="A vs B", limited=("speed",))
    assert v.to_dict() == {
        "label": "partly supported",
        "reason": "why",
        "kind": "definition check",
        "primary": "A vs B",
        "limited": ["speed"],
        "takeaway": "",
        "correction": "",
    }


def test_measuring_runs_each_seed_in_the_settings_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from whylab.concepts import REGISTRY
    from whylab.concepts.measuring import measure_in_process

    seen: list[int] = []

    def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
        seen.append(seed)
        return {"seed": seed, "value": seed * 2}

    experiment = types.ModuleType("fake_claim.experiment")
    experiment.measure_seed = measure_seed  # type: ignore[attr-defined]  # a module built at run time
    monkeypatch.setitem(REGISTRY, "C99", "fake_claim")
    monkeypatch.setitem(sys.modules, "fake_claim.experiment", experiment)
    measured = measure_in_process("C99", {"seeds": [3, 1], "device": "cpu"}, {})
    assert measured.per_seed == [{"seed": 3, "value": 6}, {"seed": 1, "value": 2}] and seen == [3, 1]
    assert measured.whole == {} and measured.seeds == [3, 1]
    monkeypatch.setitem(sys.modules, "fake_claim.experiment", types.ModuleType("fake_claim.experiment"))
    with pytest.raises(AttributeError, match="neither measure"):
        measure_in_process("C99", {"device": "cpu"}, {})


def test_verdict_of_reads_the_limits_when_the_verdict_is_made() -> None:
    from whylab.verdict import VerdictOf

    limited: list[str] = []
    out = VerdictOf(Kind.EXPERIMENT, "A vs B", limited)
    limited.append("speed: no fast path here")
    v = out.branch(Label.INCONCLUSIVE, "C06.verdict.too_few")
    assert v.limited == ("speed: no fast path here",) and v.primary == "A vs B"
    assert v.branch == "C06.verdict.too_few" and v.takeaway and not v.correction


def test_a_branch_gives_its_reason_takeaway_and_correction_or_fails() -> None:
    """Partly and not supported need the branch's correction; a branch without one does not build."""
    from whylab.verdict import VerdictOf

    out = VerdictOf(Kind.EXPERIMENT, "A vs B")
    with pytest.raises(KeyError, match="correction"):
        out.branch(Label.NOT_SUPPORTED, "C06.verdict.too_few")
