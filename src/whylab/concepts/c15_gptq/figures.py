"""C15's tables, figure and literature check, drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from whylab import plotting
from whylab.concepts.c15_gptq.verdict import primary_group, why_not
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg, empty
from whylab.quant import report as qr
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table

ORT_TEST = "tests/test_quant_int4.py::test_onnx_runtime_builtin_gptq_ignores_the_hessian"
CROSSCHECK_TESTS = "tests/test_gptq_crosscheck.py"
LLMC_TESTS = "tests/test_llmcompressor_check.py"


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    ppl: dict[str, dict[str, float]] = metrics["ppl_gptq_vs_rtn"]
    skipped = qr.skipped_lines(measured.whole["int4_rows"])
    if not ppl:
        skipped.append(Msg("C15.skipped.no_pair"))
    figures = [_plot_gptq_vs_rtn(ppl, ctx)] if ppl else []
    literature = [literature_check(ppl, metrics["gradients"]["backward_calls"], metrics["model_parameters"])]
    method = Msg("C15.method", parameters=metrics["model_parameters"], group=metrics["check_block_size"])
    tables = [
        Table.from_records("checks", Msg("C15.table.checks.caption"), checks_rows(metrics)),
        Table.from_records(
            "library_checks",
            Msg("C15.table.library_checks.caption"),
            library_rows(
                metrics["ort_builtin_gptq"], metrics.get("third_party"), metrics.get("llmcompressor")
            ),
        ),
    ]
    if ppl:
        tables.append(Table.from_records("gptq_vs_rtn", Msg("C15.table.gptq_vs_rtn.caption"), ppl_rows(ppl)))
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=skipped,
    )


def checks_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The probe's counts beside its positive control, and the Hessian checks."""
    h = metrics["hessian"]
    rows = [
        {
            "check": "backward()/grad() calls during GPTQ",
            "value": metrics["gradients"]["backward_calls"] + metrics["gradients"]["grad_calls"],
            "control (one gradient step)": metrics["probe_control"]["backward_calls"],
        },
        {
            "check": "tensors saved for backward during GPTQ",
            "value": metrics["gradients"]["saved_for_backward"],
            "control (one gradient step)": metrics["probe_control"]["saved_for_backward"],
        },
        {
            "check": "GPTQ with H = I reproduces RTN codes",
            "value": h["identity_equals_rtn"],
            "control (one gradient step)": None,
        },
        {
            "check": "codes GPTQ changes vs RTN (%)",
            "value": round(100 * h["codes_differ_from_rtn_frac"], 3),
            "control (one gradient step)": None,
        },
        {
            "check": "codes that differ between two calibration sets (%)",
            "value": round(100 * h["codes_differ_between_calibration_sets_frac"], 3),
            "control (one gradient step)": None,
        },
        {
            "check": "calibration output error, GPTQ / RTN",
            "value": None if h["error_ratio_gptq_vs_rtn"] is None else round(h["error_ratio_gptq_vs_rtn"], 4),
            "control (one gradient step)": None,
        },
    ]
    return rows


def llmcompressor_row(llmc: Mapping[str, Any], decides: bool) -> dict[str, Any]:
    """llmcompressor's GPTQ as its own environment ran it (whylab.thirdparty.llmcompressor_check)."""
    if llmc.get("ran"):
        what: Msg = Msg(
            "C15.table.library_checks.llmcompressor",
            role=Msg("C15.table.library_checks." + ("decides" if decides else "cross_checks")),
            python=llmc.get("python") or "?",
            backward=llmc["backward_calls"],
            grad=llmc["grad_calls"],
            control=llmc["probe_control"]["backward_calls"] + llmc["probe_control"]["grad_calls"],
            differ=100 * llmc["codes_differ_from_rtn_frac"],
            modules=llmc["quantized_modules"],
            layer_differ=100 * llmc["layer_codes_differ_from_rtn_frac"],
            layer=llmc.get("layer", "?"),
            ratio=llmc["error_ratio_vs_rtn"],
            fallback=", ".join(llmc.get("rtn_fallback_modules") or []) or "none",
        )
    else:
        what = Msg("C15.table.library_checks.not_run", why=why_not(llmc))
    scheme = llmc.get("scheme") or {}
    return {
        "implementation": Msg(
            "C15.table.library_checks.llmcompressor_name",
            version=(llmc.get("versions") or {}).get("llmcompressor") or "0.14.0.1",
            group=scheme.get("group_size", "?"),
            actorder=str(llmc.get("actorder", "?")).rpartition(".")[2].lower(),
        ),
        "what was checked": what,
        "max |Q(H) − Q(I)|": None,
        "max |Q − RTN|": None,
        "test": LLMC_TESTS,
    }


def library_rows(
    ort_check: Mapping[str, Any] | None,
    third: Mapping[str, Any] | None = None,
    llmc: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """What the libraries' own GPTQ does: llmcompressor's decides and torchao's cross-checks (torchao's
    decides where llmcompressor did not run; see verdict.decide); ONNX Runtime's: checked on one layer."""
    third, llmc = third or {}, llmc or {}
    llmc_decides = bool(llmc.get("ran"))
    if third.get("ran"):
        what: Msg = Msg(
            "C15.table.library_checks.torchao",
            role=Msg("C15.table.library_checks." + ("cross_checks" if llmc_decides else "decides")),
            where=Msg(f"C15.table.library_checks.where_{'cuda' if third.get('device') == 'cuda' else 'cpu'}"),
            layer=third.get("layer", "?"),
            backward=third["backward_calls"],
            grad=third["grad_calls"],
            differ=100 * third["codes_differ_from_rtn_frac"],
            agree=100 * third["codes_agree_with_ours_frac"],
            ratio=third["error_ratio_vs_rtn"],
        )
    else:
        what = Msg(
            "C15.table.library_checks.not_run",
            why=third.get("why_not") or Msg("C15.table.library_checks.unmeasured"),
        )
    rows = [
        llmcompressor_row(llmc, llmc_decides),
        {
            "implementation": "torchao 0.18 prototype GPTQ (INT8 per-row)",
            "what was checked": what,
            "max |Q(H) − Q(I)|": None,
            "max |Q − RTN|": None,
            "test": CROSSCHECK_TESTS,
        },
    ]
    if ort_check is not None:
        rows.append(
            {
                "implementation": "ONNX Runtime 1.32 GPTQWeightOnlyQuantConfig (Intel Neural Compressor code)",
                "what was checked": Msg(
                    "C15.table.library_checks.ort",
                    verdict=Msg(
                        "C15.table.library_checks.ort_"
                        + ("rtn" if ort_check["ignores_hessian"] else "hessian")
                    ),
                ),
                "max |Q(H) − Q(I)|": ort_check["max_diff_real_vs_identity_hessian"],
                "max |Q − RTN|": ort_check["max_diff_vs_rtn"],
                "test": ORT_TEST,
            }
        )
    return rows


def ppl_rows(ppl: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    rows = [
        {
            "group size": int(bs),
            "GPTQ perplexity": v["gptq_ppl"],
            "RTN perplexity": v["rtn_ppl"],
            "GPTQ change (%)": v["gptq"],
            "RTN change (%)": v["rtn"],
        }
        for bs, v in sorted(ppl.items())
    ]
    return rows


def literature_check(
    ppl: Mapping[str, Mapping[str, float]], backward_calls: int, parameters: int
) -> LiteratureCheck:
    """The GPTQ paper's description against what was computed here (group 128 decides when measured)."""
    decide = primary_group(ppl)
    items = [
        Msg("C15.literature.gptq.pair", group=bs, gptq=v["gptq"], rtn=v["rtn"])
        for bs, v in sorted(ppl.items(), key=lambda kv: int(kv[0]))
    ]
    return LiteratureCheck(
        "Frantar et al. 2023, GPTQ",
        Msg("C15.literature.gptq.finding"),
        None if decide is None else (ppl[decide]["gptq"] <= ppl[decide]["rtn"] and backward_calls == 0),
        Msg(
            "C15.literature.gptq.note",
            decides=empty() if decide is None else Msg("C15.literature.gptq.decides", group=decide),
            pairs=Msg("C15.literature.gptq.pairs", items=items)
            if items
            else Msg("C15.literature.gptq.no_pair"),
            backward=backward_calls,
            parameters=parameters,
        ),
    )


def _plot_gptq_vs_rtn(ppl: Mapping[str, Mapping[str, float]], ctx: ConceptContext) -> FigureRef:
    sizes = sorted(ppl, key=int)
    x = np.arange(len(sizes))
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.bar(x - 0.2, [ppl[s]["rtn"] for s in sizes], width=0.4, label="round-to-nearest")
    ax.bar(x + 0.2, [ppl[s]["gptq"] for s in sizes], width=0.4, label="GPTQ")
    ax.set_xticks(x, [f"group {s}" for s in sizes])
    ax.set_xlabel("INT4 group size (weights per scale)")
    ax.set_ylabel("perplexity change vs FP32 (%)")
    ax.legend()
    return plotting.save_figure(fig, ctx.outdir, "C15.figure.gptq_vs_rtn")
