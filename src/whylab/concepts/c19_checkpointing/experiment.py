"""C19's measurements: peak memory, step times and gradients of a forward + backward pass of a
LlamaForCausalLM at every (mode, depth, sequence length) point.

Measuring only: one raw row per point (peak bytes and their breakdown, the calculator's activation
estimate, every timed step, and the gradients' largest difference from the run without
checkpointing). Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from whylab.concepts.context import ConceptContext
from whylab.memory import calculator as calc
from whylab.memory import measure as mem
from whylab.memory import training
from whylab.memory.checkpointing import apply_checkpointing


def measure_point(
    s: Mapping[str, Any], mode: str, depth: int, seq: int, seed: int, device: str, repeats: int
) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """One point's raw measurements, and its gradients (to compare across modes)."""
    model = training.build_llama(s["model"], seed, "fp32", device, num_layers=depth)
    segment = apply_checkpointing(model, mode)
    batch = int(s["batch_size"])
    ids = training.random_ids(int(s["model"]["vocab_size"]), batch, seq, seed, device)

    def fwd_bwd() -> None:
        model(input_ids=ids, labels=ids).loss.backward()

    peak = mem.tracked_peak(fwd_bwd, [model, ids], device)
    grads = [p.grad.detach().clone().cpu() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)

    def timed() -> None:
        fwd_bwd()
        model.zero_grad(set_to_none=True)

    times = mem.time_calls(timed, repeats, device, warmup=1)
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
        "step_times_s": times,
        "method": peak.method,
    }
    return row, grads


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
        for mode in modes:
            if (mode, depth, seq) not in rows:
                rows[(mode, depth, seq)], grads[(mode, depth, seq)] = measure_point(
                    s, mode, depth, seq, seed, device, repeats
                )
    for (_mode, depth, seq), row in rows.items():
        row["grad_rel_max_diff"] = _grad_rel_max_diff(grads[(_mode, depth, seq)], grads[("none", depth, seq)])
    return {"points": list(rows.values())}
