"""The quant job group, as a SLURM run with the test cluster's profile (`cores: 2`) submits it,
against what its jobs used in a default run (tests/cluster/default_run_benchmarks.tsv: the
benchmark files of a finished default run on 2 cores, and the group job's own Snakemake).
The request must cover what was used, and ask for at most twice as much where Snakemake's
sizing lets it (workflow/scripts/group_request.py says how Snakemake sizes a group)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workflow/scripts/group_request.py"
RECORDED = REPO / "tests/cluster/default_run_benchmarks.tsv"
CORES = 2  # tests/cluster/user_profile.yaml


def group_request() -> ModuleType:
    spec = importlib.util.spec_from_file_location("group_request", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["group_request"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quant() -> dict[str, Any]:
    """The quant group's request and use, as the script prints them (a DAG build, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(CORES), "--json", "--benchmarks", str(RECORDED)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return next(a for a in json.loads(out.splitlines()[-1]) if a["group"]["name"] == "quant")


def test_every_job_of_the_group_has_a_recorded_benchmark(quant: dict[str, Any]) -> None:
    assert quant["used"] is not None, "a job of the quant group has no line in " + RECORDED.name
    assert sum(len(level) for level in quant["group"]["levels"]) >= 20


def test_the_quant_group_covers_what_its_jobs_used(quant: dict[str, Any]) -> None:
    group, used = quant["group"], quant["used"]
    assert group["cpus"] == CORES == used["cpus"]
    assert group["runtime_min"] * 60 >= used["wall_s"], (group["runtime_min"], used["wall_s"])
    assert group["mem_mb"] >= used["peak_mb"], (group["mem_mb"], used["peak_mb"])


def test_the_quant_group_asks_at_most_twice_the_memory_its_jobs_used(quant: dict[str, Any]) -> None:
    assert quant["group"]["mem_mb"] <= 2 * quant["used"]["peak_mb"]


def test_no_layer_of_the_quant_group_asks_for_more_than_twice_its_longest_job(quant: dict[str, Any]) -> None:
    """Snakemake counts whole minutes, at least one a job (the script's docstring): each
    layer of the group, packed as Snakemake packs it, asks at most twice its longest job's
    measured seconds rounded up to a minute. So the group's runtime is within 2x of its use
    counted in the minutes Snakemake can ask for."""
    gr = group_request()
    measured = gr.read_benchmarks(RECORDED)
    for level in quant["group"]["levels"]:
        for job in level:
            seconds = measured[job["benchmark"]].s
            assert job["runtime_min"] <= 2 * math.ceil(seconds / 60), (job["rule"], seconds)


@pytest.mark.xfail(
    strict=True,
    reason="Snakemake's group runtime is one minute or more per layer of packed jobs: 23 jobs of "
    "4-74 s in 4 levels on 2 CPUs are 13 layers, so at least 13 min for ~5.4 min of use; only "
    "fewer, longer jobs bring it within 2x (README: A cluster)",
)
def test_the_quant_group_asks_at_most_twice_the_time_its_jobs_used(quant: dict[str, Any]) -> None:
    assert quant["group"]["runtime_min"] * 60 <= 2 * quant["used"]["wall_s"]


def test_the_wall_time_packs_each_level_longest_first() -> None:
    gr = group_request()
    assert gr.level_wall_s([30.0, 20.0, 20.0, 10.0], 2) == 40.0
    assert gr.level_wall_s([30.0, 20.0, 20.0, 10.0], 1) == 80.0
    assert gr.level_wall_s([5.0], 4) == 5.0
