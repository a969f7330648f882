"""What workflow/rules/bench_baseline.smk needs at parse time, kept free of torch so that parsing
the Snakefile (and a no-op re-run) stays fast."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def expand_extra_inputs(
    extra: Mapping[str, Any], seeds: Sequence[int], seed: int | None = None
) -> dict[str, str]:
    """A mechanism rule's extra inputs (workflow/rules/bench_baseline.smk): ``extra`` maps a name to
    a path or to a function of a seed. For a per-seed job (``seed`` given) a function is called for
    that seed under its own name; for a job over all seeds it is called for every seed, named
    ``<name>_seed<k>`` (the names :func:`whylab.concepts._bench_common.baseline_inputs` reads)."""
    out: dict[str, str] = {}
    for name, value in extra.items():
        if not callable(value):
            out[name] = str(value)
        elif seed is not None:
            out[name] = str(value(seed))
        else:
            out.update({f"{name}_seed{k}": str(value(k)) for k in seeds})
    return out


def rule_settings(mechanisms: Mapping[str, Any], seed: int, device: str) -> str:
    """The bench_baseline rule's --settings JSON: exactly what defines one seed's baseline, so the
    rule re-runs when (and only when) the shared model or train settings change."""
    return json.dumps(
        {"seed": int(seed), "device": device, "model": mechanisms["model"], "train": mechanisms["train"]},
        sort_keys=True,
    )
