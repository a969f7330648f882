"""The measuring half of a claim package's run: ``experiment.measure`` / ``measure_seed`` to JSON.

A measure job writes ``results/concepts/<ID>/measurements.json`` (what ``measure`` returned and,
unless the claim's seeds run as jobs of their own, every seed's ``measure_seed``); a seed job
writes ``results/concepts/<ID>/seeds/<seed>.json``. Both pass through JSON, so the decide job
(:mod:`whylab.concepts.deciding`) sees the same numbers whichever way they were measured.

This module and what it imports are the code inputs of every measure job, so it stays light:
no plotting, no message catalogues, no result schema.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from whylab.concepts import REGISTRY
from whylab.concepts.context import ConceptContext, Measured
from whylab.environment import environment
from whylab.errors import InputError
from whylab.files import jsonable, read_json, write_json
from whylab.runtime import resolve_device, set_seed, set_threads

MEASUREMENT_VERSION = 1
SEED_RECORD_VERSION = 1
MEASUREMENTS_FILE = "measurements.json"  # in results/concepts/<ID>/, beside result.json
SEEDS_DIR = "seeds"  # results/concepts/<ID>/seeds/<seed>.json
SEED_INPUT_PREFIX = "seed."  # an input named seed.<n> is the per-seed file of seed n
MEASUREMENTS_INPUT = "measurements"


def experiment_of(claim_id: str) -> ModuleType:
    if claim_id not in REGISTRY:
        raise KeyError(f"no experiment registered for {claim_id}")
    return importlib.import_module(f"{REGISTRY[claim_id]}.experiment")


def measures_seeds(experiment: ModuleType) -> bool:
    return callable(getattr(experiment, "measure_seed", None))


def measures_whole(experiment: ModuleType) -> bool:
    return callable(getattr(experiment, "measure", None))


def without_seeds(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != "seeds"}


def seeds_of(settings: Mapping[str, Any]) -> list[int]:
    return [int(s) for s in settings.get("seeds", [0])]


def _through_json(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must return a dict, got {type(value).__name__}")
    back: dict[str, Any] = json.loads(json.dumps(jsonable(value), allow_nan=False))
    return back


def _measure_seed(experiment: ModuleType, ctx: ConceptContext, seed: int) -> dict[str, Any]:
    set_seed(seed)
    return _through_json(experiment.measure_seed(ctx, seed), f"{ctx.claim_id}: measure_seed(seed={seed})")


def _measure_whole(experiment: ModuleType, ctx: ConceptContext) -> dict[str, Any]:
    set_seed(ctx.seeds[0])
    return _through_json(experiment.measure(ctx), f"{ctx.claim_id}: measure")


def measure_in_process(
    claim_id: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Path],
    threads: int = 1,
    *,
    seeds_too: bool = True,
) -> Measured:
    """Run the claim's ``measure`` and (``seeds_too``) every seed's ``measure_seed`` here.

    The experiment gets a scratch folder as ``ctx.outdir``; what it writes there is dropped
    (figures are drawn from the measurements by the decide step).
    """
    experiment = experiment_of(claim_id)
    settings = dict(settings)
    device = resolve_device(str(settings.get("device", "auto")))
    set_threads(threads)
    start = time.perf_counter()
    whole: dict[str, Any] = {}
    per_seed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=f"whylab-{claim_id}-") as scratch:
        ctx = ConceptContext(
            claim_id, settings, {k: Path(v) for k, v in inputs.items()}, Path(scratch), threads, device
        )
        if seeds_too and measures_seeds(experiment):
            per_seed = [_measure_seed(experiment, ctx, seed) for seed in ctx.seeds]
        if measures_whole(experiment):
            whole = _measure_whole(experiment, ctx)
        if not (measures_whole(experiment) or measures_seeds(experiment)):
            raise AttributeError(f"{experiment.__name__} defines neither measure() nor measure_seed()")
    return Measured(
        claim_id,
        without_seeds(settings),
        seeds_of(settings),
        whole,
        per_seed,
        environment(device, threads),
        round(time.perf_counter() - start, 3),
    )


def run_measure(
    claim_id: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Path],
    out_path: Path,
    threads: int = 1,
    *,
    seeds_too: bool = True,
) -> dict[str, Any]:
    """Measure and write ``measurements.json`` atomically (``seeds_too=False``: the seeds run as
    jobs of their own, so only ``measure`` runs here)."""
    measured = measure_in_process(claim_id, settings, inputs, threads, seeds_too=seeds_too)
    record = {
        "measurement_version": MEASUREMENT_VERSION,
        "claim_id": claim_id,
        "config": jsonable(measured.settings),
        "seeds": measured.seeds,
        "whole": measured.whole,
        "per_seed": measured.per_seed if seeds_too else None,
        "environment": measured.environment,
        "wall_time_s": measured.wall_time_s,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(out_path, record)
    return record


def run_measure_seed(
    claim_id: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Path],
    seed: int,
    seed_path: Path,
    threads: int = 1,
) -> dict[str, Any]:
    """Measure one seed and write ``seeds/<seed>.json`` atomically."""
    experiment = experiment_of(claim_id)
    if not measures_seeds(experiment):
        raise InputError(f"{claim_id} has no measure_seed, so it cannot run one seed at a time")
    settings = {**without_seeds(settings), "seeds": [int(seed)]}
    device = resolve_device(str(settings.get("device", "auto")))
    set_threads(threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"whylab-{claim_id}-seed{seed}-") as scratch:
        ctx = ConceptContext(
            claim_id, settings, {k: Path(v) for k, v in inputs.items()}, Path(scratch), threads, device
        )
        measurements = _measure_seed(experiment, ctx, int(seed))
    record = {
        "seed_record_version": SEED_RECORD_VERSION,
        "claim_id": claim_id,
        "seed": int(seed),
        "config": jsonable(without_seeds(settings)),
        "measurements": measurements,
        "environment": environment(device, threads),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(seed_path, record)
    return record


def read_measured(
    claim_id: str,
    settings: Mapping[str, Any],
    measured_settings: Mapping[str, Any],
    measurements_file: Path | None,
    seed_files: Mapping[int, Path],
) -> Measured:
    """What the measure and seed jobs wrote, checked against this run's settings.

    ``measured_settings`` are the settings the measure jobs were given (the claim's settings less
    those only the decision reads); a file made with other settings is refused, not mixed in.
    """
    expected = jsonable(without_seeds(measured_settings))
    seeds = seeds_of(settings)
    whole: dict[str, Any] = {}
    per_seed: list[dict[str, Any]] = []
    env: dict[str, Any] = {}
    wall = 0.0
    if measurements_file is not None:
        record = read_json(measurements_file)
        if record.get("claim_id") != claim_id or record.get("config") != expected:
            raise InputError(f"{measurements_file}: made for other settings than this run's; re-run it")
        if record.get("seeds") != seeds:
            raise InputError(
                f"{measurements_file}: measured seeds {record.get('seeds')}, this run asks {seeds}"
            )
        whole = dict(record.get("whole") or {})
        per_seed = list(record.get("per_seed") or [])
        env = dict(record.get("environment") or {})
        wall += float(record.get("wall_time_s", 0.0))
    if seed_files:
        if sorted(seed_files) != sorted(seeds):
            raise InputError(
                f"{claim_id}: per-seed files for seeds {sorted(seed_files)}, but the settings ask for {seeds}"
            )
        for seed in seeds:
            path = Path(seed_files[seed])
            record = read_json(path)
            if record.get("claim_id") != claim_id or record.get("seed") != seed:
                raise InputError(f"{path}: holds claim {record.get('claim_id')} seed {record.get('seed')}")
            if record.get("config") != expected:
                raise InputError(f"{path}: made with other settings than this run's; re-run seed {seed}")
            per_seed.append(record["measurements"])
            wall += float(record.get("wall_time_s", 0.0))
            env = env or dict(record["environment"])
    # the settings the measurement ran with; deciding.decide adds those only the decision reads
    return Measured(claim_id, dict(expected), seeds, whole, per_seed, env, round(wall, 3))
