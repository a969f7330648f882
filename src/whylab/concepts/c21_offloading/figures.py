"""C21's tables, figures and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts.context import ConceptContext, Measured
from whylab.memory import calculator as calc
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table


def message(finding: Mapping[str, Any]) -> Msg:
    """A provenance finding (whylab.memory.provenance.findings) as its catalogue message."""
    params = {k: [message(x) for x in v] if isinstance(v, list) else v for k, v in finding["params"].items()}
    return Msg(finding["key"], **params)


def _skipped(measured: Measured) -> list[str]:
    w = measured.whole
    if w["device"].startswith("cuda"):
        return []
    skipped: list[str] = [Msg("C21.skipped.no_accelerator")]
    if w.get("recorded") is not None:
        skipped += [
            Msg("C21.skipped.recorded_warning", warning=message(f)) for f in w["recorded"]["provenance"]
        ]
    return skipped


def _ms(mean: float | None, std: float | None) -> str:
    """A step time in ms, mean ± std (one repeat has no spread: NaN, None through JSON)."""
    mean, std = (float("nan") if x is None else x for x in (mean, std))
    return f"{1e3 * mean:.2f} ± {1e3 * std:.2f}"


# the number format each computed quantity counts in: the training step's weights and gradients are
# BF16 (mixed precision), its optimizer state FP32; the forward-pass (layer offload) model is FP32
DTYPES = {
    "weights_bytes": "bf16 (2 B/param)",
    "optimizer_state_offloaded_bytes": "fp32 (master + 2 Adam moments, 12 B/param)",
    "optimizer_state_leaving_accelerator_bytes": "fp32 (master + 2 Adam moments, 12 B/param)",
    "transfer_per_step_bytes": "bf16 (gradients down + weights up, 2 + 2 B/param)",
    "estimated_train_peak_plain": "mixed bf16 / fp32",
    "estimated_train_peak_offload": "mixed bf16 / fp32",
    "layer_weights_offloaded_bytes": "fp32 (4 B/param)",
    "layer_transfer_per_forward_bytes": "fp32 (4 B/param)",
    "inference_weights_bytes": "fp32 (4 B/param)",
}


def _tables(comp: Mapping[str, Any], eq: Mapping[str, Any]) -> list[Table]:
    return [
        Table.from_records(
            "computed",
            Msg("C21.table.computed.caption"),
            [
                {
                    "quantity": k,
                    "value": v if isinstance(v, (int, str)) else round(v, 4),
                    "MiB": round(v / calc.MiB, 3) if k.endswith(("bytes", "plain", "offload")) else "",
                    "dtype": _dtype(k, comp),
                }
                for k, v in comp.items()
            ],
        ),
        Table.from_records(
            "equivalence",
            Msg("C21.table.equivalence.caption"),
            [{"check": k, "value": v} for k, v in eq.items()],
        ),
    ]


def _dtype(key: str, comp: Mapping[str, Any]) -> str:
    """The number format of a computed quantity (one per row: the table mixes BF16 and FP32 ones)."""
    if comp.get("precision") == "fp32" and key in DTYPES:
        return "fp32"
    return DTYPES.get(key, "")


def _accelerator_table(acc: Mapping[str, Any], source: Msg) -> Table:
    return Table.from_records(
        "accelerator",
        Msg("C21.table.accelerator.caption", source=source),
        [
            {
                "case": case,
                "kind": kind,
                "peak (MiB)": round(acc[f"{kind}_peak_{case}"] / calc.MiB, 2),
                "reserved peak (MiB)": round(acc[f"{kind}_reserved_{case}"] / calc.MiB, 2)
                if acc.get(f"{kind}_reserved_{case}")
                else "not recorded",
                "left over before (MiB)": round(acc[f"{kind}_leftover_before_{case}"] / calc.MiB, 3)
                if f"{kind}_leftover_before_{case}" in acc
                else "not recorded",
                "time (ms)": _ms(acc[f"{kind}_time_{case}_mean_s"], acc[f"{kind}_time_{case}_std_s"]),
            }
            for kind in ("train", "infer")
            for case in ("plain", "offload")
        ],
    )


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    comp, acc = metrics["computed"], metrics["accelerator"]
    source = metrics["accelerator_source"] or Msg("C21.source.unnamed")
    tables = _tables(comp, metrics["equivalence"])
    figures = [_computed_figure(ctx, comp)]
    if acc is not None:
        tables.append(_accelerator_table(acc, source))
        figures.append(_figure(ctx, acc, source))
    threshold = metrics["min_saving"]
    literature = [
        LiteratureCheck(
            "Ren et al. 2021 (ZeRO-Offload)",
            Msg("C21.literature.ren.finding"),
            None if acc is None else acc["train_saving"] >= threshold,
            Msg("C21.literature.ren.no_measurement")
            if acc is None
            else Msg(
                "C21.literature.ren.measured",
                train=acc["train_saving"],
                train_time=acc["train_time_ratio"],
                source=source,
                threshold=threshold,
            ),
        )
    ]
    return Evidence(
        method=Msg("C21.method"),
        metrics=metrics,
        seeds=measured.seeds[:1],
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=_skipped(measured),
    )


def _computed_figure(ctx: ConceptContext, comp: Mapping[str, Any]) -> Any:
    """What offloading takes off the accelerator, computed from the model (no accelerator needed)."""
    rows = [
        {
            "workload": "training step (mixed-precision AdamW)",
            "case": "no offloading",
            "MiB": comp["estimated_train_peak_plain"],
        },
        {
            "workload": "training step (mixed-precision AdamW)",
            "case": "offloaded",
            "MiB": comp["estimated_train_peak_offload"],
        },
        {
            "workload": "weights resident (forward, FP32)",
            "case": "no offloading",
            "MiB": comp.get("inference_weights_bytes", comp["weights_bytes"]),
        },
        {
            "workload": "weights resident (forward, FP32)",
            "case": "offloaded",
            "MiB": comp.get("inference_weights_bytes", comp["weights_bytes"])
            - comp["layer_weights_offloaded_bytes"],
        },
    ]
    frame = pd.DataFrame(rows)
    frame["MiB"] = frame["MiB"] / calc.MiB
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(frame, x="workload", y="MiB", hue="case", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.75)

    ax.set_xlabel("workload")
    ax.set_ylabel("accelerator memory, computed (MiB)")
    return plotting.save(
        fig,
        ctx.outdir,
        "offload_computed",
        Msg("C21.figure.offload_computed.title"),
        Msg(
            "C21.figure.offload_computed.caption",
            n_layers=comp["offload_layers"],
            transfer_mib=comp["transfer_per_step_bytes"] / calc.MiB,
        ),
    )


def _figure(ctx: ConceptContext, acc: Mapping[str, Any], source: Msg) -> Any:
    frame = pd.DataFrame(
        [
            {
                "kind": {"train": "training step", "infer": "forward (inference)"}[k],
                "case": {"plain": "no offloading", "offload": "offloaded"}[c],
                "MiB": acc[f"{k}_peak_{c}"] / calc.MiB,
            }
            for k in ("train", "infer")
            for c in ("plain", "offload")
        ]
    )
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(frame, x="kind", y="MiB", hue="case", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.75)

    ax.set_xlabel("workload")
    ax.set_ylabel("peak allocated accelerator memory (MiB)")
    return plotting.save_figure(fig, ctx.outdir, "C21.figure.offload_peak", source=source)
