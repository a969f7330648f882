"""Shared by the claim packages' tests (tests/test_cNN.py): checks of a package's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from whylab.concepts import REGISTRY

SRC = Path(__file__).resolve().parents[1] / "src"
# what a measure job must not import: drawing, texts, results and verdicts are the decide job's
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
    """Importing the claim's ``experiment`` module in a fresh interpreter loads none of FORBIDDEN
    (directly or through what it imports)."""
    module = f"{REGISTRY[claim_id]}.experiment"
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not heavy, f"{module} imports {', '.join(heavy)}"
