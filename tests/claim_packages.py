"""Checks every claim package shares: its measuring step stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from whylab.concepts import REGISTRY

SRC = Path(__file__).resolve().parents[1] / "src"
# what a measure job must not import: drawing, texts, results, verdicts (they belong to the decide job)
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


def assert_measuring_is_light(claim_id: str) -> None:
    """Importing the claim's experiment.py in a fresh process imports none of FORBIDDEN."""
    module = f"{REGISTRY[claim_id]}.experiment"
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{module} imports {bad}"
