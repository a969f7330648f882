"""C20: gradient accumulation splits a large batch into small ones.

If accumulation is a faithful split, the gradients summed over micro-batches equal the large
batch's gradient, while the peak memory follows the micro-batch, not the batch. Both are measured
on a LlamaForCausalLM. The catch the notes do not mention is measured too: with padding or
variable-length sequences, averaging per-micro-batch mean losses ("mean of means") weights every
micro-batch equally rather than every token, so the result is not the large batch's gradient;
dividing token sums by the batch's total token count (transformers' ``num_items_in_batch``) is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.memory import accumulation as acc
from whylab.memory import calculator as calc
from whylab.memory import measure, training
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C20"
CASES = (
    ("equal lengths", False, "mean_of_means"),
    ("padded, mean of means", True, "mean_of_means"),
    ("padded, token sum / batch tokens", True, "token_sum"),
)


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    device, repeats = ctx.device, int(s["repeats"])
    batch, seq, vocab = int(s["batch_size"]), int(s["seq_len"]), int(s["model"]["vocab_size"])
    micros = sorted(int(m) for m in s["micro_batch_sizes"])
    for m in micros:
        if batch % m:
            raise InputError(f"memory.C20.micro_batch_sizes: {m} does not divide batch_size {batch}")
    base_seed = ctx.seeds[0]
    seeds = [base_seed + i for i in range(repeats)]  # one fresh model and batch per repeat

    # 1. gradients: accumulated vs one large batch, per case, micro-batch size and repeat
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

    # 2. peak memory and time of one optimizer step over the whole batch, per micro-batch size
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
        peak = measure.tracked_peak(step, [model, opt, *data.values()], device)
        times = measure.time_calls(step, repeats, device, warmup=0)
        t = Spread.of(times)
        mem.append(
            {
                "micro": m,
                "accumulation_steps": batch // m,
                "peak_bytes": peak.peak_bytes,
                "breakdown": peak.breakdown,
                "activations_at_peak": peak.breakdown["activations"],
                "time_mean_s": t.mean,
                "time_std_s": t.std,
                "times_s": times,
                "method": peak.method,
            }
        )
        del model, opt

    metrics = _metrics(s, diffs, mem, micros)
    tables = _tables(diffs, mem, micros, repeats)
    figures = _figures(ctx, diffs, mem)
    method = Msg("C20.method", batch=batch, micros=[str(m) for m in micros], repeats=repeats)
    literature = [
        LiteratureCheck(
            "Hugging Face, 'Fixing Gradient Accumulation' (2024; transformers' num_items_in_batch)",
            Msg("C20.literature.hf_fix.finding"),
            metrics["hf_fix_agrees"],
            Msg(
                "C20.literature.hf_fix.note",
                mom=metrics["padded_mean_of_means_max_rel"],
                ts=metrics["padded_token_sum_max_rel"],
            ),
        )
    ]
    return Evidence(
        method=method, metrics=metrics, seeds=seeds, tables=tables, figures=figures, literature=literature
    )


def _metrics(
    s: Mapping[str, Any], diffs: list[dict[str, Any]], mem: list[dict[str, Any]], micros: list[int]
) -> dict[str, Any]:
    tol = float(s["equal_tolerance"])
    split = [d for d in diffs if d["micro"] < int(s["batch_size"])]  # micro == batch is the batch itself

    def worst(case: str) -> float:
        vals = [d["rel_diff"] for d in split if d["case"] == case]
        return max(vals) if vals else 0.0

    by_micro = {r["micro"]: r for r in mem}
    small, large = by_micro[micros[0]], by_micro[micros[-1]]
    padded_mom, padded_ts = worst(CASES[1][0]), worst(CASES[2][0])
    return {
        "diffs": diffs,
        "memory": mem,
        "equal_max_rel": worst(CASES[0][0]),
        "padded_mean_of_means_max_rel": padded_mom,
        "padded_mean_of_means_min_rel": min(
            (d["rel_diff"] for d in split if d["case"] == CASES[1][0]), default=0.0
        ),
        "padded_token_sum_max_rel": padded_ts,
        "peak_smallest_micro": small["peak_bytes"],
        "peak_largest_micro": large["peak_bytes"],
        "peak_reduction": 1 - small["peak_bytes"] / large["peak_bytes"],
        "time_ratio_smallest_vs_largest": small["time_mean_s"] / large["time_mean_s"],
        "micro_smallest": micros[0],
        "micro_largest": micros[-1],
        "equal_tolerance": tol,
        "hf_fix_agrees": padded_mom > 100 * tol and padded_ts <= tol if len(micros) > 1 else None,
    }


def _tables(
    diffs: list[dict[str, Any]], mem: list[dict[str, Any]], micros: list[int], repeats: int
) -> list[Table]:
    rows = []
    for case, _v, _n in CASES:
        for m in micros:
            sel = [d for d in diffs if d["case"] == case and d["micro"] == m]
            rel = Spread.of([d["rel_diff"] for d in sel])
            loss_gap = Spread.of([d["loss_accumulated"] - d["loss_full"] for d in sel])
            rows.append(
                {
                    "case": case,
                    "micro-batch": m,
                    "‖Δg‖/‖g‖": f"{rel.mean:.2e} ± {rel.std:.1e}",
                    "max |Δg|": f"{max(d['max_abs_diff'] for d in sel):.2e}",
                    "loss gap (nats/token)": f"{loss_gap.mean:+.2e} ± {loss_gap.std:.1e}",
                }
            )
    return [
        Table.from_records("gradients", Msg("C20.table.gradients.caption", repeats=repeats), rows),
        Table.from_records(
            "memory",
            Msg("C20.table.memory.caption", method=memory_method_text(mem[0]["method"]), repeats=repeats),
            [
                {
                    "micro-batch": r["micro"],
                    "accumulation steps": r["accumulation_steps"],
                    "peak (MiB)": round(r["peak_bytes"] / calc.MiB, 3),
                    "activations at peak (MiB)": round(r["activations_at_peak"] / calc.MiB, 3),
                    "step time (ms)": f"{1e3 * r['time_mean_s']:.1f} ± {1e3 * r['time_std_s']:.1f}",
                }
                for r in mem
            ],
        ),
    ]


def _figures(ctx: ConceptContext, diffs: list[dict[str, Any]], mem: list[dict[str, Any]]) -> list[Any]:
    frame = pd.DataFrame(
        [
            {"case": d["case"], "micro-batch": d["micro"], "rel": d["rel_diff"]}
            for d in diffs
            if d["micro"] < max(x["micro"] for x in diffs)
        ]
    )
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.lineplot(frame, x="micro-batch", y="rel", hue="case", marker="o", errorbar="sd", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.68)

    ax.set_yscale("log")
    ax.set_xlabel("micro-batch size (sequences)")
    ax.set_ylabel("‖g_accumulated − g_batch‖ / ‖g_batch‖ (ratio, log)")
    f1 = plotting.save_figure(fig, ctx.outdir, "C20.figure.gradient_difference")
    mframe = pd.DataFrame(
        [
            {"micro-batch": r["micro"], "peak memory (MiB)": r["peak_bytes"] / calc.MiB, "ms": 1e3 * t}
            for r in mem
            for t in r["times_s"]
        ]
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sns.lineplot(mframe, x="micro-batch", y="peak memory (MiB)", marker="o", ax=axes[0])
    axes[0].set_xlabel("micro-batch size (sequences)")
    axes[0].set_ylabel("peak memory of one step (MiB)")
    sns.lineplot(mframe, x="micro-batch", y="ms", marker="o", errorbar="sd", ax=axes[1])
    axes[1].set_xlabel("micro-batch size (sequences)")
    axes[1].set_ylabel("time per optimizer step (ms)")
    f2 = plotting.save_figure(fig, ctx.outdir, "C20.figure.memory_vs_micro")
    return [f1, f2]


def memory_method_text(method: str) -> str:
    """How peak memory was measured: the tracker's description as a message (both languages), or a
    method name that is code (``torch.cuda.max_memory_allocated``) as it is."""
    text = Msg("C20.memory_method.tracker")
    return text if text == method else method


def primary_text() -> str:
    return Msg("C20.primary")


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    out = VerdictOf(Kind.EXPERIMENT, primary_text())
    tol = metrics["equal_tolerance"]
    eq, mom, ts = (
        metrics["equal_max_rel"],
        metrics["padded_mean_of_means_max_rel"],
        metrics["padded_token_sum_max_rel"],
    )
    red = metrics["peak_reduction"]
    ms, ml = metrics["micro_smallest"], metrics["micro_largest"]
    if ms == ml:
        return out.branch(Label.INCONCLUSIVE, "C20.verdict.one_micro")
    if eq > tol:
        return out.branch(Label.NOT_SUPPORTED, "C20.verdict.not_equal", eq=eq, tol=tol)
    if red < 0.05:
        return out.branch(
            Label.PARTLY, "C20.verdict.no_memory_saving", eq=eq, ms=ms, ml=ml, red_pct=100 * red
        )
    if ts > tol:
        return out.branch(Label.PARTLY, "C20.verdict.padded_differs", eq=eq, ts=ts, red_pct=100 * red)
    return out.branch(
        Label.SUPPORTED,
        "C20.verdict.split",
        worst=max(eq, ts),
        ms=ms,
        ml=ml,
        red_pct=100 * red,
        mom=mom,
    )
