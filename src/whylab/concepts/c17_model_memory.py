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
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

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
                Msg(
                    "C17.skipped.format_failed",
                    name=name,
                    library=fmt.library,
                    error=f"{type(exc).__name__}: {exc}",
                )
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
        skipped.append(Msg("C17.skipped.missing_examples", missing=missing))
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

    tables = _tables(counts, nrows, fmts, int(s["repeats"]))
    figures = (
        [_figure_models(ctx, counts, nrows), _figure_formats(ctx, fmts)]
        if fmts
        else [_figure_models(ctx, counts, nrows)]
    )
    literature = _literature(counts)
    method = Msg("C17.method")
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=ctx.seeds[:1],
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=skipped,
    )


def _tables(
    counts: list[dict[str, Any]], nrows: list[dict[str, Any]], fmts: dict[str, dict[str, Any]], repeats: int
) -> list[Table]:
    return [
        Table.from_records(
            "parameter_counts",
            Msg("C17.table.parameter_counts.caption"),
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
            Msg("C17.table.notes_vs_exact.caption"),
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
            Msg("C17.table.measured_formats.caption", repeats=repeats),
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


def _literature(counts: list[dict[str, Any]]) -> list[LiteratureCheck]:
    gpt3 = next((c for c in counts if c["model"] == "gpt3-175b"), None)
    return [
        LiteratureCheck(
            "Devlin et al. 2019 (BERT), §3",
            Msg("C17.literature.bert.finding"),
            _agree_count(counts, "bert-base"),
            _count_note(counts, "bert-base"),
        ),
        LiteratureCheck(
            "Brown et al. 2020 (GPT-3), Table 2.1",
            Msg("C17.literature.gpt3.finding"),
            _agree_count(counts, "gpt3-175b"),
            _count_note(counts, "gpt3-175b") if gpt3 else Msg("C17.literature.count.not_counted"),
        ),
    ]


def _mib(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "not measured"
    return f"{mean / calculator.MiB:.2f} ± {std / calculator.MiB:.2f} (n={n})"


def _agree_count(counts: list[dict[str, Any]], name: str) -> bool | None:
    row = next((c for c in counts if c["model"] == name), None)
    if row is None or row["quoted_rel_err"] is None:
        return None
    return abs(row["quoted_rel_err"]) <= 0.01


def _count_note(counts: list[dict[str, Any]], name: str) -> Msg:
    row = next((c for c in counts if c["model"] == name), None)
    if row is None:
        return Msg("C17.literature.count.not_counted_run")
    return Msg(
        "C17.literature.count.note", exact=row["meta"], quoted=row["quoted"], rel=row["quoted_rel_err"]
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
    return plotting.save_figure(fig, ctx.outdir, "C17.figure.model_memory_by_dtype")


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
    return plotting.save_figure(fig, ctx.outdir, "C17.figure.measured_bytes_per_value")


def _unpacked_note(metrics: Mapping[str, Any]) -> Msg:
    unpacked = metrics.get("unpacked_layer_ratios") or {}
    bits = metrics.get("quant_bits_per_weight") or {}
    if not unpacked:
        return empty()
    parts = [
        Msg("C17.reason.unpacked_part", name=k, bits=bits.get(k, 8 * 0.5 * r), ratio=r)
        for k, r in unpacked.items()
    ]
    return Msg("C17.reason.unpacked", parts=parts)


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    tol_f, tol_q, tol_n = metrics["tolerance_float"], metrics["tolerance_quant"], metrics["tolerance_notes"]
    float_dev = metrics.get("float_max_abs_dev")
    notes_err = metrics.get("notes_max_abs_rel_err_decimal")
    out = VerdictOf(Kind.DEFINITION, primary=Msg("C17.primary"))
    if float_dev is None or not metrics.get("counts_match_meta", False):
        return out.branch(Label.INCONCLUSIVE, "C17.verdict.unmeasured")
    if float_dev > tol_f:
        return out.branch(
            Label.NOT_SUPPORTED, "C17.verdict.float_bytes_differ", dev=float_dev, tol_pct=100 * tol_f
        )
    if notes_err is not None and notes_err > 0.10:
        return out.branch(Label.NOT_SUPPORTED, "C17.verdict.notes_numbers_off", notes_err=notes_err)
    quant = metrics.get("quant_layer_ratios", {})
    bits = metrics.get("quant_bits_per_weight") or {}
    bad = {k: r for k, r in quant.items() if abs(r - 1) > tol_q}
    extra = _unpacked_note(metrics)
    notes_part = (
        Msg("C17.reason.notes_within", notes_err=notes_err)
        if notes_err is not None
        else Msg("C17.reason.notes_not_counted")
    )
    common = {"float_dev": float_dev, "notes_part": notes_part, "extra": extra}
    if notes_err is not None and notes_err > tol_n:
        return out.branch(
            Label.PARTLY, "C17.verdict.notes_drift", **common, notes_err=notes_err, tol_pct=100 * tol_n
        )
    if not quant:
        out.limited.append(Msg("C17.limited.no_quantized"))
        return out.branch(Label.PARTLY, "C17.verdict.no_quantized", **common)
    if bad:
        worst = max(bad, key=lambda k: abs(bad[k] - 1))
        return out.branch(
            Label.PARTLY,
            "C17.verdict.quant_overhead",
            **common,
            worst=worst,
            ratio=bad[worst],
            tol_pct=100 * tol_q,
        )
    worst = max(quant, key=lambda k: abs(quant[k] - 1))
    packed = [Msg("C17.reason.packed_part", name=k, bits=bits[k]) for k in quant if k in bits]
    return out.branch(
        Label.SUPPORTED,
        "C17.verdict.supported",
        **common,
        quant_dev=abs(quant[worst] - 1),
        packed=packed,
    )
