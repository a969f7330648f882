"""The mechanism rules (claims' own tests: tests/test_c03.py ... test_c11.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from workflow_copy import workflow_copy

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the rules


def test_mechanisms_tokenizer_must_be_built(tmp_path: Path) -> None:
    """A tokenizer the tokenizers rule does not build stops the run with one line, before any job."""
    workflow_copy(tmp_path)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile", "config/test.yaml"]
    (tmp_path / "bad.yaml").write_text("mechanisms:\n  tokenizer: {vocab_size: 4000}\n", encoding="utf-8")
    bad = subprocess.run([*cmd, "bad.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1] == (
        "whylab: config error: mechanisms.tokenizer.vocab_size: 4000 is not built by the tokenizers rule "
        "(it builds 800, 1200); pick one of those"
    )
    good = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr[-2000:]
    for claim in ("C05", "C10", "C11"):
        assert f"concept_{claim}" in good.stdout + good.stderr
    assert not (tmp_path / "results").exists()
