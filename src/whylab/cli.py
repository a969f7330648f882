"""Command line: ``python -m whylab <step> --settings JSON --input k=path --output k=path``.

Every Snakemake rule is one call of this entry point, so each rule stays a
thin line of shell and every step can also be run (and debugged) by hand.
A concept step is named by its claim id (``C05``); the others by the table below.
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
    "quant_variant": "whylab.quant.variants:run_step",
    "bench_baseline": "whylab.bench.baseline:run_step",
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


def resolve(step: str) -> StepFunction:
    from whylab.concepts import REGISTRY, run_concept

    if step in REGISTRY:

        def concept_step(
            settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
        ) -> None:
            run_concept(step, settings, inputs, outputs["result"], threads)

        return concept_step
    if step not in STEPS:
        known = ", ".join([*STEPS, *REGISTRY])
        raise InputError(f"unknown step {step!r}; known steps: {known}")
    module_name, _, func = STEPS[step].partition(":")
    return getattr(importlib.import_module(module_name), func)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="whylab", description=__doc__.splitlines()[0])
    parser.add_argument("step", help="a claim id (C01..C21) or a pipeline step name")
    parser.add_argument("--settings", default="{}", help="JSON object, or @file.json")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--output", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        func = resolve(args.step)
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
