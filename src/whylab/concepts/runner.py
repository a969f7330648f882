"""A claim package's whole run in one call: measure and decide in this process, or decide only.

:func:`run_concept` is what the plain CLI call of a claim (``python -m whylab C07 ...``), the
tests and the benchmarks run. With ``measurements`` or ``seed.<n>`` inputs (the files the
claim's measure and seed jobs wrote) it is the decide job (:func:`whylab.concepts.deciding.run_decide`);
without, it measures here (:func:`whylab.concepts.measuring.measure_in_process`: ``measure`` and
every seed's ``measure_seed``) and decides from that. Either way the measurements pass through
JSON before ``verdict.summarize`` sees them, so both give the same result.

One seed alone is :func:`whylab.concepts.measuring.run_measure_seed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from whylab.concepts.deciding import decide, run_decide, split_inputs
from whylab.concepts.measuring import MEASUREMENTS_INPUT, measure_in_process

__all__ = ["run_concept"]


def run_concept(
    claim_id: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Path],
    result_path: Path,
    threads: int = 1,
) -> dict[str, Any]:
    """Run one claim and write ``result_path`` (and its figures) atomically.

    With ``measurements`` or ``seed.<n>`` inputs only the decide step runs; otherwise the claim
    measures in this process (its other inputs are the experiment's) and then decides.
    """
    plain, seed_files = split_inputs(inputs)
    if seed_files or MEASUREMENTS_INPUT in plain:
        return run_decide(claim_id, settings, inputs, result_path)
    measured = measure_in_process(claim_id, settings, plain, threads)
    return decide(claim_id, settings, measured, result_path)
