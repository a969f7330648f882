"""Concept experiments, one module per claim, and the runner that turns evidence into a result.

A concept module defines::

    CLAIM_ID = "C05"
    def run(ctx: ConceptContext) -> Evidence: ...      # measure
    def verdict(metrics: Mapping[str, Any]) -> Verdict  # decide, from the numbers only

The runner calls ``verdict(evidence.metrics)`` itself, so a verdict can only
come from what was measured.

A claim trained over seeds may instead (or also) define the per-seed protocol::

    def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]   # JSON-able, one seed
    def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence

``run_seed`` measures every arm of one seed (the same seed gives each arm the same initial
weights and batches, so arms pair by seed) and writes no figures; ``combine`` turns the
per-seed records, in ``ctx.seeds`` order, into the evidence. Without a ``run`` of its own such a
module runs as ``combine(ctx, [run_seed(ctx, s) for s in ctx.seeds])``; the workflow can also
run each seed as its own job and gather them.
"""

from __future__ import annotations

import importlib
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
from whylab.files import write_json
from whylab.results import SCHEMA_VERSION, Evidence, environment, jsonable, validate_result
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


def evidence_of(module: ModuleType, ctx: ConceptContext) -> Evidence:
    """The module's evidence: its ``run``, or its per-seed protocol over ``ctx.seeds``."""
    if hasattr(module, "run"):
        evidence: Evidence = module.run(ctx)
        return evidence
    if hasattr(module, "run_seed") and hasattr(module, "combine"):
        per_seed = []
        for seed in ctx.seeds:
            set_seed(seed)  # a seed's numbers do not depend on the seeds run before it
            per_seed.append(jsonable(module.run_seed(ctx, seed)))
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
    """Run one concept experiment and write ``result_path`` (and its figures) atomically."""
    module = load(claim_id)
    claim = claims.get(claim_id)
    settings = dict(settings)
    device = resolve_device(str(settings.get("device", "auto")))
    set_threads(threads)
    seeds = [int(s) for s in settings.get("seeds", [0])]
    set_seed(seeds[0])

    final_dir = result_path.parent
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=final_dir.parent))
    try:
        ctx = ConceptContext(
            claim_id, settings, {k: Path(v) for k, v in inputs.items()}, work, threads, device
        )
        start = time.perf_counter()
        evidence: Evidence = evidence_of(module, ctx)
        wall = time.perf_counter() - start
        metrics = jsonable(evidence.metrics)
        verdict = module.verdict(metrics)
        record = {
            "schema_version": SCHEMA_VERSION,
            "claim_id": claim_id,
            "topic": claim.topic,
            "claim": {"en": claim.statement, "notes_ko": claim.notes_ko},
            "method": evidence.method,
            "config": jsonable(settings),
            "seeds": evidence.seeds or seeds,
            "metrics": metrics,
            "tables": [t.to_dict() for t in evidence.tables],
            "figures": [f.to_dict() for f in evidence.figures],
            "verdict": verdict.to_dict(),
            "literature": [lit.to_dict() for lit in evidence.literature],
            "skipped": list(evidence.skipped),
            "environment": environment(device, threads),
            "wall_time_s": round(wall, 3),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        validate_result(record)
        for fig in evidence.figures:
            if not (work / fig.path).is_file():
                raise FileNotFoundError(f"{claim_id}: figure {fig.path} was referenced but not written")
        write_json(work / result_path.name, record)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        work.rename(final_dir)
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)
