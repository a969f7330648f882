"""Wall time of the whole DAG, cold and as a no-op re-run, and what one job costs to start.

    python benchmarks/bench_dag.py [--configfile config/config.yaml] [--cores 2] [--keep DIR]
    python benchmarks/bench_dag.py --noop-only      # the no-op on a finished run made by --touch (seconds)

Copies the workflow (Snakefile, workflow/, config/, src/, benchmarks/recorded/) into a fresh folder, runs
``snakemake --cores N`` from nothing (cold), then again with nothing changed (no-op), and prints
both times (wall, and CPU of snakemake and its children) plus each rule's time and peak RSS from
Snakemake's benchmark files. ``--noop-only`` skips the cold run: it creates every output empty and
records it with ``snakemake --touch --forceall``, then times the no-op. It also prints the start-up
cost every job pays (Python, torch and the concept runner imported), which decides whether a
claim's seeds are worth their own jobs (config key per_seed_jobs). Aims: cold ≤ 10 min and
no-op ≤ 3 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP = (
    "from whylab.runtime import set_seed, set_threads; set_threads(1); set_seed(0);"
    " import whylab.concepts, whylab.plotting, whylab.bench.model"
)


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the command and its children, output)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout + proc.stderr


def snakemake(cores: int, configfile: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", configfile, *args]


def copy_workflow(work: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copy2(REPO / "Snakefile", work / "Snakefile")
    for name in ("workflow", "config", "src", "benchmarks/recorded"):
        shutil.copytree(REPO / name, work / name, ignore=skip, dirs_exist_ok=True)


def finish_by_touch(work: Path, configfile: str) -> None:
    """Every output present (empty) and recorded, nothing run: a finished run to time the no-op on."""
    _, _, summary = timed(snakemake(1, configfile, "--summary", "--quiet"), work)
    lines = [line for line in summary.splitlines() if "\t" in line]
    for row in csv.DictReader(lines, delimiter="\t"):
        path = work / row["output_file"]
        if path.suffix in (".json", ".txt", ".html", ".csv", ".tsv"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        else:
            path.mkdir(parents=True, exist_ok=True)
    timed(snakemake(1, configfile, "--touch", "--forceall"), work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    parser.add_argument("--noop-only", action="store_true", help="time the no-op on a --touch'ed run only")
    parser.add_argument("--repeats", type=int, default=3, help="no-op and start-up repeats (median shown)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="whylab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    copy_workflow(work)
    print(f"config: {args.configfile}, cores: {args.cores}, folder: {work}")
    if args.noop_only:
        finish_by_touch(work, args.configfile)
    else:
        cold, cold_cpu, _ = timed(snakemake(args.cores, args.configfile), work)
        print(f"cold run:  {cold:8.1f} s wall, {cold_cpu:8.1f} s CPU")
    noops = sorted(timed(snakemake(args.cores, args.configfile), work)[:2] for _ in range(args.repeats))
    wall, cpu = noops[len(noops) // 2]
    print(f"no-op run: {wall:8.1f} s wall, {cpu:8.1f} s CPU (median of {args.repeats})")
    env = {**os.environ, "PYTHONPATH": str(work / "src")}
    starts = []
    for _ in range(args.repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-c", STARTUP], check=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        starts.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    print(f"job start-up: {sorted(starts)[len(starts) // 2]:8.2f} s CPU (Python, torch, runner)")
    if not args.noop_only:
        print("per rule (s, peak RSS MiB):")
        for path in sorted((work / "results" / "benchmarks").glob("*.tsv")):
            with path.open(encoding="utf-8") as fh:
                row = list(csv.DictReader(fh, delimiter="\t"))[-1]
            print(f"  {path.stem:40s} {float(row['s']):8.1f} {row.get('max_rss', 'NA'):>10}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
