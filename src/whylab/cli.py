"""Command line: ``python -m whylab <step> --settings JSON --input k=path --output k=path``.

Every Snakemake rule is one call of this entry point, so each rule stays a
thin line of shell and every step can also be run (and debugged) by hand.
A claim step is named by its claim id (``C05``); the others by the table below. A claim
(a package in ``whylab/concepts/``) measures with ``python -m whylab C07 --measure all ...
--output measurements=results/concepts/C07/measurements.json`` (``--measure whole`` when its
seeds run as jobs of their own), measures one seed with ``python -m whylab C08 --seed 3 ...
--output seed=results/concepts/C08/seeds/3.json``, and decides with the plain call and
``--input measurements=<that file>`` and/or ``--input seed.<n>=<that file>`` for every seed.
The plain call without those inputs measures and decides in one process.
Commands for users (not DAG steps) are listed in ``COMMANDS``: ``python -m whylab plan-memory MODEL``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from whylab.errors import InputError

# step name -> "module:function"; the function takes (settings, inputs, outputs, threads).
STEPS: dict[str, str] = {
    "corpus": "whylab.corpus:run_step",
    "tokenizers": "whylab.tokenization:run_step",
    "report": "whylab.report:run_step",
    "lm_train": "whylab.lm.train:run_step",
    "lm_export": "whylab.lm.export:run_step",
    "quant_variant": "whylab.quant.variant_jobs:run_step",
    "bench_baseline": "whylab.bench.baseline:run_step",
    "quant_real_scale": "whylab.quant.real_scale:run_step",
}

# user commands with their own arguments: name -> "module:function" taking argv (returns the exit status)
COMMANDS: dict[str, str] = {
    "plan-memory": "whylab.memory.planner:main",  # training memory of a model, per component
}

StepFunction = Callable[[dict[str, Any], dict[str, Path], dict[str, Path], int], None]


def _pairs(values: Sequence[str], flag: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} expects name=path, got {item!r}")
        out[key] = Path(value)
    return out


def _settings(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--settings is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError("--settings must be a JSON object")
    return value


def _measure_step(step: str, which: str) -> StepFunction:
    from whylab.concepts.measuring import run_measure

    def measure_step(
        settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
    ) -> None:
        if "measurements" not in outputs:
            raise InputError("--measure needs --output measurements=PATH")
        run_measure(step, settings, inputs, outputs["measurements"], threads, seeds_too=which == "all")

    return measure_step


def _seed_step(step: str, seed: int) -> StepFunction:
    from whylab.concepts.measuring import run_measure_seed

    def seed_step(
        settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
    ) -> None:
        if "seed" not in outputs:
            raise InputError("--seed needs --output seed=PATH (the per-seed JSON file)")
        run_measure_seed(step, settings, inputs, seed, outputs["seed"], threads)

    return seed_step


def _claim_step(step: str) -> StepFunction:
    from whylab.concepts.runner import run_concept

    def claim_step(
        settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
    ) -> None:
        if "result" not in outputs:
            raise InputError(f"{step} needs --output result=PATH")
        run_concept(step, settings, inputs, outputs["result"], threads)

    return claim_step


def resolve(step: str, seed: int | None = None, measure: str | None = None) -> StepFunction:
    from whylab.concepts import REGISTRY

    for flag, given in (("--measure", measure), ("--seed", seed)):
        if given is not None and step not in REGISTRY:
            raise InputError(f"{flag} is for a claim step (C01..C21), not {step!r}")
    if measure is not None and seed is not None:
        raise InputError("--seed and --measure are two different steps: give one")
    # a measure or seed step imports only the measuring half (what a measure job's code is)
    if measure is not None:
        return _measure_step(step, measure)
    if seed is not None:
        return _seed_step(step, seed)
    if step in REGISTRY:
        return _claim_step(step)
    if step not in STEPS:
        known = ", ".join([*STEPS, *REGISTRY])
        raise InputError(f"unknown step {step!r}; known steps: {known}")
    module_name, _, func = STEPS[step].partition(":")
    return getattr(importlib.import_module(module_name), func)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module_name, _, attr = COMMANDS[argv[0]].partition(":")
        command: Callable[[Sequence[str]], int] = getattr(importlib.import_module(module_name), attr)
        return command(argv[1:])
    parser = argparse.ArgumentParser(prog="whylab", description=__doc__.splitlines()[0])
    parser.add_argument(
        "step", help=f"a claim id (C01..C21), a pipeline step name, or a command: {', '.join(COMMANDS)}"
    )
    parser.add_argument("--settings", default="{}", help="JSON object, or @file.json")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--output", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, help="run only this seed of a per-seed claim")
    parser.add_argument(
        "--measure",
        choices=("all", "whole"),
        help="a claim package's measure step only: all (measure and every seed) or whole (measure only; "
        "the seeds run as jobs of their own)",
    )
    args = parser.parse_args(argv)
    try:
        func = resolve(args.step, args.seed, args.measure)
        func(
            _settings(args.settings),
            _pairs(args.input, "--input"),
            _pairs(args.output, "--output"),
            args.threads,
        )
    except InputError as exc:
        print(f"whylab: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
