"""The ``quant_variant`` step: build and measure quantized variants of the trained LM, every
variant in one process (workflow/rules/quantize.smk makes one job of them all), a family, or one.

The step names its variants in the settings (``variants``) and the outputs of each as
``--output measures.<name>=...`` and ``--output models.<name>=...`` (its model files, a folder).
A variant's FP32 reference is either one of the step's own variants (measured first, whatever
the order given) or read from ``--input reference.<name>=...`` (its measures.json). The
older one-variant form (``variant``; ``measures``, ``models``, ``reference``) is the same step
for one. The tokenizer, the evaluation and calibration blocks are made once per process, and
each FP32 reference is built once and kept while the variants of its runtime are timed against
it; every variant is quantized from its own copy of the LM read from disk (the quantizers work
in place). The step is atomic: the measures.json files are written only once every variant is
measured, so a failure leaves none of them (and removes the model folders it made).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from whylab.errors import InputError
from whylab.files import read_json, write_json
from whylab.messages import kept_beside
from whylab.quant.variant_build import Built, Inputs, build
from whylab.quant.variants import (
    CALIBRATED_INT4,
    Variant,
    base_record,
    calibration_draws,
    finite,
    measure,
    parse,
    skip_reason,
    validate_measures,
)


@dataclass(frozen=True)
class Job:
    """One variant of the step: where its measures.json and its model files go."""

    variant: Variant
    measures: Path
    models: Path


@dataclass
class Shared:
    """What every variant of one process reads: settings, token blocks, the open references."""

    settings: dict[str, Any]
    inputs: dict[str, Path]
    threads: int
    device: str
    seed: int
    languages: list[str]
    eval_blocks: torch.Tensor
    pool: torch.Tensor
    calibration: torch.Tensor
    scratch: Path  # the references' files, removed when the step ends
    references: dict[str, Built] = field(default_factory=dict)

    def inputs_for(self, outdir: Path) -> Inputs:
        q = self.settings["quantization"]
        onnx_file = Path(self.inputs["onnx"]) / "model.onnx"
        return Inputs(
            Path(self.inputs["model"]),
            onnx_file,
            self.eval_blocks,
            self.calibration,
            q,
            self.device,
            self.threads,
            outdir,
        )

    def reference(self, name: str) -> Built:
        """The FP32 reference ``name``, built on first use; only one is kept open at a time."""
        if name not in self.references:
            self.references.clear()
            outdir = self.scratch / name
            outdir.mkdir(parents=True, exist_ok=True)
            self.references[name] = build(parse(name), self.inputs_for(outdir))
        return self.references[name]


def jobs(settings: dict[str, Any], outputs: dict[str, Path]) -> list[Job]:
    """The variants this step makes, with their outputs: the FP32 references first (the others
    are measured against them), otherwise in the order given."""
    if "variants" not in settings:
        out = Path(outputs["measures"])
        return [Job(parse(str(settings["variant"])), out, Path(outputs.get("models", out.parent)))]
    found = []
    for name in settings["variants"]:
        key = f"measures.{name}"
        if key not in outputs:
            raise InputError(f"quant_variant: variant {name} has no --output {key}=PATH")
        out = Path(outputs[key])
        found.append(Job(parse(str(name)), out, Path(outputs.get(f"models.{name}", out.parent))))
    return sorted(found, key=lambda job: not job.variant.is_reference)


def _shared(settings: dict[str, Any], inputs: dict[str, Path], threads: int, scratch: Path) -> Shared:
    from whylab.lm.data import corpus_files, load_tokenizer, token_blocks
    from whylab.runtime import resolve_device

    q = settings["quantization"]
    m, cal = q["measure"], q["calibration"]
    tokenizer = load_tokenizer(inputs["model"])
    languages = list(settings["languages"])
    eval_blocks = token_blocks(
        corpus_files(inputs["corpus"], languages, "valid"),
        tokenizer,
        int(m["block_size"]),
        int(m["eval_blocks"]),
    )
    n_cal = int(cal["blocks"])
    pool = token_blocks(
        corpus_files(inputs["corpus"], languages, "train"),
        tokenizer,
        int(m["block_size"]),
        max(n_cal, int(cal.get("pool_blocks", n_cal))),
    )
    return Shared(
        settings=settings,
        inputs=inputs,
        threads=threads,
        device=resolve_device(str(settings.get("device", "auto"))),
        seed=int(settings.get("seeds", [0])[0]),
        languages=languages,
        eval_blocks=eval_blocks,
        pool=pool,
        calibration=pool[:n_cal],  # draw 0: the first blocks, as every calibrated variant uses
        scratch=scratch,
    )


def _reference_record(
    variant: Variant, inputs: dict[str, Path], measured: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The measures of ``variant``'s FP32 reference: measured by this step, or read from its input."""
    record: dict[str, Any]
    if variant.reference in measured:
        record = measured[variant.reference]
    else:
        path = inputs.get(f"reference.{variant.reference}", inputs.get("reference"))
        if path is None:
            raise InputError(f"{variant.name}: no --input reference.{variant.reference}=PATH")
        record = read_json(path)
    if record.get("skipped"):
        raise InputError(f"{variant.name}: its reference {variant.reference} was skipped")
    return record


def measure_variant(
    job: Job, shared: Shared, measured: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One variant built into its model folder and measured: its measures.json record.
    ``measured``: the records this step has made so far, by variant (its references among them)."""
    from whylab.runtime import set_seed

    set_seed(shared.seed)  # each variant as if it ran alone
    variant, q = job.variant, shared.settings["quantization"]
    if job.models.exists():
        shutil.rmtree(job.models)
    job.models.mkdir(parents=True)
    record = base_record(variant, q, shared.device, shared.threads)
    reason = skip_reason(variant, shared.device)
    if reason is not None:
        record.update(kept_beside("skipped", reason))
        validate_measures(record)
        return record
    inp = shared.inputs_for(job.models)
    started = time.perf_counter()
    built = build(variant, inp)
    quantize_s = time.perf_counter() - started
    reference = ref_record = None
    if not variant.is_reference:
        ref_record = _reference_record(variant, shared.inputs, measured or {})
        reference = shared.reference(variant.reference)
    record.update(
        {
            "provider": built.providers[0],
            "providers": built.providers,
            "provider_note": built.provider_note,
            "size_bytes": built.size_bytes,
            "memory_bytes": built.memory_bytes,
            "quantized_op_count": built.op_count or None,
            "expected_quantized_ops": built.expected_ops,
            "diagnostics": built.diagnostics,
            "quantize_s": quantize_s,
            "eval_blocks": [int(s) for s in shared.eval_blocks.shape],
            "languages": shared.languages,
        }
    )
    record.update(measure(variant, built, reference, ref_record, inp))
    if variant.family == "int4" and variant.algorithm in CALIBRATED_INT4:
        draws = int(q["calibration"].get("draws", 1))
        record["calibration_draws"] = calibration_draws(
            variant, inp, shared.pool, draws, shared.seed, record["block_nll"]
        )
    record["wall_s"] = time.perf_counter() - started
    record = finite(record)
    validate_measures(record)
    return record


@contextmanager
def _scratch() -> Iterator[Path]:
    """A folder for the references' files (the temporary directory, $TMPDIR), removed at the end."""
    with tempfile.TemporaryDirectory(prefix="whylab-references-") as folder:
        yield Path(folder)


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """Build every variant named, measure each, then write all their measures.json files."""
    from whylab.runtime import set_seed, set_threads

    set_threads(threads)
    set_seed(int(settings.get("seeds", [0])[0]))
    todo = jobs(settings, outputs)
    records: dict[str, dict[str, Any]] = {}
    try:
        with _scratch() as scratch:
            shared = _shared(settings, inputs, threads, scratch)
            for job in todo:
                records[job.variant.name] = measure_variant(job, shared, records)
            shared.references.clear()
    except BaseException:
        for job in todo:
            shutil.rmtree(job.models, ignore_errors=True)
        raise
    for job in todo:
        write_json(job.measures, records[job.variant.name])
