"""The claims' experiments: one package per claim, and the registry that names them.

A claim package (``whylab/concepts/c07_layernorm_vs_batchnorm/``) keeps measuring, deciding and
drawing apart, so a change to one re-runs only what it affects::

    __init__.py     CLAIM_ID and a docstring; imports nothing
    experiment.py   measure(ctx) -> dict and/or measure_seed(ctx, seed) -> dict: the runs, raw
                    JSON-able measurements; imports no plotting, fonts or message code
    verdict.py      summarize(measured) -> metrics; verdict(metrics) -> Verdict: pure, no torch
    figures.py      draw(ctx, measured, metrics) -> Evidence: method, figures, tables, literature
    claim.yaml      the rule written before the run, as data: the notes' words part by part,
                    each part's primary comparison, minimum effect and the verdict's thresholds
    README.md       the notes' words, what is measured, how it is decided, the papers

Snakemake runs ``experiment`` in measure jobs (one per seed where the claim repeats over seeds
and is split; see ``per_seed_jobs``) and ``verdict`` + ``figures`` in one cheap decide job that
writes ``result.json`` and the figures: editing a figure, a verdict rule or a text re-runs the
decide job only. :mod:`whylab.concepts.measuring` and :mod:`whylab.concepts.deciding` are the two
halves of the runner; :func:`whylab.concepts.runner.run_concept` runs both in one process (the
plain ``python -m whylab C07`` call, the tests, the benchmarks). This is the only way a claim is
written: :mod:`whylab.concepts.measuring` imports ``<package>.experiment`` and
:mod:`whylab.concepts.deciding` imports ``<package>.verdict`` and ``<package>.figures``.
"""

from __future__ import annotations

import importlib
from typing import Any

from whylab.concepts.context import ConceptContext, Measured

# claim id -> the package that tests it
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

# the runner's names, imported on first use so that importing a claim's experiment stays light
_RUNNER_NAMES = {"run_concept"}

__all__ = ["REGISTRY", "ConceptContext", "Measured", *sorted(_RUNNER_NAMES)]


def __getattr__(name: str) -> Any:
    if name in _RUNNER_NAMES:
        # by name, not an import statement: the DAG reads a step's code inputs from its import
        # statements, and a measure job does not run the runner
        return getattr(importlib.import_module("whylab.concepts.runner"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
