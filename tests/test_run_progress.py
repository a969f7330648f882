"""``make run`` says which jobs are running: whylab.recover reads Snakemake's markers of the outputs
it is making and prints one line every WHYLAB_RUNNING_EVERY seconds beside Snakemake's own."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from whylab import recover

REPO = Path(__file__).resolve().parents[1]


def _marker(meta: Path, output: str, age_s: float, now: float, cut: int | None = None) -> None:
    name = base64.urlsafe_b64encode(output.encode()).decode()
    parts = [name] if cut is None else ["@" + name[:cut], name[cut:]]  # a long name, as Snakemake cuts it
    path = meta / "incomplete" / Path(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"external_jobid": null}', encoding="utf-8")
    os.utime(path, (now - age_s, now - age_s))


def test_running_jobs_are_read_from_the_incomplete_markers(tmp_path: Path) -> None:
    now = 1_000_000.0
    _marker(tmp_path, "results/concepts/C07/measurements.json", 65, now)
    _marker(tmp_path, "results/mechanisms/baseline/seed3/model.safetensors", 4, now, cut=10)
    (tmp_path / "incomplete" / "migration_underway").write_text("", encoding="utf-8")  # not a marker
    jobs = recover.running_jobs(tmp_path, now=now)
    assert jobs == [
        ("results/concepts/C07/measurements.json", 65.0),
        ("results/mechanisms/baseline/seed3/model.safetensors", 4.0),
    ]
    assert recover.running_line(jobs) == (
        "running 2 jobs: results/concepts/C07/measurements.json (1:05 min), "
        "results/mechanisms/baseline/seed3/model.safetensors (4 s)"
    )
    assert recover.running_line(jobs * 3, shown=4).endswith(", and 2 more")
    assert recover.running_jobs(tmp_path / "nothing") == []


SLOW = """
rule all:
    input: "out/b.txt"

rule b:
    output: "out/b.txt"
    shell: "sleep 3; echo b > {output}"
"""


def test_make_run_prints_the_running_jobs(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(SLOW, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "WHYLAB_RUNNING_EVERY": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "whylab.recover", "--cores", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "whylab: running 1 job: out/b.txt (" in proc.stderr
    assert (tmp_path / "out" / "b.txt").read_text(encoding="utf-8") == "b\n"
