"""C19's measurements: peak memory, step times and gradients of a forward + backward pass of a
LlamaForCausalLM at every (mode, depth, sequence length) point.

Measuring only: one raw row per point (peak bytes and their breakdown, the calculator's activation
estimate, every timed step, and the gradients' largest difference from the run without
checkpointing). At each point the modes' steps are timed interleaved, call by call, the same
number of calls per mode as before (``repeats``). Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from whylab.concepts.context import ConceptContext
from whylab.memory import calculator as calc
from whylab.memory import measure as mem
from whylab.memory import training
from whylab.memory.checkpointing import apply_checkpointing


def timed_step(
    s: Mapping[str, Any], mode: str, depth: int, seq: int, seed: int, device: str
) -> tuple[torch.nn.Module, Callable[[], None]]:
    """The point's model with the mode's checkpointing, and one step of it: forward + backward of
    the batch, gradients cleared."""
    model = training.build_llama(s["model"], seed, "fp32", device, num_layers=depth)
    apply_checkpointing(model, mode)
    ids = training.random_ids(int(s["model"]["vocab_size"]), int(s["batch_size"]), seq, seed, device)

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad(set_to_none=True)

    return model, step


def measure_point(
    s: Mapping[str, Any], mode: str, depth: int, seq: int, seed: int, device: str
) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """One point's raw memory measurements (its model alone in memory), and its gradients (to
    compare across modes); the step times are measured interleaved across modes (:func:`measure`)."""
    model = training.build_llama(s["model"], seed, "fp32", device, num_layers=depth)
    segment = apply_checkpointing(model, mode)
    batch = int(s["batch_size"])
    ids = training.random_ids(int(s["model"]["vocab_size"]), batch, seq, seed, device)

    def fwd_bwd() -> None:
        model(input_ids=ids, labels=ids).loss.backward()

    peak = mem.tracked_peak(fwd_bwd, [model, ids], device)
    grads = [p.grad.detach().clone().cpu() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    weights = mem.tensor_bytes(model)
    shape = calc.LlamaShape.from_model_cfg(s["model"], layers=depth)
    estimate = (
        calc.llama_activation_bytes(shape, batch, seq)
        if segment == 0
        else calc.llama_checkpointed_activation_bytes(shape, batch, seq, segment=segment)
    )
    row = {
        "mode": mode,
        "depth": depth,
        "seq": seq,
        "batch": batch,
        "segment": segment,
        "peak_bytes": peak.peak_bytes,
        "working_bytes": peak.peak_bytes - max(peak.baseline_bytes, weights),
        "activations_at_peak": peak.breakdown["activations"],
        "breakdown": peak.breakdown,
        "activation_estimate": estimate,
        "method": peak.method,
    }
    return row, grads


def interleaved_times(
    steps: Mapping[str, Callable[[], None]], repeats: int, device: str
) -> dict[str, list[float]]:
    """Every mode's step timed ``repeats`` times, the modes alternating call by call (one warm-up
    each first; the order rotates each round), so a machine that slows down or speeds up during
    the run weighs on every arm alike (VALIDITY.md section 5)."""
    names = list(steps)
    for name in names:
        steps[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].extend(mem.time_calls(steps[name], 1, device, warmup=0))
    return out


def _grad_rel_max_diff(grads: list[torch.Tensor], base: list[torch.Tensor]) -> float:
    """The largest gradient difference from the run without checkpointing, relative to its largest value."""
    diff = max(float((a - b).abs().max()) for a, b in zip(grads, base, strict=True))
    scale = max(float(b.abs().max()) for b in base)
    return diff / scale


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """Every mode (and always "none") at every point of the depth and sequence-length sweeps."""
    s = ctx.settings
    seed, device, repeats = ctx.seeds[0], ctx.device, int(s["repeats"])
    modes = list(s["modes"])
    if "none" not in modes:
        modes.insert(0, "none")
    points = sorted(
        {("depth", d, int(s["seq_len_for_depths"])) for d in s["depths"]}
        | {("seq", int(s["depth_for_seq_lens"]), q) for q in s["seq_lens"]}
    )
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    grads: dict[tuple[str, int, int], list[torch.Tensor]] = {}
    for _sweep, depth, seq in points:
        if ("none", depth, seq) in rows:
            continue  # the two sweeps share a point
        for mode in modes:
            rows[(mode, depth, seq)], grads[(mode, depth, seq)] = measure_point(
                s, mode, depth, seq, seed, device
            )
        built = {mode: timed_step(s, mode, depth, seq, seed, device) for mode in modes}
        times = interleaved_times({mode: step for mode, (_model, step) in built.items()}, repeats, device)
        for mode, mode_times in times.items():
            rows[(mode, depth, seq)]["step_times_s"] = mode_times
        del built
    for (_mode, depth, seq), row in rows.items():
        row["grad_rel_max_diff"] = _grad_rel_max_diff(grads[(_mode, depth, seq)], grads[("none", depth, seq)])
    return {"points": list(rows.values())}
