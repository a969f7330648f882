"""What workflow/rules/bench_baseline.smk needs at parse time, kept free of torch so that parsing
the Snakefile (and a no-op re-run) stays fast."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def rule_settings(mechanisms: Mapping[str, Any], seed: int, device: str) -> str:
    """The bench_baseline rule's --settings JSON: exactly what defines one seed's baseline, so the
    rule re-runs when (and only when) the shared model or train settings change."""
    return json.dumps(
        {"seed": int(seed), "device": device, "model": mechanisms["model"], "train": mechanisms["train"]},
        sort_keys=True,
    )
