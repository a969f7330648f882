"""Checks shared by the claim packages' tests (whylab/concepts/<claim>/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import whylab
from whylab.concepts import REGISTRY

# what a measure job must not import: drawing, texts, the result schema and verdicts are the decide
# job's, so editing them re-runs no measurement (the DAG's code inputs follow the imports)
FORBIDDEN_IN_MEASURING = (
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
    """Importing the claim's ``experiment`` module (in a fresh interpreter) loads none of
    :data:`FORBIDDEN_IN_MEASURING`, directly or through what it imports."""
    module = f"{REGISTRY[claim_id]}.experiment"
    src = str(Path(whylab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, f"importing {module} failed:\n{done.stderr}"
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_MEASURING))
    assert not heavy, f"{module} imports {', '.join(heavy)}: the measure job would re-run on their edits"
