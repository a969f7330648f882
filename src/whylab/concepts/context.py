"""What a claim's code is handed: the context of a measuring or drawing step, and what was measured.

Light on purpose (no torch, no plotting, no message catalogues): a claim's ``experiment.py``
imports it, and what a measuring step imports decides when Snakemake re-runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ConceptContext:
    claim_id: str
    settings: dict[str, Any]  # the concept's config section, plus "seeds" and "device"
    inputs: dict[str, Path]
    outdir: Path  # a private working folder; becomes results/concepts/<id>/ on success
    threads: int
    device: str  # resolved: "cpu" or "cuda"

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.settings.get("seeds", [0])]


@dataclass
class Measured:
    """Everything a claim's measuring step recorded, as JSON gave it back.

    ``whole`` is what ``experiment.measure`` returned (empty when the claim has none);
    ``per_seed`` what ``experiment.measure_seed`` returned for each of ``seeds``, in that order
    (empty when it has none). ``settings`` are the settings the measurement ran with.
    """

    claim_id: str
    settings: dict[str, Any]
    seeds: list[int]
    whole: dict[str, Any] = field(default_factory=dict)
    per_seed: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
