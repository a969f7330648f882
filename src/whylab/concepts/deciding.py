"""The deciding half of a claim's run: measurements -> metrics -> verdict, figures -> result.json.

The decide job of a claim package reads what its measure and seed jobs wrote
(:mod:`whylab.concepts.measuring`), calls the package's ``verdict.summarize`` and
``verdict.verdict`` (pure, from the numbers only) and ``figures.draw``, and writes
``results/concepts/<ID>/result.json`` with its figures atomically. It runs on the CPU in seconds,
so a change to a verdict rule, a figure or a text costs seconds, not a retraining.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from whylab import claims
from whylab.concepts import REGISTRY
from whylab.concepts.context import ConceptContext, Measured
from whylab.concepts.measuring import (
    MEASUREMENTS_FILE,
    MEASUREMENTS_INPUT,
    SEED_INPUT_PREFIX,
    SEEDS_DIR,
    read_measured,
)
from whylab.concepts.spec import decision_settings, measure_settings
from whylab.errors import InputError
from whylab.files import jsonable, write_json
from whylab.results import SCHEMA_VERSION, Evidence, validate_result, with_messages
from whylab.verdict import Verdict

FIGURES_DIR = "figures"  # where plotting.save puts figures; a declared output of every claim rule
KEPT = (SEEDS_DIR, MEASUREMENTS_FILE)  # outputs of the measure jobs, in the same folder


def split_inputs(inputs: Mapping[str, Path]) -> tuple[dict[str, Path], dict[int, Path]]:
    """The plain inputs, and the per-seed files (inputs named ``seed.<n>``) by seed."""
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


@contextlib.contextmanager
def work_dir(result_path: Path) -> Iterator[Path]:
    """A private folder beside the claim's folder, removed afterwards; :func:`finish` installs it."""
    final_dir = result_path.parent
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=final_dir.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(work: Path, final_dir: Path, result_name: str) -> None:
    """Replace ``final_dir``'s contents with ``work``'s, keeping the measure jobs' files; the
    result goes last."""
    final_dir.mkdir(parents=True, exist_ok=True)
    for old in final_dir.iterdir():
        if old.name in KEPT:
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    for new in sorted(work.iterdir(), key=lambda p: p.name == result_name):
        new.rename(final_dir / new.name)


def finish(
    claim_id: str,
    settings: Mapping[str, Any],
    evidence: Evidence,
    verdict: Verdict,
    environment: Mapping[str, Any],
    wall_time_s: float,
    work: Path,
    result_path: Path,
) -> dict[str, Any]:
    """Build, validate and write the result record, then install ``work`` as the claim's folder."""
    claim = claims.get(claim_id)
    seeds = [int(s) for s in settings.get("seeds", [0])]
    record = {
        "schema_version": SCHEMA_VERSION,
        "claim_id": claim_id,
        "topic": claim.topic,
        "claim": {"en": claim.statement, "notes_ko": claim.notes_ko},
        "method": str(evidence.method),
        "config": jsonable(dict(settings)),
        "seeds": evidence.seeds or seeds,
        "metrics": jsonable(evidence.metrics),
        "tables": [t.to_dict() for t in evidence.tables],
        "figures": [f.to_dict() for f in evidence.figures],
        "verdict": verdict.to_dict(),
        "literature": [lit.to_dict() for lit in evidence.literature],
        "skipped": [str(s) for s in evidence.skipped],
        "environment": dict(environment),
        "wall_time_s": round(wall_time_s, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **with_messages(method=evidence.method, skipped=evidence.skipped),
    }
    validate_result(record)
    for fig in evidence.figures:
        for path in [fig.path, *(str(t["path"]) for t in fig.translations.values())]:
            if not (work / path).is_file():
                raise FileNotFoundError(f"{claim_id}: figure {path} was referenced but not written")
    # the figures folder is a declared output of the claim's rule: present even when empty
    (work / FIGURES_DIR).mkdir(exist_ok=True)
    write_json(work / result_path.name, record)
    _install(work, result_path.parent, result_path.name)
    return record


def seed_drawing(seed: int) -> None:
    """Seed the global random generators a figure may draw from (seaborn's strip-plot jitter, a
    bootstrap band) from the first seed: the same measurements give the same figures, in a
    decide job or in process after the measuring."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- the legacy global RNG that seaborn draws from


def decide(
    claim_id: str, settings: Mapping[str, Any], measured: Measured, result_path: Path
) -> dict[str, Any]:
    """Summarize, decide and draw from ``measured``; write ``result_path`` and its figures."""
    package = REGISTRY[claim_id]
    rule = importlib.import_module(f"{package}.verdict")
    drawing = importlib.import_module(f"{package}.figures")
    settings = dict(settings)
    # the measure jobs ran without the settings only the decision reads: the decision gets them here
    only_decided = {k: settings[k] for k in decision_settings(claim_id) if k in settings}
    measured = dataclasses.replace(measured, settings={**measured.settings, **only_decided})
    seed_drawing(measured.seeds[0] if measured.seeds else 0)
    with work_dir(result_path) as work:
        metrics = jsonable(rule.summarize(measured))
        verdict: Verdict = rule.verdict(metrics)
        ctx = ConceptContext(claim_id, settings, {}, work, 1, "cpu")
        evidence: Evidence = drawing.draw(ctx, measured, metrics)
        evidence.metrics = metrics
        return finish(
            claim_id,
            settings,
            evidence,
            verdict,
            measured.environment,
            measured.wall_time_s,
            work,
            result_path,
        )


def run_decide(
    claim_id: str, settings: Mapping[str, Any], inputs: Mapping[str, Path], result_path: Path
) -> dict[str, Any]:
    """The decide job: read ``--input measurements=`` and ``seed.<n>=`` files, then :func:`decide`."""
    plain, seed_files = split_inputs(inputs)
    measurements = plain.get(MEASUREMENTS_INPUT)
    if measurements is None and not seed_files:
        raise InputError(f"{claim_id}: the decide step needs --input measurements=PATH or seed.<n>=PATH")
    measured = read_measured(
        claim_id, settings, measure_settings(claim_id, dict(settings)), measurements, seed_files
    )
    return decide(claim_id, settings, measured, result_path)
