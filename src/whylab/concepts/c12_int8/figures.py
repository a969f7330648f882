"""C12's figures, tables and literature checks, drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.c12_int8.verdict import CLAIMED, TOLERANCE, part_results
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.quant import figures as qf
from whylab.quant import report as qr
from whylab.quant.claim_parts import model_words, primary_name, real_record, variant_named
from whylab.quant.part_verdicts import accuracy_table, parts_table
from whylab.results import Evidence, LiteratureCheck

# LLM.int8() (Dettmers et al. 2022): INT8 keeps perplexity within 1% of FP32; agreement is judged
# by the one CI rule of C12/C13 (the 95% t interval over blocks lies below it)
LLM_INT8_MAX_LOSS_PCT = 1.0


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    rows: list[dict[str, Any]] = measured.whole["rows"]
    results = part_results(metrics)
    speedup = (float(CLAIMED["speedup"][0]), float(CLAIMED["speedup"][1]))
    loss_band = (float(CLAIMED["loss_pct"][0]), float(CLAIMED["loss_pct"][1]))
    figures = [
        qf.plot_loss_change(
            metrics["variants"], ctx.outdir, "int8", loss_band, primary_name(metrics, "int8")
        ),
    ]
    if metrics["real_scale"]:
        figures.append(qf.plot_real_scale(metrics["real_scale"], ctx.outdir, claimed_speedup=speedup))
    figures.append(
        qf.plot_latency(
            rows,
            ctx.outdir,
            "latency",
            Msg("C12.figure.latency.title"),
            Msg("C12.figure.latency.caption", low=speedup[0], high=speedup[1]),
            claimed=speedup,
        )
    )
    tables = [qr.variants_table(rows), parts_table(metrics, results), accuracy_table(metrics, "int8")]
    if metrics["real_scale"]:
        tables.append(qr.real_scale_table(metrics["real_scale"]))
        tables.append(qr.kernel_profile_table(metrics["real_scale"]))
    return Evidence(
        method=Msg("C12.method"),
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=tables,
        figures=figures,
        literature=literature(metrics),
        skipped=metrics["skipped"],
    )


def literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    primary = variant_named(metrics, primary_name(metrics, "int8"))
    params = (metrics.get("model") or {}).get("parameters")
    return [
        LiteratureCheck(
            "Dettmers et al. 2022, LLM.int8()",
            Msg("C12.literature.llm_int8.finding"),
            None if primary is None else primary["ppl_change_high_pct"] < LLM_INT8_MAX_LOSS_PCT,
            Msg("C12.literature.llm_int8.none")
            if primary is None
            else Msg(
                "C12.literature.llm_int8.note",
                variant=primary["variant"],
                change=primary["ppl_change_pct"],
                high=primary["ppl_change_high_pct"],
                model=model_words(metrics) if params else Msg("quant.lm.small"),
            ),
        ),
        LiteratureCheck(
            "Zafrir et al. 2019, Q8BERT",
            Msg("C12.literature.q8bert.finding"),
            bert_size_agrees(metrics),
            bert_note(metrics),
        ),
    ]


def bert_size_agrees(metrics: Mapping[str, Any]) -> bool | None:
    """Q8BERT's 4× smaller model: BERT-base's whole-file cut within the size tolerance of the claim."""
    bert = real_record(metrics, "bert")
    if bert is None:
        return None
    cut = bert["formats"]["int8"]["size_cut_pct"]
    return bool(abs(cut - CLAIMED["size_cut_pct"]) <= TOLERANCE["size_cut_pct"])


def bert_note(metrics: Mapping[str, Any]) -> Msg:
    bert = real_record(metrics, "bert")
    if bert is None:
        return Msg("C12.literature.q8bert.none")
    p, fmt = bert["prefill"], bert["formats"]["int8"]
    fast = bert["fast_path"]["int8"]
    return Msg(
        "C12.literature.q8bert.note",
        model=qr.model_label("bert", bert),
        cut=fmt["size_cut_pct"],
        tokens=bert["config"]["prefill_tokens"],
        speedup=p["int8"]["speedup_median"],
        n=p["int8"]["speedup_n"],
        kernel=qr.kernel_text(fmt),
        fast=Msg("quant.yes" if fast["exists"] else "quant.no"),
        why=qr.fast_path_text(fast),
    )
