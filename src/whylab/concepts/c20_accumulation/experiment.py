"""C20's measurements: accumulated vs one-batch gradients, and peak memory and time per micro-batch.

Measuring only: per case (equal lengths; padded with mean of means; padded with token sum over
the batch's tokens), micro-batch size and repeat, the relative gradient difference; per
micro-batch size, the peak memory and the times of one AdamW step over the whole batch.
Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

import functools
from typing import Any

from whylab.concepts.context import ConceptContext
from whylab.errors import InputError
from whylab.memory import accumulation as acc
from whylab.memory import measure as memory_measure
from whylab.memory import training

# (case, variable lengths, normalisation); the case names are the tables' and figures' labels
CASES = (
    ("equal lengths", False, "mean_of_means"),
    ("padded, mean of means", True, "mean_of_means"),
    ("padded, token sum / batch tokens", True, "token_sum"),
)


def _micro_sizes(s: dict[str, Any]) -> list[int]:
    batch = int(s["batch_size"])
    micros = sorted(int(m) for m in s["micro_batch_sizes"])
    for m in micros:
        if batch % m:
            raise InputError(f"memory.C20.micro_batch_sizes: {m} does not divide batch_size {batch}")
    return micros


def _gradient_rows(
    s: dict[str, Any], seeds: list[int], micros: list[int], device: str
) -> list[dict[str, Any]]:
    """Accumulated vs one large batch, per seed, case and micro-batch size."""
    batch, seq, vocab = int(s["batch_size"]), int(s["seq_len"]), int(s["model"]["vocab_size"])
    diffs: list[dict[str, Any]] = []
    for seed in seeds:
        model = training.build_llama(s["model"], seed, "fp32", device)
        for case, variable, norm in CASES:
            data = acc.make_batch(vocab, batch, seq, int(s["min_len"]), seed, variable)
            ref, ref_loss = acc.gradients(
                model, functools.partial(acc.full_batch_backward, model, data, device)
            )
            for m in micros:
                grads, loss = acc.gradients(
                    model,
                    functools.partial(acc.accumulate_backward, model, data, m, norm, device),
                )
                rel, mx = acc.relative_difference(grads, ref)
                diffs.append(
                    {
                        "case": case,
                        "micro": m,
                        "seed": seed,
                        "rel_diff": rel,
                        "max_abs_diff": mx,
                        "loss_accumulated": loss,
                        "loss_full": ref_loss,
                        "target_tokens": acc.target_tokens(data["labels"]),
                    }
                )
        del model
    return diffs


def _memory_rows(s: dict[str, Any], base_seed: int, micros: list[int], device: str) -> list[dict[str, Any]]:
    """Peak memory and times of one optimizer step over the whole batch, per micro-batch size."""
    batch, seq, vocab = int(s["batch_size"]), int(s["seq_len"]), int(s["model"]["vocab_size"])
    repeats = int(s["repeats"])
    mem: list[dict[str, Any]] = []
    data = acc.make_batch(vocab, batch, seq, int(s["min_len"]), base_seed, False)
    for m in micros:
        model = training.build_llama(s["model"], base_seed, "fp32", device)
        opt = training.make_optimizer(model, "adamw")

        def step(m: int = m, model: Any = model, opt: Any = opt) -> None:
            acc.accumulate_backward(model, data, m, "token_sum", device)
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()  # optimizer state exists from here on
        peak = memory_measure.tracked_peak(step, [model, opt, *data.values()], device)
        times = memory_measure.time_calls(step, repeats, device, warmup=0)
        mem.append(
            {
                "micro": m,
                "accumulation_steps": batch // m,
                "peak_bytes": peak.peak_bytes,
                "breakdown": peak.breakdown,
                "activations_at_peak": peak.breakdown["activations"],
                "times_s": times,
                "method": peak.method,
            }
        )
        del model, opt
    return mem


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """The gradient rows, the memory rows, the micro-batch sizes and the repeats' seeds."""
    s = ctx.settings
    micros = _micro_sizes(s)
    base_seed = ctx.seeds[0]
    seeds = [base_seed + i for i in range(int(s["repeats"]))]  # one fresh model and batch per repeat
    return {
        "cases": [case for case, _variable, _norm in CASES],
        "seeds": seeds,
        "micros": micros,
        "diffs": _gradient_rows(s, seeds, micros, ctx.device),
        "memory": _memory_rows(s, base_seed, micros, ctx.device),
    }
