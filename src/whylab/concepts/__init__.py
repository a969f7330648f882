"""Concept experiments, one module per claim, and the runner that turns evidence into a result.

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
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from whylab import claims
from whylab.errors import InputError
from whylab.files import read_json, write_json
from whylab.results import SCHEMA_VERSION, Evidence, environment, jsonable, validate_result, with_messages
from whylab.runtime import resolve_device, set_seed, set_threads

# claim id -> module that tests it
REGISTRY: dict[str, str] = {
    "C01": "whylab.concepts.c01_tokenization",
    "C02": "whylab.concepts.c02_subword",
    "C03": "whylab.concepts.c03_embedding",
    "C04": "whylab.concepts.c04_qk_projection",
    "C05": "whylab.concepts.c05_scaling",
    "C06": "whylab.concepts.c06_value_projection",
    "C07": "whylab.concepts.c07_layernorm_vs_batchnorm",
    "C08": "whylab.concepts.c08_pre_vs_post_ln",
    "C09": "whylab.concepts.c09_feed_forward",
    "C10": "whylab.concepts.c10_encoder_decoder",
    "C11": "whylab.concepts.c11_cross_attention",
    "C12": "whylab.concepts.c12_int8",
    "C13": "whylab.concepts.c13_int4",
    "C14": "whylab.concepts.c14_qlora",
    "C15": "whylab.concepts.c15_gptq",
    "C16": "whylab.concepts.c16_smoothquant",
    "C17": "whylab.concepts.c17_model_memory",
    "C18": "whylab.concepts.c18_training_memory",
    "C19": "whylab.concepts.c19_checkpointing",
    "C20": "whylab.concepts.c20_accumulation",
    "C21": "whylab.concepts.c21_offloading",
}
# an input named "seed.<n>" is the per-seed file of seed n (the gather job's inputs)
SEED_INPUT_PREFIX = "seed."
# the kept sub-folder of results/concepts/<ID>/: the per-seed files, outputs of their own jobs
SEEDS_DIR = "seeds"
# where plotting.save puts figures; a declared output of every claim rule
FIGURES_DIR = "figures"
SEED_RECORD_VERSION = 1


@dataclass
class ConceptContext:
    claim_id: str
    settings: dict[str, Any]  # the concept's config section, plus "seeds" and "device"
    inputs: dict[str, Path]
    outdir: Path  # a private working folder; becomes results/concepts/<id>/ on success
    threads: int
    device: str  # resolved: "cpu" or "cuda"

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.settings.get("seeds", [0])]


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


def _seed_inputs(inputs: Mapping[str, Path]) -> tuple[dict[str, Path], dict[int, Path]]:
    plain: dict[str, Path] = {}
    seeds: dict[int, Path] = {}
    for name, path in inputs.items():
        if name.startswith(SEED_INPUT_PREFIX):
            number = name[len(SEED_INPUT_PREFIX) :]
            if not number.isdigit():
                raise InputError(f"--input {name}: a per-seed input is named seed.<number>")
            seeds[int(number)] = Path(path)
        else:
            plain[name] = Path(path)
    return plain, seeds


def _install(work: Path, final_dir: Path, result_name: str) -> None:
    """Replace ``final_dir``'s contents with ``work``'s, keeping its per-seed files; the result goes last."""
    final_dir.mkdir(parents=True, exist_ok=True)
    for old in final_dir.iterdir():
        if old.name == SEEDS_DIR:
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    for new in sorted(work.iterdir(), key=lambda p: p.name == result_name):
        new.rename(final_dir / new.name)


def run_concept(
    claim_id: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, Path],
    result_path: Path,
    threads: int = 1,
) -> dict[str, Any]:
    """Run one concept experiment and write ``result_path`` (and its figures) atomically.

    Inputs named ``seed.<n>`` are the per-seed files of a per-seed claim: then only
    ``combine`` runs here. Otherwise a per-seed claim runs every seed in this process.
    """
    module = load(claim_id)
    claim = claims.get(claim_id)
    settings = dict(settings)
    plain_inputs, seed_files = _seed_inputs(inputs)
    if seed_files and not has_seed_protocol(module):
        raise InputError(f"{claim_id} has no run_seed/combine, but per-seed inputs were given")
    # a gather only combines what the seed jobs measured (on their device): it runs on the CPU
    device = "cpu" if seed_files else resolve_device(str(settings.get("device", "auto")))
    set_threads(threads)
    seeds = [int(s) for s in settings.get("seeds", [0])]
    set_seed(seeds[0])
    env = environment(device, threads)

    final_dir = result_path.parent
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=final_dir.parent))
    try:
        ctx = ConceptContext(claim_id, settings, plain_inputs, work, threads, device)
        start = time.perf_counter()
        seeds_wall = 0.0
        if seed_files:
            per_seed, seeds_wall, env = read_seed_files(claim_id, settings, seed_files)
            evidence: Evidence = module.combine(ctx, per_seed)
        else:
            evidence = evidence_of(module, ctx)
        wall = time.perf_counter() - start + seeds_wall
        metrics = jsonable(evidence.metrics)
        verdict = module.verdict(metrics)
        record = {
            "schema_version": SCHEMA_VERSION,
            "claim_id": claim_id,
            "topic": claim.topic,
            "claim": {"en": claim.statement, "notes_ko": claim.notes_ko},
            "method": str(evidence.method),
            "config": jsonable(settings),
            "seeds": evidence.seeds or seeds,
            "metrics": metrics,
            "tables": [t.to_dict() for t in evidence.tables],
            "figures": [f.to_dict() for f in evidence.figures],
            "verdict": verdict.to_dict(),
            "literature": [lit.to_dict() for lit in evidence.literature],
            "skipped": [str(s) for s in evidence.skipped],
            "environment": env,
            "wall_time_s": round(wall, 3),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **with_messages(method=evidence.method, skipped=evidence.skipped),
        }
        validate_result(record)
        for fig in evidence.figures:
            if not (work / fig.path).is_file():
                raise FileNotFoundError(f"{claim_id}: figure {fig.path} was referenced but not written")
        # the figures folder is a declared output of the claim's rule: present even when empty
        (work / FIGURES_DIR).mkdir(exist_ok=True)
        write_json(work / result_path.name, record)
        _install(work, final_dir, result_path.name)
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)
