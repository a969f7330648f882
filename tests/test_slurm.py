"""The SLURM profile, run for real: a one-node cluster on this machine, jobs through sbatch.

Opt-in (it installs packages, starts daemons as root and takes a few minutes):

    WHYLAB_SLURM_TEST=1 pytest tests/test_slurm.py

tests/cluster/slurm_local.sh starts the cluster (no accounting, so the plugin polls with
squeue) and always stops it afterwards. Snakemake runs as a user would: their own cluster
profile (account, partition, status command, queue size; tests/cluster/user_profile.yaml)
plus the workflow's profile (workflow/profiles/slurm: retries, job groups, keep-going). The workflow runs from a copy in a temporary folder,
so it never takes the repository's .snakemake lock or writes its results/. The copy includes
src/ (the Snakefile puts <workflow>/src first on sys.path and PYTHONPATH, in the jobs too), so
rules, schemas and package come from one snapshot even while the repository is being edited.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workflow_copy import workflow_copy

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "tests" / "cluster" / "slurm_local.sh"
USER_PROFILE = REPO / "tests" / "cluster" / "user_profile.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# the CPU-only part of the spine: corpus -> tokenizers (en, ko, joint) -> C01, C02
TARGETS = ["results/concepts/C01/result.json", "results/concepts/C02/result.json"]
SPINE_RULES = {"corpus", "tokenizers", "concept_C01", "concept_C02"}  # and the claims' measure jobs
SPINE_PREFIXES = ("corpus", "tokenizers", "concept_C01", "concept_C02")
# a group job's id is a UUID, a single job's a number
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+)")
SUBMITTED_IDS = re.compile(r"has been submitted with SLURM jobid (\d+)")

pytestmark = pytest.mark.skipif(
    os.environ.get("WHYLAB_SLURM_TEST") != "1",
    reason="real SLURM test: set WHYLAB_SLURM_TEST=1 (needs root and apt; starts a local cluster)",
)


@dataclass
class Run:
    returncode: int
    output: str

    def submitted(self) -> dict[str, str]:
        """snakemake job id -> SLURM job id, from the plugin's submission lines."""
        return {m.group(1): m.group(2) for m in SUBMITTED.finditer(self.output)}

    def resources(self) -> dict[str, dict[str, str]]:
        """snakemake job id -> the resources snakemake printed for that job."""
        found = {}
        for block in re.split(r"\n(?=(?:local)?rule \w+:)", self.output):
            jobid = re.search(r"^\s+jobid: (\d+)$", block, re.M)
            resources = re.search(r"^\s+resources: (.*)$", block, re.M)
            if jobid and resources:
                pairs = (item.split("=", 1) for item in resources.group(1).split(", ") if "=" in item)
                found[jobid.group(1)] = dict(pairs)
        return found

    def explain(self) -> str:
        return f"snakemake exited {self.returncode}; last output:\n{self.output[-4000:]}"


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("WHYLAB_SLURM_TEST=1 needs root: slurm_local.sh installs packages and starts daemons")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.fail("WHYLAB_SLURM_TEST=1 needs a Debian/Ubuntu machine (apt-get) or SLURM installed")
    try:
        started = subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=600
        )
        assert started.returncode == 0, f"cluster did not start:\n{started.stderr[-3000:]}"
        yield
    finally:
        stopped = subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), "stop"], capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, f"cluster did not stop cleanly:\n{stopped.stderr[-3000:]}"


def user_profile(dest: Path) -> Path:
    """The user's own cluster profile (what a cluster's users keep in ~/.config/snakemake/<name>/)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(USER_PROFILE, dest / "config.yaml")
    return dest


def snakemake_slurm(workdir: Path, *args: str, limit_s: int = 600) -> Run:
    """Run snakemake with the user's profile and the workflow's, bounded by `timeout` (it can hang on status checks)."""
    command = [
        "timeout", "-k", "10", str(limit_s), str(SNAKEMAKE),
        "--configfile", "config/test.yaml",  # before the profiles: it takes every word up to the next flag
        "--profile", str(user_profile(workdir.parent / "user-profile")),
        "--workflow-profile", "workflow/profiles/slurm",
        *args,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode not in (124, 137), f"snakemake timed out after {limit_s}s\n{done.stderr[-4000:]}"
    return Run(done.returncode, done.stdout + done.stderr)


def slurm_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` as key -> value (finished jobs stay visible for MinJobAge = 300 s)."""
    shown = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True, check=True
    )
    return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def test_spine_runs_through_slurm(slurm_cluster: None, tmp_path: Path) -> None:
    wf = workflow_copy(tmp_path / "wf")
    run = snakemake_slurm(wf, *TARGETS)
    assert run.returncode == 0, run.explain()

    for target in TARGETS:
        result = json.loads((wf / target).read_text(encoding="utf-8"))
        assert result["verdict"]["label"], f"{target} has no verdict"

    submitted = run.submitted()
    assert submitted, "no job was submitted to SLURM:\n" + run.explain()
    resources = run.resources()
    comments = set()
    for sm_id, slurm_id in submitted.items():
        job = slurm_job(slurm_id)
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (sm_id, job)
        comment = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["Comment"])
        assert comment, job["Comment"]
        comments.add(comment.group(1))
        if sm_id in resources:  # a single job: the rule's own mem_mb and runtime (minutes) reached sbatch
            wanted = resources[sm_id]
            assert job["MinMemoryNode"] == f"{wanted['mem_mb']}M", (wanted, job)
            hours, minutes = divmod(int(wanted["runtime"]), 60)
            assert job["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00", (wanted, job)
            assert job["Partition"] == "debug", job  # from the user's profile
    # the three tokenizer trainings, C01 and C02 ran as one SLURM job (the workflow profile's group)
    # (a group job's comment is rule_<group>_<its rules>)
    group_comments = comments - {"corpus"}
    assert "corpus" in comments and len(group_comments) == 1, comments
    assert next(iter(group_comments)).startswith("tokenization_concept_C01"), comments
    assert len(submitted) == 2, submitted
    group_rules = set(re.findall(r"^\s+rule (\w+):$", run.output, re.M)) - {"corpus"}
    # the decide jobs read JSON and draw: local rules, run where Snakemake runs, never submitted
    local_rules = set(re.findall(r"^\s*localrule (\w+):$", run.output, re.M))
    assert {"concept_C01", "concept_C02"} <= local_rules, local_rules
    assert group_rules | local_rules | {"corpus"} >= SPINE_RULES, (group_rules, local_rules)
    assert all(r.startswith(SPINE_PREFIXES) for r in group_rules | local_rules), group_rules

    # nothing left to do: a second call submits nothing and still exits 0
    again = snakemake_slurm(wf, *TARGETS, limit_s=180)
    assert again.returncode == 0, again.explain()
    assert not again.submitted(), again.explain()


def test_failing_rule_fails_the_run(slurm_cluster: None, tmp_path: Path) -> None:
    """A corpus file that exists but is binary passes the config check; its SLURM job fails."""
    wf = workflow_copy(tmp_path / "wf")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"not text\x00\x01\x02" * 10)
    run = snakemake_slurm(
        wf, "--config", f"corpus={{sources: [{{path: '{bad}', lang: en}}]}}",
        "--", "results/corpus/stats.json", limit_s=300,
    )  # fmt: skip
    assert run.returncode != 0, run.explain()
    # the workflow profile's `retries: 1`: submitted twice, the second time with twice the memory
    slurm_ids = sorted(SUBMITTED_IDS.findall(run.output), key=int)
    assert len(slurm_ids) == 2, run.explain()
    jobs = [slurm_job(i) for i in slurm_ids]
    assert [j["JobState"] for j in jobs] == ["FAILED", "FAILED"], jobs
    first, second = (int(j["MinMemoryNode"].rstrip("M")) for j in jobs)
    assert second == 2 * first, (first, second)
    # show-failed-logs: the step's one-line error reaches the user's console
    assert "looks like a binary file" in run.output, run.explain()
    assert not (wf / "results/corpus/stats.json").exists()


def test_bad_config_stops_before_any_submission(slurm_cluster: None, tmp_path: Path) -> None:
    wf = workflow_copy(tmp_path / "wf")
    missing = tmp_path / "no-such-corpus.txt"
    run = snakemake_slurm(
        wf, "--config", f"corpus={{sources: [{{path: '{missing}', lang: en}}]}}",
        "--", "results/corpus/stats.json", limit_s=120,
    )  # fmt: skip
    assert run.returncode != 0, run.explain()
    assert "does not exist" in run.output, run.explain()
    assert not run.submitted(), run.explain()
