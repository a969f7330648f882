"""Checks shared by the claim packages' tests (whylab/concepts/<claim>/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from whylab.concepts import REGISTRY

SRC = Path(__file__).resolve().parents[1] / "src"
# what a measure job must not import: plotting, fonts, texts, result schema, verdict rules, claims
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
    """Importing the claim's ``experiment`` module (in a fresh interpreter) imports none of
    :data:`FORBIDDEN`, directly or not."""
    module = f"{REGISTRY[claim_id]}.experiment"
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{module} imports {bad}"
