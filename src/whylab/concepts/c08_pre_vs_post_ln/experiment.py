"""C08's measurements: every cell trained in both placements from each seed, and the gradient norm
per block at initialisation.

Measuring only: per seed, cell (depth, lr, init std, warm-up) and placement the final validation loss,
whether the run diverged and its evaluation curve; per placement and probe depth the gradient norm of every block at
initialisation; and what the runs were built with (vocabulary, init std, steps). Deciding is in
``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from whylab.bench import lab
from whylab.bench.data import lm_batches
from whylab.bench.train import bench_config, per_layer_grad_norms, train_settings
from whylab.concepts.c08_pre_vs_post_ln.cells import POSITIONS, cell_key, cells_of, section_init_std
from whylab.concepts.context import ConceptContext
from whylab.files import finite

GRAD_PROBE_BATCH = 16  # sequences in the batch whose gradient is measured at initialisation


def overrides(s: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(model overrides, train overrides, the section's init std) of the runs; a cell may name its
    own init std, the gradient probes at initialisation use the section's."""
    model_over = lab.given(s, ("d_model", "n_heads"))
    init_std = section_init_std({**s, "d_model": model_over.get("d_model", s["model"]["d_model"])})
    train_over = {
        **lab.given(s, ("steps", "batch_size", "seq_len", "eval_every", "beta2")),
        "grad_clip": None,
    }
    return {**model_over, "init_std": init_std}, train_over, init_std


def _grad_norms(
    ctx: ConceptContext, corpus: lab.Corpus, seed: int, model_over: Mapping[str, Any], seq_len: int
) -> dict[str, dict[str, list[float]]]:
    """The gradient norm of every block at initialisation, per placement and probe depth."""
    s = ctx.settings
    x, y = next(
        lm_batches(
            corpus.train,
            batch_size=GRAD_PROBE_BATCH,
            seq_len=seq_len,
            generator=torch.Generator().manual_seed(seed),
        )
    )
    grads: dict[str, dict[str, list[float]]] = {}
    for pos in POSITIONS:
        grads[pos] = {}
        for depth in sorted({int(d) for d in s["grad_probe_depths"]}):
            cfg = bench_config(
                s["model"],
                vocab_size=corpus.vocab_size,
                n_layers=depth,
                norm="layer",
                norm_position=pos,
                **model_over,
            )
            grads[pos][str(depth)] = per_layer_grad_norms(lab.build_model(cfg, seed, ctx.device), x, y)
    return grads


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Every cell in both placements from ``seed`` (same initial weights and batches), and the
    gradient norm of every block at initialisation at each probe depth."""
    s = ctx.settings
    corpus = lab.load_corpus(ctx.inputs)
    primary, extra = cells_of(s)
    model_over, train_over, init_std = overrides(s)
    runs: dict[str, dict[str, Any]] = {}
    for cell in primary + extra:
        runs[cell_key(cell)] = {}
        for pos in POSITIONS:
            _, _, hist = lab.train_on_corpus(
                s,
                corpus,
                seed,
                ctx.device,
                {
                    "n_layers": cell["depth"],
                    "norm": "layer",
                    "norm_position": pos,
                    **model_over,
                    "init_std": cell["init_std"],
                },
                {"lr": cell["lr"], "warmup_steps": cell["warmup"], **train_over},
            )
            runs[cell_key(cell)][pos] = {
                "final_eval_loss": finite(hist.final_eval_loss),
                "diverged": bool(hist.diverged),
                "curve": lab.history_dict(hist),
            }
    seq_len = train_settings(s["train"], **train_over).seq_len
    return {
        "seed": seed,
        "runs": runs,
        "grad_norms_at_init": _grad_norms(ctx, corpus, seed, model_over, seq_len),
        # what the runs were built with: the same for every seed (init_std: the gradient probes'
        # and the cells' without their own)
        "vocab_size": corpus.vocab_size,
        "init_std": init_std,
        "steps": int(train_over.get("steps", s["train"]["steps"])),
    }
