"""The runner of a claim written as one module (and of a claim package, in one process).

A concept module defines::

    CLAIM_ID = "C05"
    def run(ctx: ConceptContext) -> Evidence: ...      # measure
    def verdict(metrics: Mapping[str, Any]) -> Verdict  # decide, from the numbers only

A claim trained over seeds may instead (or also) define the per-seed protocol::

    def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]   # JSON-able measurements of one seed
    def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence  # figures, tables, metrics

``run_seed`` measures every arm of one seed (the same seed gives each arm the same initial
weights and batches, so arms pair by seed) and writes no files; ``combine`` turns the per-seed
records, in ``ctx.seeds`` order, into the evidence. Without a ``run`` of its own such a module
runs in one process as ``combine(ctx, [run_seed(ctx, s) for s in ctx.seeds])``
(:func:`run_concept`). Snakemake can instead run each seed as its own job
(:func:`run_concept_seed` writes ``results/concepts/<ID>/seeds/<seed>.json``) and hand those
files to the claim's gather job (:func:`run_concept` with ``seed.<n>`` inputs), which calls
``combine`` on them. Both paths give ``combine`` the same input: each seed's measurements pass
through JSON either way. A module with both ``run`` and the protocol must give the same
evidence either way.

The runner calls ``verdict(evidence.metrics)`` itself, so a verdict can only
come from what was measured.
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
from whylab.concepts.context import ConceptContext
from whylab.concepts.deciding import FIGURES_DIR, decide, finish, run_decide, split_inputs, work_dir
from whylab.concepts.measuring import (
    SEED_INPUT_PREFIX,
    SEED_RECORD_VERSION,
    SEEDS_DIR,
    is_package,
    measure_in_process,
    run_measure_seed,
)
from whylab.errors import InputError
from whylab.files import jsonable, read_json, write_json
from whylab.results import Evidence, environment
from whylab.runtime import resolve_device, set_seed, set_threads

__all__ = ["FIGURES_DIR", "SEEDS_DIR", "SEED_INPUT_PREFIX", "ConceptContext"]


def load(claim_id: str) -> ModuleType:
    if claim_id not in REGISTRY:
        raise KeyError(f"no experiment registered for {claim_id}")
    return importlib.import_module(REGISTRY[claim_id])


def has_seed_protocol(module: ModuleType) -> bool:
    """The module measures one seed at a time (``run_seed``) and combines them (``combine``)."""
    return callable(getattr(module, "run_seed", None)) and callable(getattr(module, "combine", None))


def _through_json(measurements: Any, claim_id: str, seed: int) -> dict[str, Any]:
    """What a per-seed file holds: the measurements as JSON gives them back."""
    if not isinstance(measurements, Mapping):
        raise TypeError(f"{claim_id}: run_seed(seed={seed}) must return a dict, got {type(measurements)}")
    back: dict[str, Any] = json.loads(json.dumps(jsonable(measurements), allow_nan=False))
    return back


def _without_seeds(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != "seeds"}


def _run_one_seed(module: ModuleType, ctx: ConceptContext, seed: int) -> dict[str, Any]:
    set_seed(seed)
    measurements = module.run_seed(ctx, seed)
    written = sorted(str(p.relative_to(ctx.outdir)) for p in ctx.outdir.rglob("*") if p.is_file())
    if written:
        raise RuntimeError(
            f"{ctx.claim_id}: run_seed(seed={seed}) wrote {', '.join(written)}; "
            "files (figures) are written by combine"
        )
    return _through_json(measurements, ctx.claim_id, seed)


def run_concept_seed(
    claim_id: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Path],
    seed: int,
    seed_path: Path,
    threads: int = 1,
) -> dict[str, Any]:
    """Run one seed of a per-seed claim and write ``seed_path`` (its measurements) atomically."""
    if is_package(claim_id):
        return run_measure_seed(claim_id, settings, inputs, seed, seed_path, threads)
    module = load(claim_id)
    if not has_seed_protocol(module):
        raise InputError(f"{claim_id} has no run_seed/combine, so it cannot run one seed at a time")
    settings = {**_without_seeds(settings), "seeds": [int(seed)]}
    device = resolve_device(str(settings.get("device", "auto")))
    set_threads(threads)
    seed_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".seed-{seed}.", dir=seed_path.parent) as scratch:
        ctx = ConceptContext(
            claim_id, settings, {k: Path(v) for k, v in inputs.items()}, Path(scratch), threads, device
        )
        start = time.perf_counter()
        measurements = _run_one_seed(module, ctx, int(seed))
        wall = time.perf_counter() - start
    record = {
        "seed_record_version": SEED_RECORD_VERSION,
        "claim_id": claim_id,
        "seed": int(seed),
        "config": jsonable(_without_seeds(settings)),
        "measurements": measurements,
        "environment": environment(device, threads),
        "wall_time_s": round(wall, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(seed_path, record)
    return record


def read_seed_files(
    claim_id: str, settings: Mapping[str, Any], seed_files: Mapping[int, Path]
) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """The per-seed measurements in the order of ``settings["seeds"]``, their summed wall time,
    and the environment the first seed ran in (the measurements' device, not the gather's).

    Every file must be this claim's, for its seed, made with these settings (seeds aside):
    a file left from other settings is refused rather than mixed in.
    """
    seeds = [int(s) for s in settings.get("seeds", [0])]
    if sorted(seed_files) != sorted(seeds):
        raise InputError(
            f"{claim_id}: per-seed files for seeds {sorted(seed_files)}, but the settings ask for {seeds}"
        )
    expected = jsonable(_without_seeds(settings))
    out: list[dict[str, Any]] = []
    wall = 0.0
    env: dict[str, Any] = {}
    for seed in seeds:
        path = Path(seed_files[seed])
        record = read_json(path)
        if record.get("claim_id") != claim_id or record.get("seed") != seed:
            raise InputError(f"{path}: holds claim {record.get('claim_id')} seed {record.get('seed')}")
        if record.get("config") != expected:
            raise InputError(f"{path}: made with other settings than this run's; re-run seed {seed}")
        out.append(record["measurements"])
        wall += float(record.get("wall_time_s", 0.0))
        env = env or dict(record["environment"])
    return out, wall, env


def evidence_of(module: ModuleType, ctx: ConceptContext) -> Evidence:
    """The module's evidence in one process: its ``run``, or its per-seed protocol over ``ctx.seeds``."""
    if hasattr(module, "run"):
        evidence: Evidence = module.run(ctx)
        return evidence
    if has_seed_protocol(module):
        per_seed = [_run_one_seed(module, ctx, seed) for seed in ctx.seeds]
        set_seed(ctx.seeds[0])
        combined: Evidence = module.combine(ctx, per_seed)
        return combined
    raise AttributeError(f"{module.__name__} defines neither run() nor run_seed() and combine()")


def run_concept(
    claim_id: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Path],
    result_path: Path,
    threads: int = 1,
) -> dict[str, Any]:
    """Run one claim and write ``result_path`` (and its figures) atomically.

    A claim package measures and decides here, in one process; with ``measurements`` or
    ``seed.<n>`` inputs only its decide step runs. For a claim written as one module, inputs
    named ``seed.<n>`` are the per-seed files: then only ``combine`` runs here; otherwise every
    seed runs in this process.
    """
    if is_package(claim_id):
        plain, seed_files = split_inputs(inputs)
        if seed_files or "measurements" in plain:
            return run_decide(claim_id, settings, inputs, result_path)
        measured = measure_in_process(claim_id, settings, plain, threads)
        return decide(claim_id, settings, measured, result_path)
    module = load(claim_id)
    settings = dict(settings)
    plain_inputs, seed_files = split_inputs(inputs)
    if seed_files and not has_seed_protocol(module):
        raise InputError(f"{claim_id} has no run_seed/combine, but per-seed inputs were given")
    # a gather only combines what the seed jobs measured (on their device): it runs on the CPU
    device = "cpu" if seed_files else resolve_device(str(settings.get("device", "auto")))
    set_threads(threads)
    seeds = [int(s) for s in settings.get("seeds", [0])]
    set_seed(seeds[0])
    env = environment(device, threads)
    with work_dir(result_path) as work:
        ctx = ConceptContext(claim_id, settings, plain_inputs, work, threads, device)
        start = time.perf_counter()
        seeds_wall = 0.0
        if seed_files:
            per_seed, seeds_wall, env = read_seed_files(claim_id, settings, seed_files)
            evidence: Evidence = module.combine(ctx, per_seed)
        else:
            evidence = evidence_of(module, ctx)
        wall = time.perf_counter() - start + seeds_wall
        evidence.metrics = jsonable(evidence.metrics)
        verdict = module.verdict(evidence.metrics)
        return finish(claim_id, settings, evidence, verdict, env, wall, work, result_path)
