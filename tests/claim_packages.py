"""Shared checks of claim packages (whylab/concepts/<claim>/): what their measuring imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# what a measure job must not load: drawing, texts, result records, verdicts (and their libraries)
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
    """Importing the claim's ``experiment`` module, in a fresh interpreter, loads none of
    :data:`FORBIDDEN` (directly or through what it imports)."""
    from whylab.concepts import REGISTRY

    module = f"{REGISTRY[claim_id]}.experiment"
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN))
    assert not heavy, f"{module} imports {', '.join(heavy)}: a measure job must not load them"
