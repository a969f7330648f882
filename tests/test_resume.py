"""A killed run resumes with the README's command (``make run``) and ends where an uninterrupted run ends.

The unit tests drive ``whylab.recover`` on a two-rule Snakefile (seconds); the e2e test kills
the whole DAG on config/test.yaml while a job runs and compares every result with the
uninterrupted run ``test_e2e.py`` makes (the session fixture ``test_dag_run``).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from whylab import recover
from whylab.lm import train as lm_train
from workflow_copy import workflow_copy

REPO = Path(__file__).resolve().parents[1]

TINY_SNAKEFILE = """
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    shell: "echo a > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "echo half > {output}; test -e fast || sleep 120; cat {input} > {output}; echo b >> {output}"
"""


def _recover(work: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "whylab.recover", "--cores", "1", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _leave_a_dead_run(work: Path) -> None:
    """Start Snakemake, SIGKILL it and its job while rule b runs: its lock and b's marker stay."""
    (work / "Snakefile").write_text(TINY_SNAKEFILE, encoding="utf-8")
    run = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (work / "b.txt").exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.1)
        assert (work / "b.txt").exists()
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert list((work / ".snakemake" / "locks").glob("*.lock"))
    (work / "fast").touch()  # from now on rule b finishes at once


def test_processes_are_found_by_working_directory_and_command(tmp_path: Path) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    procs = [
        (10, 1, "/venv/bin/python /venv/bin/snakemake --cores 2", here),
        (11, 10, "/bin/bash -c python -m whylab tokenizers --settings {}", here),
        (12, 1, "python -m snakemake --cores 1", elsewhere),
        (13, 1, "vim Snakefile", here),
        (14, 1, "python -m whylab.recover --cores 2", here),
        (15, 1, "snakemake -n", None),
    ]
    found = recover.workers_in(here, procs)
    assert [w.pid for w in found] == [10, 11]
    # the live process table: this test process is never its own "other run"
    assert all(w.pid != os.getpid() for w in recover.workers_in(Path.cwd()))


def test_a_stale_lock_and_a_half_done_job_are_recovered(tmp_path: Path) -> None:
    _leave_a_dead_run(tmp_path)
    proc = _recover(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a run that died left its lock" in proc.stderr
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "a\nb\n"
    assert not list((tmp_path / ".snakemake" / "locks").glob("*.lock"))


def test_nothing_is_touched_while_another_snakemake_works_here(tmp_path: Path) -> None:
    _leave_a_dead_run(tmp_path)
    # a live process that looks like a whylab job of another run, working in this directory
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-m", "whylab", "tokenizers"],
        cwd=tmp_path,
    )
    try:
        time.sleep(0.2)
        proc = _recover(tmp_path)
    finally:
        other.kill()
        other.wait()
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {other.pid}" in lines[0] and "another Snakemake run" in lines[0]
    assert len(list((tmp_path / ".snakemake" / "locks").glob("*.lock"))) == 2
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "half\n"


def test_a_second_recover_in_the_same_directory_stops(tmp_path: Path) -> None:
    _leave_a_dead_run(tmp_path)
    fd = os.open(tmp_path / ".snakemake" / recover.RUN_LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242")
    try:
        proc = _recover(tmp_path)
    finally:
        os.close(fd)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"whylab: another run is working in {tmp_path.resolve()} (pid 4242); wait for it or stop it"
    )
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "half\n"


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(3)
    np.random.seed(3)  # noqa: NPY002 -- the global RNG the checkpoint stores
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    np.random.standard_normal()  # noqa: NPY002
    torch.save({"rng": lm_train._rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.random(), torch.rand(1).item())  # noqa: NPY002
    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    torch.manual_seed(99)
    lm_train._set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected  # noqa: NPY002


# --- the DAG, killed and resumed --------------------------------------------------------------

# metric names that measure time or speed (they differ between any two runs) or the process's
# memory as the OS sees it; everything else must be equal
TIMING = re.compile(
    r"(?:^|[_/])(?:time|times|seconds|secs|ms|s|sec|latency|latencies|throughput|per_s|wall|elapsed"
    r"|speed|speedup|speedups|speed-up|mfu|rss|timing|timings|duration)(?:[_/]|$)",
    re.IGNORECASE,
)


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A result without what legitimately differs between two runs: timings and the environment."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not TIMING.search(str(k))}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        return value

    kept = {k: v for k, v in result.items() if k not in ("environment", "wall_time_s", "finished_at")}
    kept["verdict"] = {"label": result["verdict"]["label"]}
    kept["tables"] = [
        [
            {
                c: v
                for c, v in zip(table["columns"], row, strict=True)
                if not TIMING.search(c.replace(" ", "_"))
            }
            for row in table["rows"]
        ]
        for table in result.get("tables", [])
        # ONNX Runtime's profile, op type by op type: which op types make the top of the list (and so
        # the table's rows) follows their measured times
        if table.get("name") != "kernel_profile"
    ]
    return strip(kept)


# What else differs between two runs of the same config on the same machine, and why (the
# README's "Determinism" paragraph lists the same): claim -> paths (as ``differences`` names them).
KERNEL_PROFILE = (
    r"^\.(literature\[\d+\]\.(note|messages\.note\..*)|tables\[\d+\]\[\d+\]\.evidence"
    r"|metrics\.real_scale\..*\.kernel_(path|path_msg|profile)\b.*"
    r"|tables\[\d+\]\[\d+\]\.(kernel path|evidence))$"
)
VARYING: dict[str, re.Pattern[str]] = {
    # the process's RSS high-water mark (VmHWM) on CPU: allocator and OS, not the model
    "C14": re.compile(r"^\.metrics\.variants\.\w+\.peak_bytes\[\d+\]$|^\.tables\[0\]\[\d+\]\.peak extra"),
    # sentences quoting the measured speed-ups (the real-scale literature note and evidence cells)
    # (and the note's catalogue parameters, kept beside it)
    # and ONNX Runtime's profile: each op type's measured share of kernel time, so their order too
    "C12": re.compile(KERNEL_PROFILE),
    "C13": re.compile(KERNEL_PROFILE),
    # a sentence quoting the measured time overhead
    "C19": re.compile(r"^\.(metrics\.chen_note|literature\[\d+\]\.(note|messages\.note\.params\.\w+))$"),
}


def nondeterministic_differences(claim_id: str, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Differences between two runs' results of one claim beyond timings and the named ones."""
    allowed = VARYING.get(claim_id)
    return [
        line
        for line in differences(comparable(a), comparable(b))
        if allowed is None or not allowed.search(line.split(":", 1)[0])
    ]


def differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                yield f"{path}.{key}: only in one run"
            else:
                yield from differences(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


def _results(root: Path) -> dict[str, dict[str, Any]]:
    return {
        p.parent.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((root / "results" / "concepts").glob("C*/result.json"))
    }


def _make_run(work: Path) -> list[str]:
    """The README's command, ``make run``, on the test config with this interpreter's environment."""
    venv = Path(sys.executable).parent.parent
    return [
        "make",
        "-o",
        str(venv / ".whylab-installed"),  # the environment exists: no install step
        "run",
        f"VENV={venv}",
        "CONFIG=config/test.yaml",
        "CORES=1",
    ]


@pytest.mark.e2e
def test_killed_dag_resumes_with_make_run_to_the_same_results(test_dag_run: Path, tmp_path: Path) -> None:
    work = workflow_copy(tmp_path / "killed")
    (work / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.Popen(
        _make_run(work),
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: make, Snakemake and every job
    )
    incomplete = work / ".snakemake" / "incomplete"
    deadline = time.monotonic() + 900
    try:
        # kill once the first claim is done and a later job is half-way (marked incomplete)
        while time.monotonic() < deadline and run.poll() is None:
            done = list((work / "results" / "concepts").glob("C*/result.json"))
            running = [p for p in incomplete.rglob("*") if p.is_file()] if incomplete.is_dir() else []
            if done and running:
                break
            time.sleep(0.2)
        assert run.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    for _ in range(50):  # the kernel reaps the group
        if not recover.workers_in(work):
            break
        time.sleep(0.1)
    assert not recover.workers_in(work)
    assert list((work / ".snakemake" / "locks").glob("*.lock")), "a killed Snakemake leaves its lock"
    killed_at = set(_results(work))

    again = subprocess.run(_make_run(work), cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-5000:]
    assert "a run that died left its lock" in again.stderr
    assert f"Report (en): {work / 'reports' / 'index.html'}" in again.stdout
    assert f"Report (ko): {work / 'reports' / 'index.ko.html'}" in again.stdout

    html = (work / "reports" / "index.html").read_text(encoding="utf-8")
    reference = _results(test_dag_run)
    resumed = _results(work)
    assert resumed.keys() == reference.keys() and killed_at < set(resumed)
    for claim_id in reference:
        assert f'id="{claim_id}"' in html
    diffs = [
        f"{claim_id}{line}"
        for claim_id in reference
        for line in nondeterministic_differences(claim_id, reference[claim_id], resumed[claim_id])
    ]
    assert not diffs, "\n".join(diffs[:40])
