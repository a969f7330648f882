"""The quant job group, as a SLURM run submits it with the test cluster's profile (`cores: 2`)
and with the README's example profile (`cores: 4`), against what its jobs used in a default run
(workflow/resources/default_run_benchmarks.tsv: the benchmark files of a finished default run on 2
cores, and the group job's own Snakemake). The request must cover what was used and ask for at most twice as much,
time and memory (workflow/scripts/group_request.py says how Snakemake sizes a group)."""

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
RECORDED = REPO / "workflow/resources/default_run_benchmarks.tsv"
# tests/cluster/user_profile.yaml; the README's example profile
CORES = (2, 4)


def group_request() -> ModuleType:
    spec = importlib.util.spec_from_file_location("group_request", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["group_request"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=CORES, ids=lambda cores: f"cores={cores}")
def quant(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The quant group's request and use, as the script prints them (a DAG build, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(request.param), "--json", "--benchmarks", str(RECORDED)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    answer: dict[str, Any] = next(
        a for a in json.loads(out.splitlines()[-1]) if a["group"]["name"] == "quant"
    )
    return {**answer, "cores": request.param}


def test_every_job_of_the_group_has_a_recorded_benchmark(quant: dict[str, Any]) -> None:
    assert quant["used"] is not None, "a job of the quant group has no line in " + RECORDED.name
    levels = [sorted(job["rule"] for job in level) for level in quant["group"]["levels"]]
    # the real-scale step beside the one job of every variant, then C15's GPTQ re-run: C12's and
    # C13's measure jobs only gather records and every decide job reads JSON: local rules
    assert levels == [["quant_real_scale", "quant_variants"], ["concept_C15_measure"]]


def test_the_short_steps_run_where_snakemake_runs() -> None:
    """Decide jobs, the quant claims' gathering steps and the report are local rules: a job of
    their own would ask a minute and wait in the queue for a few seconds of work."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--local"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    local = set(out.split())
    decide = {f"concept_C{i:02d}" for i in range(1, 22)}
    assert decide | {"concept_C12_measure", "concept_C13_measure", "report", "all"} == local


def test_the_quant_group_covers_what_its_jobs_used(quant: dict[str, Any]) -> None:
    group, used = quant["group"], quant["used"]
    # the widest layer's CPUs, at most `cores` (3 parallel families on 4 cores ask for 3)
    assert group["cpus"] <= quant["cores"] == used["cpus"]
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


def test_the_quant_group_asks_at_most_twice_the_time_its_jobs_used(quant: dict[str, Any]) -> None:
    """One job of every variant (workflow/rules/quant_variants.smk) beside the real-scale step, then
    C15's re-run: two layers of whole minutes, where 23 jobs of seconds were 13 layers on 2 CPUs
    (2.6x their use) and four family jobs with the claims' steps 11 minutes (12x)."""
    assert quant["group"]["runtime_min"] * 60 <= 2 * quant["used"]["wall_s"], (
        quant["group"]["runtime_min"],
        quant["used"]["wall_s"],
    )


def test_the_wall_time_packs_each_level_longest_first() -> None:
    gr = group_request()
    assert gr.level_wall_s([30.0, 20.0, 20.0, 10.0], 2) == 40.0
    assert gr.level_wall_s([30.0, 20.0, 20.0, 10.0], 1) == 80.0
    assert gr.level_wall_s([5.0], 4) == 5.0
