"""The variants' rows summarized, and the tables and figures C12/C13/C15 share.

The claim packages decide claims; this module only summarizes the rows that
:mod:`whylab.quant.variant_records` read back (skipped ones included, with their reason) and
draws: size vs perplexity with its Pareto front, latency and speed-up per variant, perplexity vs
bits and vs INT4 group size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from whylab.messages import Msg, empty, recorded
from whylab.results import Table

MB = 1_000_000


def measured(rows: Iterable[Mapping[str, Any]], family: str | None = None) -> list[Mapping[str, Any]]:
    return [r for r in rows if not r.get("skipped") and (family is None or r["family"] == family)]


def skipped_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why each skipped variant was skipped (catalogue messages where the measures keep them)."""
    return [recorded(r, "skipped") for r in rows if r.get("skipped")]


def quantized_tensor_cut_pct(row: Mapping[str, Any]) -> float | None:
    """Size cut (%) on the quantized tensors alone: 1 - new bytes / replaced FP32 bytes."""
    qt = (row.get("diagnostics") or {}).get("quantized_tensors")
    if not qt or not qt.get("fp32_bytes"):
        return None
    return 100.0 * (1.0 - qt["quantized_bytes"] / qt["fp32_bytes"])


def speedup_quartiles(row: Mapping[str, Any]) -> tuple[float, float, float, int] | None:
    """25th, 50th, 75th percentile of the per-round speed-ups, and the number of rounds."""
    rounds = row.get("speedup_latency_rounds")
    if not rounds:
        return None
    q = np.percentile(np.asarray(rounds, dtype=float), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2]), len(rounds)


def clock_latency(row: Mapping[str, Any]) -> tuple[float, float, str]:
    """p50, p90 (ms) on the clock the speed-ups use, and that clock's name."""
    if row.get("speedup_clock") == "cpu" and row.get("latency_cpu_ms_p50") is not None:
        return float(row["latency_cpu_ms_p50"]), float(row["latency_cpu_ms_p90"]), "cpu"
    return float(row["latency_ms_p50"]), float(row["latency_ms_p90"]), "wall"


def summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a verdict needs from one measured variant (JSON-able)."""
    interval = row.get("ppl_change_interval") or {}
    quart = speedup_quartiles(row)
    size_ratio = row.get("size_ratio_vs_fp32")
    return {
        "variant": row["variant"],
        "family": row["family"],
        "bits": row["bits"],
        "runtime": row["runtime"],
        "algorithm": row["algorithm"],
        "block_size": row.get("block_size"),
        "provider": row.get("provider"),
        "valid_ppl": row["valid_ppl"],
        "ppl_change_pct": row["ppl_change_pct_vs_fp32"],
        "ppl_change_low_pct": interval.get("low_pct", row["ppl_change_pct_vs_fp32"]),
        "ppl_change_high_pct": interval.get("high_pct", row["ppl_change_pct_vs_fp32"]),
        "size_bytes": row["size_bytes"],
        "size_cut_pct": None if size_ratio is None else 100.0 * (1.0 - size_ratio),
        "memory_cut_pct": None
        if row.get("memory_ratio_vs_fp32") is None
        else 100.0 * (1.0 - row["memory_ratio_vs_fp32"]),
        "quantized_tensor_cut_pct": quantized_tensor_cut_pct(row),
        "latency_ms_p50": row["latency_ms_p50"],
        "latency_ms_p90": row["latency_ms_p90"],
        "speedup_clock": row.get("speedup_clock", "wall"),
        "speedup_latency_p50": row.get("speedup_latency_p50"),
        "speedup_q25": quart[0] if quart else None,
        "speedup_median": quart[1] if quart else None,
        "speedup_q75": quart[2] if quart else None,
        "speedup_n": quart[3] if quart else 0,
        "speedup_throughput": row.get("speedup_throughput"),
    }


def _fmt(value: Any, digits: int = 3) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    return value


def variants_table(
    rows: Sequence[Mapping[str, Any]], name: str = "variants", caption: str | None = None
) -> Table:
    records = []
    for r in rows:
        if r.get("skipped"):
            records.append(
                {
                    "variant": r["variant"],
                    "bits": r["bits"],
                    "runtime": r["runtime"],
                    "provider": None,
                    "size (MB)": None,
                    "size cut (%)": None,
                    "quantized-tensor cut (%)": None,
                    "perplexity": None,
                    "ppl change vs FP32 (%)": None,
                    "ppl change 95% CI (%)": None,
                    "latency p50 (ms)": None,
                    "latency p90 (ms)": None,
                    "thread-CPU latency p50 (ms)": None,
                    "speed-up (×)": None,
                    "throughput (tokens/s)": None,
                    "quantized ops": None,
                    "skipped": recorded(r, "skipped"),
                }
            )
            continue
        s = summary(r)
        ops = r.get("quantized_op_count") or {}
        records.append(
            {
                "variant": r["variant"],
                "bits": r["bits"],
                "runtime": r["runtime"],
                "provider": r.get("provider"),
                "size (MB)": _fmt(r["size_bytes"] / MB, 4),
                "size cut (%)": _fmt(s["size_cut_pct"]),
                "quantized-tensor cut (%)": _fmt(s["quantized_tensor_cut_pct"]),
                "perplexity": _fmt(r["valid_ppl"], 5),
                "ppl change vs FP32 (%)": _fmt(s["ppl_change_pct"]),
                "ppl change 95% CI (%)": f"[{s['ppl_change_low_pct']:.3g}, {s['ppl_change_high_pct']:.3g}]",
                "latency p50 (ms)": _fmt(r["latency_ms_p50"]),
                "latency p90 (ms)": _fmt(r["latency_ms_p90"]),
                "thread-CPU latency p50 (ms)": _fmt(r.get("latency_cpu_ms_p50")),
                "speed-up (×)": _fmt(s["speedup_median"] or s["speedup_latency_p50"]),
                "throughput (tokens/s)": _fmt(r["throughput_tokens_per_s"], 4),
                "quantized ops": ", ".join(f"{k}={v}" for k, v in sorted(ops.items())) or None,
                "skipped": None,
            }
        )
    return Table.from_records(name, caption or Msg("quant.table.variants.caption"), records)


REAL_MODELS = {"bert": "BERT-base", "llama": "Llama-2-7B-width layer"}


def model_label(model: str, rec: Mapping[str, Any]) -> Msg:
    """What was measured, named from its config: 'BERT-base' only at BERT-base's shape."""
    cfg = rec.get("config") or {}
    hidden, layers = cfg.get("hidden_size"), cfg.get("num_layers")
    params = (rec.get("parameters") or {}).get("total")
    size = Msg("quant.model.size", millions=params / 1e6) if params else empty()
    count = "one" if layers == 1 else "many"
    if model == "bert":
        if (hidden, layers) == (768, 12):
            return Msg("quant.model.bert_base", size=size)
        return Msg(f"quant.model.bert_{count}", layers=layers, hidden=hidden, size=size)
    if (hidden, cfg.get("intermediate_size")) == (4096, 11008):
        return Msg(f"quant.model.llama_7b_{count}", layers=layers, size=size)
    return Msg(f"quant.model.llama_{count}", layers=layers, hidden=hidden, size=size)


REAL_MODEL_NAMES = {model: Msg(f"quant.model.name.{model}") for model in REAL_MODELS}


def tick_label(model: str, rec: Mapping[str, Any]) -> str:
    """A short multi-line axis label for the measured shape (lines of at most ~20 characters)."""
    cfg = rec.get("config") or {}
    layers, hidden = cfg.get("layers", cfg.get("num_layers")), cfg.get("hidden_size")
    params = (rec.get("parameters") or {}).get("total")
    name = model_label(model, rec).split(" (")[0].split(",")[0]
    lines = [name.replace(" decoder", ""), f"{layers} layer{'s' if layers != 1 else ''} × {hidden} wide"]
    if params:
        lines.append(f"{params / 1e6:.3g}M parameters")
    return "\n".join(lines)


def kernel_text(fmt_record: Mapping[str, Any]) -> str:
    """The kernel path of one format of the real-scale record, in words (real_scale.kernel_path)."""
    return recorded(fmt_record, "kernel_path")


def fast_path_text(fast: Mapping[str, Any]) -> str:
    """Why a fast path exists or not, from the real-scale record (real_scale.fast_path)."""
    return recorded(fast, "why")


def fast_path_cell(fast: Mapping[str, Any]) -> Msg:
    """Whether a fast path exists and why, as the real-scale table's cell ("yes: the CPU has ...")."""
    return Msg(
        "quant.table.real_scale.fast_path",
        exists=Msg("quant.yes" if fast["exists"] else "quant.no"),
        why=fast_path_text(fast),
    )


def mb(n: float) -> str:
    return f"{n / MB:.3g} MB"


def real_scale_table(real: Mapping[str, Any]) -> Table:
    records = []
    for model in REAL_MODELS:
        rec = real.get(model)
        if not rec:
            continue
        label = model_label(model, rec)  # a catalogue message: the Korean page names it in Korean
        regime = "prefill" if model == "bert" else "decode"
        for fmt, f in rec["formats"].items():
            s = rec[regime][fmt]
            fast = rec["fast_path"].get(fmt)
            records.append(
                {
                    "model": label,
                    "parameters (M)": round(rec["parameters"]["total"] / 1e6, 1),
                    "format": fmt,
                    "size (MB)": _fmt(f["size_bytes"] / MB, 4),
                    "size cut (%)": _fmt(f["size_cut_pct"]),
                    "workload": f"batch-1 {regime}",
                    "tokens/s": _fmt(s["tokens_per_s"], 4),
                    "speed-up (median ×)": _fmt(s["speedup_median"]),
                    "speed-up quartiles": f"{s['speedup_q25']:.2f}–{s['speedup_q75']:.2f}",
                    "kernel path": kernel_text(f),
                    "fast path for this regime": None if fast is None else fast_path_cell(fast),
                }
            )
    cpu = real.get("cpu_features") or {}
    flags: list[str] = [k for k, v in cpu.items() if v] or [Msg("quant.unknown")]
    return Table.from_records(
        "real_scale",
        Msg("quant.table.real_scale.caption", flags=flags, clock=real.get("clock", "wall")),
        records,
    )


MIN_SHARE_PCT = 1.0  # op types under this share of kernel time are one "other" row


def kernel_profile_table(real: Mapping[str, Any]) -> Table:
    """What ONNX Runtime ran, from its profiler: per model and format, each op type's share of
    kernel time, time and calls per inference (``quant_real_scale``'s ``kernel_profile``)."""
    records = []
    for model in REAL_MODELS:
        rec = real.get(model)
        if not rec:
            continue
        label = str(model_label(model, rec))
        regime = "prefill" if model == "bert" else "decode step"
        for fmt, f in rec["formats"].items():
            prof = f.get("kernel_profile") or {}
            ops = list(prof.get("ops") or [])
            shown = [o for o in ops if float(o["share_pct"]) >= MIN_SHARE_PCT] or ops[:1]
            rest = [o for o in ops if o not in shown]
            if rest:  # the op types under 1% of kernel time, as one row
                shown.append(
                    {
                        "op": f"other ({len(rest)} op types)",
                        "provider": ", ".join(sorted({o["provider"] for o in rest})),
                        **{
                            k: sum(float(o[k]) for o in rest)
                            for k in ("share_pct", "us_per_run", "calls_per_run")
                        },
                    }
                )
            for o in shown:
                records.append(
                    {
                        "model": label,
                        "format": fmt,
                        "inference": f"batch-1 {regime}",
                        "op type (as run)": o["op"],
                        "provider": o["provider"],
                        "share of kernel time (%)": _fmt(o["share_pct"]),
                        "µs per inference": _fmt(o["us_per_run"]),
                        "calls per inference": _fmt(o["calls_per_run"]),
                        "inferences profiled": prof.get("runs"),
                    }
                )
    return Table.from_records("kernel_profile", Msg("quant.table.kernel_profile.caption"), records)
