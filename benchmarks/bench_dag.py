"""Wall time of the whole DAG, cold and as a no-op re-run.

    python benchmarks/bench_dag.py [--configfile config/config.yaml] [--cores 2] [--keep DIR]

Copies the workflow into a fresh folder, runs ``snakemake --cores N`` from nothing (cold),
then again with nothing changed (no-op), and prints both times plus each rule's time from
Snakemake's benchmark files. Aims: cold ≤ 10 min and no-op ≤ 5 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cwd: Path, cores: int, configfile: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", configfile],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{proc.stderr[-4000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="whylab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config"):
        src, dst = REPO / name, work / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    cold = run(work, args.cores, args.configfile)
    noop = run(work, args.cores, args.configfile)
    print(f"config: {args.configfile}, cores: {args.cores}, folder: {work}")
    print(f"cold run:  {cold:8.1f} s")
    print(f"no-op run: {noop:8.1f} s")
    print("per rule (s, peak RSS MiB):")
    for path in sorted((work / "results" / "benchmarks").glob("*.tsv")):
        with path.open(encoding="utf-8") as fh:
            row = list(csv.DictReader(fh, delimiter="\t"))[-1]
        print(f"  {path.stem:40s} {float(row['s']):8.1f} {row.get('max_rss', 'NA'):>10}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
