"""Wall and CPU time of each transformer-mechanism experiment (C03–C11) with a config's settings.

    python benchmarks/bench_mechanisms.py [--configfile config/config.yaml] [--claims C05 C10]
                                          [--results DIR] [--threads 1] [--keep DIR]

Builds the corpus and the one tokenizer the mechanisms use (or reuses them from ``--results``,
e.g. a finished run's ``results/``), then runs every registered claim among C03–C11 through
``whylab.concepts.run_concept``, one after another in this process, with the settings the
mechanisms rule would pass, and prints a table: claim, wall seconds, CPU seconds of this
process, verdict. The shared baseline LM of C03, C04 and C06 is trained first, once per seed
(its own row), as the bench_baseline rule does. The issue's budget: all of them together ~5 min on 2 cores with the default
config (the DAG runs them in parallel), i.e. about 10 CPU-minutes in total.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MECHANISM_CLAIMS = ("C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10", "C11")


def merged_config(configfile: str) -> dict[str, Any]:
    """config/config.yaml with ``configfile`` on top (as ``snakemake --configfile`` does), checked."""
    from whylab.config import check_config

    def merge(base: dict[str, Any], over: dict[str, Any]) -> None:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value

    config = yaml.safe_load((REPO / "config/config.yaml").read_text(encoding="utf-8")) or {}
    path = Path(configfile) if Path(configfile).is_absolute() else REPO / configfile
    if path.resolve() != (REPO / "config/config.yaml").resolve():
        merge(config, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return check_config(config, base_dir=REPO)


def prepare_inputs(config: dict[str, Any], results: Path) -> dict[str, Path]:
    """The inputs the mechanisms rule gives each claim; builds what is missing under ``results``."""
    from whylab import corpus, tokenization

    tok = config["mechanisms"]["tokenizer"]
    langs = config["corpus"]["languages"] if tok["scope"] == "joint" else [tok["scope"]]
    stats = results / "corpus" / "stats.json"
    if not all((results / "corpus" / lang / "train.txt").is_file() for lang in langs):
        print("building the corpus ...", file=sys.stderr)
        corpus.run_step(config["corpus"], {}, {"stats": stats}, 1)
    tok_dir = results / "tokenizers" / tok["scope"]
    tok_file = tok_dir / f"{tok['algorithm']}-{tok['vocab_size']}" / "tokenizer.json"
    if not tok_file.is_file():
        print(f"training the tokenizer {tok_file.parent.name} ...", file=sys.stderr)
        train = {f"train_{i}": results / "corpus" / lang / "train.txt" for i, lang in enumerate(langs)}
        settings = {
            **config["tokenizers"],
            "algorithms": [tok["algorithm"]],
            "vocab_sizes": [tok["vocab_size"]],
        }
        tokenization.run_step(settings, train, {"root": tok_dir}, 1)
    inputs = {"tokenizer": tok_file}
    for split in ("train", "valid"):
        for lang in langs:
            inputs[f"{split}_{lang}"] = results / "corpus" / lang / f"{split}.txt"
    return inputs


def claim_settings(config: dict[str, Any], claim: str) -> dict[str, Any]:
    """What ``settings_json`` in workflow/rules/common.smk gives the claim's rule."""
    mech = config["mechanisms"]
    merged: dict[str, Any] = {
        "seeds": config["seeds"],
        "device": config["device"],
        **mech.get(claim, {}),
        "model": mech["model"],
        "train": mech["train"],
        "tokenizer": mech["tokenizer"],
    }
    return json.loads(json.dumps(merged))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--claims", nargs="*", help="a subset of C03..C11 (default: every registered one)")
    parser.add_argument("--results", type=Path, help="reuse corpus/tokenizers from this results folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the results here and keep them")
    args = parser.parse_args()

    from whylab.concepts import REGISTRY, run_concept

    config = merged_config(args.configfile)
    claims = [c for c in (args.claims or MECHANISM_CLAIMS) if c in REGISTRY]
    if not claims:
        sys.exit("no registered claim among those asked for")
    work = args.keep or Path(tempfile.mkdtemp(prefix="whylab-bench-mech-"))
    results = args.results or (work / "results")
    inputs = prepare_inputs(config, results)
    rows = []
    try:
        baseline_claims = [c for c in claims if c in ("C03", "C04", "C06")]
        if baseline_claims:  # the shared baseline LM, once per seed, as the bench_baseline rule does
            from whylab.bench.baseline import run_step as baseline_step

            seeds = sorted(
                {int(s) for c in baseline_claims for s in claim_settings(config, c).get("seeds", [0])}
            )
            wall, cpu = time.perf_counter(), time.process_time()
            for seed in seeds:
                out = work / "baseline" / f"seed{seed}"
                settings = {**claim_settings(config, "C03"), "seed": seed}
                baseline_step(
                    settings,
                    inputs,
                    {"weights": out / "model.safetensors", "history": out / "history.json"},
                    args.threads,
                )
                inputs[f"baseline_seed{seed}"] = out / "model.safetensors"
                inputs[f"baseline_history_seed{seed}"] = out / "history.json"
            rows.append(
                ("baseline", time.perf_counter() - wall, time.process_time() - cpu, f"{len(seeds)} seeds")
            )
            print(f"baseline: {rows[-1][1]:.1f} s wall, {rows[-1][2]:.1f} s CPU", file=sys.stderr)
        for claim in claims:
            wall, cpu = time.perf_counter(), time.process_time()
            record = run_concept(
                claim,
                claim_settings(config, claim),
                inputs,
                work / "concepts" / claim / "result.json",
                threads=args.threads,
            )
            rows.append(
                (claim, time.perf_counter() - wall, time.process_time() - cpu, record["verdict"]["label"])
            )
            print(
                f"{claim}: {rows[-1][1]:.1f} s wall, {rows[-1][2]:.1f} s CPU, {rows[-1][3]}", file=sys.stderr
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"config: {args.configfile}, threads: {args.threads}")
    print(f"{'claim':<8} {'wall (s)':>9} {'CPU (s)':>8}  verdict")
    for claim, w, c, label in rows:
        print(f"{claim:<8} {w:9.1f} {c:8.1f}  {label}")
    print(f"{'total':<8} {sum(r[1] for r in rows):9.1f} {sum(r[2] for r in rows):8.1f}")


if __name__ == "__main__":
    main()
