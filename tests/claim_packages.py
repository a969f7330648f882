"""Checks every claim package's tests share: its measuring half stays light.

``assert_measuring_is_light(claim_id)`` imports the claim's ``experiment`` module in a fresh
interpreter and fails if that pulled in plotting, fonts, message catalogues, the result schema,
the verdict API, the claims list, seaborn or matplotlib: what a measure job imports decides when
Snakemake re-runs it, and a figure or a text must not re-run a measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
FORBIDDEN = (
    "whylab.plotting",
    "whylab.fonts",
    "whylab.messages",
    "whylab.results",
    "whylab.verdict",
    "whylab.claims",
    "seaborn",
    "matplotlib",
)


def imported_by_experiment(claim_id: str) -> list[str]:
    """Every module loaded by importing the claim's ``experiment`` module (a fresh interpreter)."""
    code = (
        "import importlib, json, sys\n"
        "from whylab.concepts import REGISTRY\n"
        f"importlib.import_module(REGISTRY[{claim_id!r}] + '.experiment')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return modules


def assert_measuring_is_light(claim_id: str) -> None:
    """The claim's experiment.py imports none of :data:`FORBIDDEN`, directly or not."""
    loaded = imported_by_experiment(claim_id)
    heavy = sorted(m for m in loaded if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN))
    assert not heavy, f"{claim_id}: importing experiment.py loads {', '.join(heavy)}"
