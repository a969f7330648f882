"""C18's measurements: real training steps of a small LlamaForCausalLM.

Measuring only: every (batch, seq) point of the activation grid with AdamW in FP32, every optimizer
at the reference point (peak live tensor bytes broken down into weights, gradients, optimizer state
and activations, with the calculator's estimate and the notes' formula at that point), transformers'
Adafactor (with and without β₁) on Llama-2-7B-shape matrices, and on a CPU the peak resident-set
growth of a step in a fresh process with its noise floor. The notes' models
and the memory plan are the calculator's (pure) arithmetic, done by the decision. Deciding is in
``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

import torch

from whylab.concepts.context import ConceptContext
from whylab.memory import calculator as calc
from whylab.memory import measure as mem
from whylab.memory import training

PRECISION_OF = {"mixed_adamw": "mixed_bf16"}


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    seen: dict[int, int] = {}
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.device.type != "meta":
                st = value.untyped_storage()
                seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def _grad_bytes(model: torch.nn.Module) -> int:
    return sum(p.grad.untyped_storage().nbytes() for p in model.parameters() if p.grad is not None)


def measure_point(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    shape: calc.LlamaShape,
    batch: int,
    seq: int,
    optimizer: str,
    precision: str,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """One measured training step at (batch, seq), after the optimizer state exists."""
    ids = training.random_ids(shape.vocab, batch, seq, seed, device)
    saved, out = mem.saved_activation_bytes(model, lambda: model(input_ids=ids, labels=ids).loss)
    out.backward()
    grads = _grad_bytes(model)
    opt.zero_grad(set_to_none=True)
    del out
    peak = mem.tracked_peak(lambda: training.train_step(model, opt, ids), [model, opt, ids], device)
    est = calc.training_estimate(
        training.param_shapes(model),
        shape,
        batch,
        seq,
        optimizer,
        precision,
        step_bytes=0 if device.startswith("cuda") else 4,
    )
    p = est.params
    # what the allocator holds before the step beyond the model's own tensors (CUDA: library workspaces)
    resident = (
        est.weights
        + est.optimizer
        + ids.numel() * ids.element_size()
        + sum(b.numel() * b.element_size() for b in model.buffers())
    )
    overhead = max(0, peak.baseline_bytes - resident) if device.startswith("cuda") else 0
    weights = calc.precision(precision).weight * p
    notes_dtype = "fp32" if precision == "fp32" else "bf16"
    row: dict[str, Any] = {
        "batch": batch,
        "seq": seq,
        "tokens": batch * seq,
        "optimizer": optimizer,
        "precision": precision,
        "params": p,
        "measured_peak": peak.peak_bytes,
        "breakdown": peak.breakdown,
        "method": peak.method,
        "saved_activations": saved,
        "gradient_bytes": grads,
        "optimizer_state_bytes": _state_bytes(opt),
        "allocator_overhead": overhead,
        # CUDA only: what the caching allocator reserved at most, and the CUDA context beside it
        "reserved_peak": peak.extra.get("max_memory_reserved"),
        "cuda_context": peak.extra.get("cuda_context"),
        "tracker_peak": peak.tracker_peak_bytes,
        "estimate": est.to_dict(),
        "activation_over_model": saved / weights,
        "notes_literal": calc.notes_training_bytes(
            p, notes_dtype, calc.NOTES_OPTIMIZER_OF[optimizer], 0.25, "literal"
        ),
        "notes_additive": calc.notes_training_bytes(
            p, notes_dtype, calc.NOTES_OPTIMIZER_OF[optimizer], 0.25, "additive"
        ),
    }
    for key in ("notes_literal", "notes_additive"):
        row[f"{key}_rel_err"] = (row[key] - peak.peak_bytes) / peak.peak_bytes
    row["exact_rel_err"] = (est.phase_peak + overhead - peak.peak_bytes) / peak.peak_bytes
    row["sum_rel_err"] = (est.sum_of_terms - peak.peak_bytes) / peak.peak_bytes
    return row


def _grid(s: Mapping[str, Any], shape: calc.LlamaShape, seed: int, device: str) -> list[dict[str, Any]]:
    """The activation grid: AdamW, FP32, every (batch, seq)."""
    model = training.build_llama(s["model"], seed, "fp32", device)
    opt = training.make_optimizer(model, "adamw")
    training.train_step(model, opt, training.random_ids(shape.vocab, 1, 8, seed, device))
    return [
        measure_point(model, opt, shape, b, q, "adamw", "fp32", seed, device)
        for b in s["batch_sizes"]
        for q in s["seq_lens"]
    ]


def _per_optimizer(
    s: Mapping[str, Any], shape: calc.LlamaShape, seed: int, device: str
) -> list[dict[str, Any]]:
    """Every optimizer at the reference point."""
    rb, rs = s["reference_point"]
    per_opt = []
    for name in s["optimizers"]:
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        prec = PRECISION_OF.get(name, "fp32")
        model = training.build_llama(s["model"], seed, prec, device)
        opt = training.make_optimizer(model, name)
        training.train_step(model, opt, training.random_ids(shape.vocab, rb, rs, seed, device))
        row = measure_point(model, opt, shape, rb, rs, name, prec, seed, device)
        row["optimizer_bytes_per_param"] = row["optimizer_state_bytes"] / row["params"]
        row["gradient_bytes_per_param"] = row["gradient_bytes"] / row["params"]
        row["model_state_bytes_per_param"] = (
            calc.precision(prec).weight * row["params"] + row["gradient_bytes"] + row["optimizer_state_bytes"]
        ) / row["params"]
        per_opt.append(row)
        del model, opt
    return per_opt


def _rss(ctx: ConceptContext, shape: calc.LlamaShape, grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The process-level check: peak RSS growth of a step in a fresh process, ``repeats`` times per
    point, beside the tracked growth of the same step."""
    s, seed, device = ctx.settings, ctx.seeds[0], ctx.device
    out = []
    for b, q in s["rss_points"]:
        deltas = [
            mem.rss_peak(
                "whylab.memory.training:step_work",
                {
                    "model_cfg": dict(s["model"]),
                    "batch": b,
                    "seq": q,
                    "optimizer": "adamw",
                    "precision": "fp32",
                    "seed": seed,
                },
                threads=ctx.threads,
            )["peak_delta_bytes"]
            for _ in range(int(s["repeats"]))
        ]
        tracked = next((g for g in grid if g["batch"] == b and g["seq"] == q), None)
        if tracked is None:
            m2 = training.build_llama(s["model"], seed, "fp32", device)
            o2 = training.make_optimizer(m2, "adamw")
            training.train_step(m2, o2, training.random_ids(shape.vocab, b, q, seed, device))
            tracked = measure_point(m2, o2, shape, b, q, "adamw", "fp32", seed, device)
        resident = (
            tracked["breakdown"]["parameters"]
            + tracked["breakdown"]["optimizer"]
            + tracked["breakdown"]["buffers"]
            + tracked["breakdown"]["other"]
        )
        out.append(
            {
                "batch": b,
                "seq": q,
                "rss_peak_deltas": deltas,
                "tracked_step_delta": tracked["measured_peak"] - resident,
            }
        )
    return out


def measure(ctx: ConceptContext) -> dict[str, Any]:
    s = ctx.settings
    seed, device = ctx.seeds[0], ctx.device
    shape = calc.LlamaShape.from_model_cfg(s["model"])
    grid = _grid(s, shape, seed, device)
    per_opt = _per_optimizer(s, shape, seed, device)
    rss = _rss(ctx, shape, grid) if device == "cpu" else []
    noise = [
        mem.rss_peak("whylab.memory.measure:null_work", threads=ctx.threads)["peak_delta_bytes"]
        for _ in range(int(s["repeats"]) if rss else 0)
    ]
    return {
        "device": device,
        "adafactor_real_shape": [adafactor_state(ADAFACTOR_SHAPES, b1) for b1 in (None, 0.9)],
        "grid": grid,
        "per_optimizer": per_opt,
        "rss": rss,
        "rss_noise_floor_bytes": noise,
    }


# Llama-2-7B's matrix shapes (attention projection, MLP projection) and a norm vector: the real shapes
# at which AdaFactor's factored state is counted (its bytes per parameter depend on the shape)
ADAFACTOR_SHAPES: tuple[tuple[int, ...], ...] = ((4096, 4096), (11008, 4096), (4096,))


def adafactor_state(shapes: tuple[tuple[int, ...], ...], beta1: float | None) -> dict[str, Any]:
    """transformers' Adafactor after one step on parameters of ``shapes`` (gradients set directly,
    no model): the bytes of its state tensors per parameter, with ``beta1`` None (no momentum, the
    paper's setting) or set (a full first moment beside the factored second)."""
    from transformers.optimization import Adafactor

    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt = Adafactor(params, lr=1e-3, relative_step=False, scale_parameter=False, beta1=beta1)
    opt.step()
    n = sum(p.numel() for p in params)
    state = _state_bytes(opt)
    keys = sorted({k for st in opt.state.values() for k in st})
    del opt, params
    gc.collect()
    return {
        "beta1": beta1,
        "shapes": [list(s) for s in shapes],
        "params": n,
        "state_bytes": state,
        "bytes_per_param": state / n,
        "state_keys": keys,
    }
