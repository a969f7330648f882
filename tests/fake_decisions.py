"""A claim decided from nothing measured, by stand-in verdict and figures code: for tests of the
report and the figures, which need a result.json with chosen texts, tables and figures."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from whylab.concepts import REGISTRY, ConceptContext
from whylab.concepts.context import Measured
from whylab.concepts.deciding import decide
from whylab.environment import environment
from whylab.results import Evidence
from whylab.verdict import Verdict


def decide_fake(
    monkeypatch: pytest.MonkeyPatch,
    claim_id: str,
    result: Path,
    draw: Callable[[ConceptContext], Evidence],
    verdict: Callable[[Mapping[str, Any]], Verdict],
) -> Path:
    """Write ``result`` for ``claim_id`` as its decide job would, with ``draw(ctx)`` giving the
    evidence (its ``metrics`` are what the verdict reads) and ``verdict(metrics)`` the verdict.

    The decide step imports ``<package>.verdict`` and ``<package>.figures``; stand-ins for both are
    put first in ``sys.modules`` under the claim's package name for this test only.
    """
    made: dict[str, Evidence] = {}

    def evidence(ctx: ConceptContext) -> Evidence:
        if "evidence" not in made:
            made["evidence"] = draw(ctx)
        return made["evidence"]

    rule = types.ModuleType(f"{claim_id}_fake_verdict")
    figures = types.ModuleType(f"{claim_id}_fake_figures")
    # the metrics come from the evidence: draw first, in a scratch context, then decide from them
    rule.summarize = lambda measured: dict(made["metrics"])  # type: ignore[attr-defined]
    rule.verdict = verdict  # type: ignore[attr-defined]
    figures.draw = lambda ctx, measured, metrics: evidence(ctx)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"{REGISTRY[claim_id]}.verdict", rule)
    monkeypatch.setitem(sys.modules, f"{REGISTRY[claim_id]}.figures", figures)
    scratch = result.parent.parent / f".{claim_id}-metrics"
    scratch.mkdir(parents=True, exist_ok=True)
    made["metrics"] = dict(draw(ConceptContext(claim_id, {}, {}, scratch, 1, "cpu")).metrics)
    measured = Measured(claim_id, {"device": "cpu"}, [0], environment=environment("cpu", 1))
    decide(claim_id, {"seeds": [0], "device": "cpu"}, measured, result)
    return result
