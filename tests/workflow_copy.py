"""One way for tests to run the DAG in a fresh folder: a copy of the workflow and the package sources."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def workflow_copy(dest: Path) -> Path:
    """Snakefile, workflow/, config/, src/ and benchmarks/recorded/ (the report reads a record
    there; not results/, .snakemake/ or the venv) under ``dest``.

    The Snakefile puts its own ``src/`` first on the path, so the copy runs the code of one moment.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("workflow", "config", "src", "benchmarks/recorded"):
        shutil.copytree(REPO / folder, dest / folder, ignore=skip)
    return dest
