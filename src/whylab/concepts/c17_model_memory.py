"""C17: model memory = parameters × bytes per value (FP32 4, FP16/BF16 2, INT8 1, INT4 0.5).

Three checks. (1) The parameter counts the notes quote (BERT-base 110M, GPT-3 175B) against
exact counts of the real architectures, from transformers' config classes, counted
analytically and on the meta device (no weights anywhere). (2) The notes' arithmetic
(440/220/110 MB; 700/350/175/87.5 GB) against exact counts × bytes, in decimal MB/GB and
in the binary MiB/GiB that tools such as nvidia-smi print. (3) A small model really loaded
in each format, its tensors' bytes read from their storages (quantized formats carry scales,
zero points, block statistics) and its resident-set growth in a fresh process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.memory import calculator, counting, formats, measure
from whylab.memory.training import build_llama, n_params
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict

CLAIM_ID = "C17"

# The notes' own numbers (GPU 메모리 계산방식): model name in the config -> (quoted params, {dtype: value}, unit)
NOTES_QUOTES: dict[str, tuple[float, dict[str, float], str]] = {
    "bert-base": (110e6, {"fp32": 440.0, "fp16": 220.0, "int8": 110.0}, "MB"),
    "gpt3-175b": (175e9, {"fp32": 700.0, "fp16": 350.0, "int8": 175.0, "int4": 87.5}, "GB"),
}
UNITS = {"MB": (calculator.MB, calculator.MiB, "MiB"), "GB": (calculator.GB, calculator.GiB, "GiB")}


def _rel(quoted: float, exact: float) -> float:
    return (quoted - exact) / exact


def count_models(specs: list[counting.ModelSpec]) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        analytic = counting.analytic_params(spec)
        meta = counting.meta_params(spec)
        rows.append(
            {
                "model": spec.name,
                "family": spec.family,
                "analytic": analytic,
                "meta": meta,
                "match": analytic == meta,
                "quoted": spec.quoted_params,
                "quoted_rel_err": _rel(spec.quoted_params, meta) if spec.quoted_params else None,
                "source": spec.source,
            }
        )
    return rows


def notes_rows(counts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    exact = {row["model"]: row["meta"] for row in counts}
    rows = []
    for name, (_quoted_params, values, unit) in NOTES_QUOTES.items():
        if name not in exact:
            continue
        dec, binary, bunit = UNITS[unit]
        for dtype, quoted in values.items():
            nbytes = calculator.model_bytes(exact[name], dtype)
            rows.append(
                {
                    "model": name,
                    "dtype": dtype,
                    "notes": quoted,
                    "unit": unit,
                    "exact_decimal": nbytes / dec,
                    "exact_binary": nbytes / binary,
                    "binary_unit": bunit,
                    "rel_err_decimal": _rel(quoted, nbytes / dec),
                    "rel_err_if_binary": _rel(quoted, nbytes / binary),
                }
            )
    return rows


def measure_formats(
    ctx: ConceptContext,
    model_cfg: Mapping[str, Any],
    names: list[str],
    rss_names: list[str],
    repeats: int,
    skipped: list[str],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    seed = ctx.seeds[0]
    for name in names:
        fmt = formats.FORMATS[name]
        try:
            model = fmt.apply(build_llama(model_cfg, seed, "fp32"))
        except Exception as exc:  # a format whose kernels are missing here is reported, not hidden
            skipped.append(
                f"format {name} ({fmt.library}) could not be built here: {type(exc).__name__}: {exc}"
            )
            continue
        reference = build_llama(model_cfg, seed, "fp32")
        params = n_params(reference)
        lin = formats.linear_weight_params(reference)
        other = params - lin  # embedding and norms: the formats leave them as they were (FP32)
        per_value = calculator.dtype_bytes(fmt.nominal)
        layer_bytes = formats.quantized_layer_bytes(model) if fmt.nominal in ("int8", "int4") else None
        total = measure.tensor_bytes(model)
        rss = []
        for _ in range(repeats if name in rss_names else 0):
            r = measure.rss_peak(
                "whylab.memory.formats:load_work",
                {"model_cfg": dict(model_cfg), "fmt": name, "seed": seed},
                threads=ctx.threads,
            )
            rss.append(r["resident_delta_bytes"])
        spread = Spread.of(rss) if rss else Spread(math.nan, math.nan, 0)
        out[name] = {
            "nominal": fmt.nominal,
            "library": fmt.library,
            "packed": fmt.packed,
            "description": fmt.description,
            "nominal_bytes_per_value": per_value,
            "params": params,
            "linear_params": lin,
            "model_bytes": total,
            "model_nominal_bytes": params * per_value,
            "model_ratio": total / (params * per_value),
            "layer_bytes": layer_bytes,
            "layer_bytes_per_value": layer_bytes / lin if layer_bytes is not None else total / params,
            "layer_ratio": (layer_bytes / (lin * per_value))
            if layer_bytes is not None
            else total / (params * per_value),
            "unquantized_bytes": other * 4 if layer_bytes is not None else 0,
            "rss_resident_mean": spread.mean,
            "rss_resident_std": spread.std,
            "rss_n": spread.n,
            "rss_over_tensor_bytes": spread.mean / total if total else math.nan,
        }
        del model, reference
    return out


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    specs = [counting.spec_from_mapping(m) for m in s["models"]]
    counts = count_models(specs)
    nrows = notes_rows(counts)
    skipped: list[str] = []
    missing = [n for n in NOTES_QUOTES if n not in {c["model"] for c in counts}]
    if missing:
        skipped.append(f"the notes' examples {', '.join(missing)} are not among memory.C17.models")
    fmts = measure_formats(
        ctx, s["model"], list(s["formats"]), list(s["rss_formats"]), int(s["repeats"]), skipped
    )

    floats = {k: v for k, v in fmts.items() if v["nominal"] in ("fp32", "fp16", "bf16")}
    quants = {k: v for k, v in fmts.items() if v["nominal"] in ("int8", "int4")}
    rss_dev = [abs(v["rss_over_tensor_bytes"] - 1) for v in fmts.values() if v["nominal"] == "fp32"]
    metrics: dict[str, Any] = {
        "counts": counts,
        "counts_match_meta": all(c["match"] for c in counts),
        "notes_rows": nrows,
        "notes_max_abs_rel_err_decimal": max((abs(r["rel_err_decimal"]) for r in nrows), default=None),
        "notes_max_abs_rel_err_if_binary": max((abs(r["rel_err_if_binary"]) for r in nrows), default=None),
        "formats": fmts,
        "float_max_abs_dev": max((abs(v["model_ratio"] - 1) for v in floats.values()), default=None),
        # "INT4 = 0.5 byte" is judged on packed formats (bitsandbytes NF4: two values per byte); a layout
        # that keeps one 4-bit value per byte (torchao's CPU int4) is reported as a property of that kernel
        "quant_layer_ratios": {k: v["layer_ratio"] for k, v in quants.items() if v.get("packed", True)},
        "unpacked_layer_ratios": {
            k: v["layer_ratio"] for k, v in quants.items() if not v.get("packed", True)
        },
        "quant_bits_per_weight": {k: 8 * v["layer_bytes_per_value"] for k, v in quants.items()},
        "quant_model_ratios": {k: v["model_ratio"] for k, v in quants.items()},
        "rss_fp32_abs_dev": max(rss_dev) if rss_dev else None,
        "tolerance_float": float(s["tolerance_float"]),
        "tolerance_quant": float(s["tolerance_quant"]),
        "tolerance_notes": float(s["tolerance_notes"]),
    }

    tables = [
        Table.from_records(
            "parameter_counts",
            "Exact parameter counts: analytic formula vs the model class built "
            "on the meta device (no weights), and the count each source quotes.",
            [
                {
                    "model": c["model"],
                    "family": c["family"],
                    "analytic": c["analytic"],
                    "meta device": c["meta"],
                    "equal": c["match"],
                    "quoted": c["quoted"],
                    "quoted vs exact (%)": None
                    if c["quoted_rel_err"] is None
                    else round(100 * c["quoted_rel_err"], 2),
                    "source of quote": c["source"],
                }
                for c in counts
            ],
        ),
        Table.from_records(
            "notes_vs_exact",
            "The notes' model memory vs exact parameters × bytes per value, in "
            "decimal units (MB = 10⁶ B, GB = 10⁹ B) and as it would read in binary units (MiB, GiB).",
            [
                {
                    "model": r["model"],
                    "dtype": r["dtype"],
                    "notes": f"{r['notes']:g} {r['unit']}",
                    "exact": f"{r['exact_decimal']:.1f} {r['unit']}",
                    "error (%)": round(100 * r["rel_err_decimal"], 2),
                    "exact (binary)": f"{r['exact_binary']:.1f} {r['binary_unit']}",
                    "error if read as binary (%)": round(100 * r["rel_err_if_binary"], 2),
                }
                for r in nrows
            ],
        ),
        Table.from_records(
            "measured_formats",
            "A small Llama model loaded in each format: bytes read from its tensors' "
            "storages vs parameters × nominal bytes; quantized formats apply to the Linear layers "
            f"(embedding and norms stay FP32); resident-set growth of a fresh process over {s['repeats']} repeats.",
            [
                {
                    "format": k,
                    "library": v["library"],
                    "layout": v["description"],
                    "bits per weight (layers)": round(8 * v["layer_bytes_per_value"], 2),
                    "nominal B/value": v["nominal_bytes_per_value"],
                    "measured B/value (quantized layers)": round(v["layer_bytes_per_value"], 4),
                    "ratio (layers)": round(v["layer_ratio"], 4),
                    "model bytes": v["model_bytes"],
                    "params × nominal": int(v["model_nominal_bytes"]),
                    "ratio (whole model)": round(v["model_ratio"], 4),
                    "RSS growth (MiB)": _mib(v["rss_resident_mean"], v["rss_resident_std"], v["rss_n"]),
                }
                for k, v in fmts.items()
            ],
        ),
    ]
    figures = (
        [_figure_models(ctx, counts, nrows), _figure_formats(ctx, fmts)]
        if fmts
        else [_figure_models(ctx, counts, nrows)]
    )
    gpt3 = next((c for c in counts if c["model"] == "gpt3-175b"), None)
    literature = [
        LiteratureCheck(
            "Devlin et al. 2019 (BERT), Table/§3: BERT-BASE has 110M parameters",
            "BertConfig() defaults are BERT-base; the exact BertModel count is compared with 110M.",
            _agree_count(counts, "bert-base"),
            _count_note(counts, "bert-base"),
        ),
        LiteratureCheck(
            "Brown et al. 2020 (GPT-3), Table 2.1: 175.0B parameters (96 layers, d_model 12288, 96 heads)",
            "That shape with GPT-2's block, vocabulary 50257 and context 2048, counted on the meta device.",
            _agree_count(counts, "gpt3-175b"),
            _count_note(counts, "gpt3-175b") if gpt3 else "not counted",
        ),
    ]
    method = (
        "Parameter counts come from transformers' config classes (BertConfig defaults = BERT-base, GPT2Config, "
        "LlamaConfig defaults = a 7B Llama, GPT-3 175B from its paper's shape), counted by formula and by "
        "building the model on PyTorch's meta device, so no weights are needed. Those counts × bytes per value "
        "are set against the notes' numbers. A small Llama model is then loaded in FP32, FP16, BF16 and real "
        "INT8/INT4 formats (torchao, bitsandbytes) and its bytes are read from its tensors' storages, with the "
        "resident-set growth of a fresh process as a second, process-level measurement."
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=ctx.seeds[:1],
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=skipped,
    )


def _mib(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "not measured"
    return f"{mean / calculator.MiB:.2f} ± {std / calculator.MiB:.2f} (n={n})"


def _agree_count(counts: list[dict[str, Any]], name: str) -> bool | None:
    row = next((c for c in counts if c["model"] == name), None)
    if row is None or row["quoted_rel_err"] is None:
        return None
    return abs(row["quoted_rel_err"]) <= 0.01


def _count_note(counts: list[dict[str, Any]], name: str) -> str:
    row = next((c for c in counts if c["model"] == name), None)
    if row is None:
        return "not counted in this run"
    return (
        f"exact {row['meta']:,} vs quoted {row['quoted']:,.0f}: "
        f"{100 * row['quoted_rel_err']:+.2f}% (agreement means within 1%)"
    )


def _figure_models(ctx: ConceptContext, counts: list[dict[str, Any]], nrows: list[dict[str, Any]]) -> Any:
    records = []
    for c in counts:
        for dtype in ("fp32", "fp16", "int8", "int4"):
            records.append(
                {
                    "model": c["model"],
                    "dtype": dtype,
                    "GB": calculator.model_bytes(c["meta"], dtype) / calculator.GB,
                }
            )
    frame = pd.DataFrame(records)
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    sns.barplot(frame, x="model", y="GB", hue="dtype", ax=ax)
    notes = pd.DataFrame(
        [
            {
                "model": r["model"],
                "dtype": r["dtype"],
                "GB": r["notes"] * (1e-3 if r["unit"] == "MB" else 1.0),
            }
            for r in nrows
        ]
    )
    if not notes.empty:
        order = list(frame["model"].unique())
        hues = ["fp32", "fp16", "int8", "int4"]
        width = 0.8 / len(hues)
        xs = [
            order.index(m) - 0.4 + width * (hues.index(d) + 0.5)
            for m, d in zip(notes["model"], notes["dtype"], strict=True)
        ]
        ax.scatter(xs, notes["GB"], color="black", marker="x", zorder=5, label="notes' number")
    ax.set_yscale("log")
    ax.set_xlabel("model (exact parameter count from its config)")
    ax.set_ylabel("model memory (GB = 10⁹ bytes, log scale)")
    ax.legend(title="dtype", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.subplots_adjust(right=0.8)
    return plotting.save(
        fig,
        ctx.outdir,
        "model_memory_by_dtype",
        "Model memory = parameters × bytes per value",
        "Exact parameter counts × 4/2/1/0.5 bytes for four real architectures (bars); black crosses "
        "are the notes' numbers for BERT-base and GPT-3.",
    )


def _figure_formats(ctx: ConceptContext, fmts: dict[str, dict[str, Any]]) -> Any:
    frame = pd.DataFrame(
        [
            {
                "format": k,
                "measured (quantized layers)": v["layer_bytes_per_value"],
                "nominal": v["nominal_bytes_per_value"],
                "whole model": v["model_bytes"] / v["params"],
            }
            for k, v in fmts.items()
        ]
    )
    long = frame.melt(
        id_vars="format",
        value_vars=["nominal", "measured (quantized layers)", "whole model"],
        var_name="quantity",
        value_name="bytes per value",
    )
    fig, ax = plt.subplots(figsize=(10, 4))
    sns.barplot(long, x="format", y="bytes per value", hue="quantity", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.subplots_adjust(right=0.72)

    ax.set_xlabel("storage format of the loaded model")
    ax.set_ylabel("bytes per parameter (B)")
    ax.tick_params(axis="x", rotation=20)
    return plotting.save(
        fig,
        ctx.outdir,
        "measured_bytes_per_value",
        "Measured bytes per value of a loaded model",
        "Nominal bytes per value (the notes' table), measured bytes per value of the (quantized) "
        "Linear layers including scales and zero points, and of the whole model, where the embedding "
        "and norms stay FP32.",
    )


PRIMARY = (
    "bytes of a loaded model per parameter vs the notes' 4/2/1/0.5 (FP32/16-bit/INT8/packed INT4), and the "
    "notes' BERT-base and GPT-3 numbers vs exact parameter counts × bytes"
)


def _unpacked_note(metrics: Mapping[str, Any]) -> str:
    unpacked = metrics.get("unpacked_layer_ratios") or {}
    bits = metrics.get("quant_bits_per_weight") or {}
    if not unpacked:
        return ""
    parts = [
        f"{k} stores one 4-bit value per byte ({bits.get(k, 8 * 0.5 * r):.2f} bits per weight, {r:.2f}× the "
        "nominal bytes): a property of that kernel's layout, not of INT4"
        for k, r in unpacked.items()
    ]
    return "; " + "; ".join(parts)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    tol_f, tol_q, tol_n = metrics["tolerance_float"], metrics["tolerance_quant"], metrics["tolerance_notes"]
    float_dev = metrics.get("float_max_abs_dev")
    notes_err = metrics.get("notes_max_abs_rel_err_decimal")
    kind = Kind.DEFINITION
    if float_dev is None or not metrics.get("counts_match_meta", False):
        return Verdict(
            Label.INCONCLUSIVE,
            "The float formats were not measured or the analytic parameter counts "
            "disagree with the meta-device models, so bytes per parameter cannot be checked.",
            kind=kind,
            primary=PRIMARY,
        )
    if float_dev > tol_f:
        return Verdict(
            Label.NOT_SUPPORTED,
            f"A loaded FP32/FP16/BF16 model's bytes differ from parameters × bytes "
            f"per value by {100 * float_dev:.2f}% (tolerance {100 * tol_f:g}%).",
            kind=kind,
            primary=PRIMARY,
        )
    if notes_err is not None and notes_err > 0.10:
        return Verdict(
            Label.NOT_SUPPORTED,
            f"The notes' memory numbers are off the exact counts × bytes by up to {100 * notes_err:.1f}%.",
            kind=kind,
            primary=PRIMARY,
        )
    quant = metrics.get("quant_layer_ratios", {})
    bits = metrics.get("quant_bits_per_weight") or {}
    bad = {k: r for k, r in quant.items() if abs(r - 1) > tol_q}
    extra = _unpacked_note(metrics)
    notes_part = (
        f"the notes' numbers are within {100 * notes_err:.1f}% of exact counts × bytes (decimal units)"
        if notes_err is not None
        else "the notes' examples were not counted"
    )
    if notes_err is not None and notes_err > tol_n:
        return Verdict(
            Label.PARTLY,
            f"Float formats match parameters × bytes to {100 * float_dev:.3f}%, but "
            f"{notes_part}, beyond the {100 * tol_n:g}% tolerance{extra}.",
            kind=kind,
            primary=PRIMARY,
        )
    if not quant:
        return Verdict(
            Label.PARTLY,
            f"Float formats match parameters × bytes to {100 * float_dev:.3f}% and "
            f"{notes_part}; no packed INT8/INT4 format could be measured here{extra}.",
            kind=kind,
            primary=PRIMARY,
            limited=("INT8/INT4 bytes (no packed quantized format ran here)",),
        )
    if bad:
        worst = max(bad, key=lambda k: abs(bad[k] - 1))
        return Verdict(
            Label.PARTLY,
            f"Float formats match parameters × bytes to {100 * float_dev:.3f}% and "
            f"{notes_part}, but quantized layers in {worst} take {bad[worst]:.2f}× the nominal bytes "
            f"(scales/zero points; tolerance {100 * tol_q:g}%){extra}.",
            kind=kind,
            primary=PRIMARY,
        )
    worst = max(quant, key=lambda k: abs(quant[k] - 1))
    packed = ", ".join(f"{k} {bits[k]:.2f} bits/weight" for k in quant if k in bits)
    return Verdict(
        Label.SUPPORTED,
        f"Float formats match parameters × bytes to {100 * float_dev:.3f}%, {notes_part}, "
        f"and every packed quantized format is within {100 * abs(quant[worst] - 1):.1f}% of its nominal bytes "
        f"({packed}; the excess is scales and block statistics){extra}.",
        kind=kind,
        primary=PRIMARY,
    )
