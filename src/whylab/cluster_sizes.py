"""What a cluster job asks for, sized from what the same job used in a default run.

``workflow/resources/default_run_benchmarks.tsv`` gathers the benchmark files of a default run
(``make run`` on 2 cores: Snakemake's columns, one row a file, ``job`` = the file name). When a
run's settings are the default config's in everything that changes a job's work (not
``results_dir``, ``report``, ``claims``, ``per_seed_jobs`` or ``gpu_partition``) and it runs on
the CPU, a rule asks for its jobs' recorded wall time with ``TIME_MARGIN`` (in whole minutes, at
least one: Snakemake's unit) and their peak memory with ``MEM_MARGIN``; a retry asks for twice
(the SLURM profile's ``retries``). Any other run keeps each rule's own sizes (the planner's for
the LM rules, generous fixed ones for the rest), since the record says nothing about its jobs.
"""

from __future__ import annotations

import csv
import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD = Path("workflow/resources/default_run_benchmarks.tsv")
TIME_MARGIN = 1.25  # over the recorded wall time: a busier or slower node
MEM_MARGIN = 1.5  # over the recorded peak resident memory: allocator caching, another input
MIN_MEM_MB = 500
# settings that change where results go or which claims run, not what a job does
NOT_WORK = ("results_dir", "report", "claims", "per_seed_jobs", "gpu_partition")


@dataclass(frozen=True)
class Measured:
    """A job's benchmark figures: wall seconds, peak resident memory (MB), CPU seconds."""

    s: float
    max_rss_mb: float
    cpu_s: float


def read_benchmarks(source: Path) -> dict[str, Measured]:
    """Benchmark figures by file name, from a folder of Snakemake benchmark files or one TSV
    that gathers them (a `job` column holding the file name; `#` lines are comments)."""
    rows: list[tuple[str, dict[str, str]]] = []
    if source.is_dir():
        for path in sorted(source.glob("*.tsv")):
            with path.open(encoding="utf-8") as f:
                rows += [(path.name, row) for row in csv.DictReader(f, delimiter="\t")][:1]
    else:
        lines = [line for line in source.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
        rows = [(row["job"], row) for row in csv.DictReader(lines, delimiter="\t")]
    return {
        name: Measured(float(row["s"]), float(row["max_rss"] or 0), float(row["cpu_time"] or 0))
        for name, row in rows
    }


def work_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without the keys that change no job's work."""
    return {k: v for k, v in config.items() if k not in NOT_WORK}


def recorded(record: Mapping[str, Measured], pattern: str) -> Measured | None:
    """The largest figures over the benchmark files named ``pattern`` (``*`` for a wildcard,
    e.g. ``concept_C08_seed*.tsv``); None when the record has none."""
    found = [m for name, m in record.items() if fnmatch.fnmatchcase(name, pattern)]
    if not found:
        return None
    return Measured(max(m.s for m in found), max(m.max_rss_mb for m in found), max(m.cpu_s for m in found))


def minutes(seconds: float) -> int:
    """Runtime minutes for a job that took ``seconds``: TIME_MARGIN over it, at least one."""
    return max(1, math.ceil(TIME_MARGIN * seconds / 60))


def mem_mb(rss_mb: float) -> int:
    """mem_mb for a job that peaked at ``rss_mb``: MEM_MARGIN over it, at least MIN_MEM_MB."""
    return max(MIN_MEM_MB, math.ceil(MEM_MARGIN * rss_mb / 100) * 100)


def sizes(
    record: Mapping[str, Measured] | None, pattern: str, minutes_else: int, mem_mb_else: int
) -> tuple[int, int]:
    """(runtime minutes, mem_mb) of a rule's jobs: from the record when given one that has them
    (a default run), else the rule's own."""
    found = recorded(record, pattern) if record is not None else None
    if found is None:
        return minutes_else, mem_mb_else
    return minutes(found.s), mem_mb(found.max_rss_mb)


def gather(folder: Path, header: str, keep: Mapping[str, str] | None = None) -> str:
    """The record's text: ``header`` (comment lines), then one row per benchmark file of
    ``folder`` (its first line, ``job`` = the file name), then the rows of ``keep`` (name ->
    tab-separated figures, e.g. the group job's own Snakemake, measured apart)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    columns: list[str] | None = None
    for path in sorted(folder.glob("*.tsv")):
        with path.open(encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            names, first = next(reader), next(reader)
        if columns is None:
            columns = names
            lines.append("\t".join(["job", *columns]))
        lines.append("\t".join([path.name, *first]))
    lines += [f"{name}\t{row}" for name, row in (keep or {}).items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """``python -m whylab.cluster_sizes FOLDER [RECORD]``: write the record from a default run's
    benchmark folder, keeping the old record's ``snakemake-process`` row."""
    import sys
    from datetime import UTC, datetime

    if len(argv) not in (1, 2):
        sys.exit(main.__doc__)
    out = Path(argv[1]) if len(argv) == 2 else RECORD
    keep = {}
    if out.is_file():
        for line in out.read_text(encoding="utf-8").splitlines():
            if line.startswith("snakemake-process\t"):
                keep["snakemake-process"] = line.split("\t", 1)[1]
    header = (
        f"Benchmark files of a default run (make run, --cores 2), {datetime.now(UTC):%Y-%m-%d}, copied from\n"
        "results/benchmarks/ (one line each; job = the file name): what whylab.cluster_sizes sizes the\n"
        "rules from and workflow/scripts/group_request.py compares a group's request with.\n"
        "snakemake-process: a group job's own Snakemake ('snakemake -n --cores 2', /usr/bin/time -v:\n"
        "wall s, max RSS MB, user CPU s). Written by: python -m whylab.cluster_sizes results/benchmarks"
    )
    out.write_text(gather(Path(argv[0]), header, keep), encoding="utf-8")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
