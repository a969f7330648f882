"""What each job group asks SLURM for, computed by Snakemake's own GroupResources on the DAG
a cluster run would build (nothing runs, nothing is submitted), and, given a default run's
benchmark files, what the same jobs used.

    python workflow/scripts/group_request.py CORES [--json] [--benchmarks DIR] [CONFIGFILE ...]
    python workflow/scripts/group_request.py --local [CONFIGFILE ...]

CORES is the `cores:` of your cluster profile (a group's parallel jobs are fitted into it);
none shows what a group asks for without one (every parallel job at once). DIR holds
<job>.tsv benchmark files (results/benchmarks of a finished run) or one TSV of them
(workflow/resources/default_run_benchmarks.tsv: a `job` column, then Snakemake's columns).

How Snakemake 9 sizes a group (snakemake/resources.py, GroupResources.basic_layered): the
group's jobs are split into dependency levels; each level is packed first-fit, longest
`runtime` first, into layers whose jobs together fit `cores` (and any other limited resource);
a layer lasts as long as its longest job and the levels run one after another, so the group's
`runtime` is the sum over levels of the sum over layers of the longest job's minutes, while
CPUs and memory are the widest layer's sums. `runtime` is whole minutes: a string such as
"30s" is read as max(1, floor(seconds / 60)) minutes and a float is rounded, so a job of a few
seconds costs its layer one minute. "Used" below applies the same levels to the measured
seconds, packed longest first onto CORES CPUs: the wall time the group's jobs took, had they
run on the CPUs the group asks for. ``--local`` lists the rules a cluster run runs where
Snakemake runs (local rules: no job of their own), one per line.
"""

from __future__ import annotations

import heapq
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from whylab.cluster_sizes import Measured, read_benchmarks


@dataclass(frozen=True)
class GroupJob:
    """One job of a group: its rule, benchmark file name, threads and declared resources."""

    rule: str
    benchmark: str
    threads: int
    runtime_min: int
    mem_mb: int


@dataclass(frozen=True)
class Group:
    """A job group as submitted: what it requests, and its jobs by dependency level."""

    name: str
    cpus: int
    mem_mb: int
    runtime_min: int
    levels: list[list[GroupJob]]


@dataclass(frozen=True)
class Used:
    """What a group's jobs used, from their benchmarks, run on `cpus` CPUs level by level."""

    cpus: int
    wall_s: float  # levels one after another, each packed longest first onto the CPUs
    serial_s: float  # every job one after another
    cpu_s: float
    peak_mb: float  # the largest sum of peak memory of the jobs of one level that run at once


def build_groups(cores: int | None, configfiles: list[str]) -> list[Group]:
    """The job groups a SLURM run of `Snakefile` from scratch would submit (every job, whatever
    results/ already holds)."""
    groups: list[Group] = []
    with _cluster_dag(cores, configfiles) as w:
        seen = set()
        for job in w.dag.needrun_jobs():
            group = w.dag.get_job_group(job)
            if group is None or group.groupid in seen:
                continue
            seen.add(group.groupid)
            r = dict(group.resources)
            levels = [[_group_job(j) for j in level] for level in group.toposorted]
            groups.append(Group(group.groupid, r["_cores"], r["mem_mb"], r["runtime"], levels))
    return groups


def local_rules(configfiles: list[str]) -> list[str]:
    """The rules of a SLURM run from scratch that run where Snakemake runs, not as jobs."""
    with _cluster_dag(None, configfiles) as w:
        return sorted({str(job.rule) for job in w.dag.needrun_jobs() if w.is_local(job.rule)})


PROFILE = Path("workflow/profiles/slurm/config.yaml")


def profile_group_components(profile: Path = PROFILE) -> dict[str, int]:
    """The workflow profile's group-components (group name -> DAG components per group job)."""
    import yaml

    entries = yaml.safe_load(profile.read_text(encoding="utf-8")).get("group-components") or []
    return {name: int(n) for name, _, n in (str(e).partition("=") for e in entries)}


@contextmanager
def _cluster_dag(cores: int | None, configfiles: list[str]) -> Iterator[Any]:
    """The workflow, its DAG built as a SLURM run of every job would build it."""
    from snakemake.api import SnakemakeApi
    from snakemake.resources import Resources
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        GroupSettings,
        OutputSettings,
        ResourceSettings,
    )
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(
                cores=cores, nodes=1, default_resources=Resources.default("bare")
            ),
            config_settings=ConfigSettings(configfiles=[Path(p) for p in configfiles]),
            snakefile=Path("Snakefile"),
        )
        w = workflow_api._workflow
        w.group_settings = GroupSettings(group_components=profile_group_components())
        w.dag_settings = DAGSettings()
        w.execution_settings = ExecutionSettings()
        w._executor_plugin = ExecutorPluginRegistry().get_plugin("slurm")  # groups exist off-local only
        w._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        w._build_dag()
        w.dag.update_groups()
        yield w


def _group_job(job: object) -> GroupJob:
    resources = job.resources  # type: ignore[attr-defined]
    return GroupJob(
        rule=str(job.rule),  # type: ignore[attr-defined]
        benchmark=Path(str(job.benchmark)).name,  # type: ignore[attr-defined]
        threads=int(job.threads),  # type: ignore[attr-defined]
        runtime_min=int(resources.get("runtime", 0)),
        mem_mb=int(resources.get("mem_mb", 0)),
    )


def level_wall_s(seconds: list[float], cpus: int) -> float:
    """Longest first, each job onto the CPU that frees first: when the last one ends."""
    free = [0.0] * max(cpus, 1)
    for s in sorted(seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)


# A group job is one Snakemake process on the node that runs the group's jobs: it parses the
# workflow and builds the DAG first and stays resident meanwhile. A benchmark file of that name
# (`snakemake -n` on this workflow, timed) adds its seconds once and its memory to every level.
SNAKEMAKE_PROCESS = "snakemake-process"


def used(group: Group, measured: dict[str, Measured], cpus: int) -> Used:
    """What the group's jobs used, by their benchmarks; KeyError names a job without one."""
    process = measured.get(SNAKEMAKE_PROCESS, Measured(0.0, 0.0, 0.0))
    wall, peak = process.s, 0.0
    jobs = [j for level in group.levels for j in level]
    for level in group.levels:
        wall += level_wall_s([measured[j.benchmark].s for j in level], cpus)
        rss = sorted((measured[j.benchmark].max_rss_mb for j in level), reverse=True)
        peak = max(peak, process.max_rss_mb + sum(rss[:cpus]))
    serial = process.s + sum(measured[j.benchmark].s for j in jobs)
    cpu = process.cpu_s + sum(measured[j.benchmark].cpu_s for j in jobs)
    return Used(cpus, wall, serial, cpu, peak)


def describe(group: Group, usage: Used | None) -> str:
    jobs = sum(len(level) for level in group.levels)
    line = (
        f"{group.name}: {jobs} jobs in {len(group.levels)} levels, "
        f"cpus={group.cpus} mem_mb={group.mem_mb} runtime={group.runtime_min} min"
    )
    if usage is None:
        return line
    minutes = usage.wall_s / 60
    return (
        f"{line}\n  used (benchmarks, on {usage.cpus} CPUs): {minutes:.1f} min wall "
        f"(every job in turn {usage.serial_s / 60:.1f} min, CPU {usage.cpu_s / 60:.1f} min), "
        f"peak {usage.peak_mb:.0f} MB; asked/used: runtime x{group.runtime_min / minutes:.2f}, "
        f"mem x{group.mem_mb / usage.peak_mb:.2f}"
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["--local"]:
        print("\n".join(local_rules(argv[1:])))
        return
    cores = None if argv[0] == "none" else int(argv[0])
    rest = argv[1:]
    as_json = rest[:1] == ["--json"]
    rest = rest[1:] if as_json else rest
    benchmarks = None
    if rest[:1] == ["--benchmarks"]:
        benchmarks, rest = read_benchmarks(Path(rest[1])), rest[2:]
    answers = []
    for group in build_groups(cores, rest):
        usage = None
        if benchmarks is not None:
            try:
                cpus = cores or max(len(level) for level in group.levels)  # none: every job at once
                usage = used(group, benchmarks, cpus)
            except KeyError as missing:
                print(f"{group.name}: no benchmark {missing} (has the run finished?)", file=sys.stderr)
        answers.append({"group": asdict(group), "used": asdict(usage) if usage else None})
        if not as_json:
            print(describe(group, usage))
    if as_json:
        print(json.dumps(answers))


if __name__ == "__main__":
    main(sys.argv[1:])
