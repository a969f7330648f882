"""C14: "QLoRA is 4-bit quantization plus LoRA fine-tuning."

The claim is a definition, so the experiment checks the definition on a real run and
then what it buys: the trained LM (pretrained on ``lm.train_languages``) is fine-tuned
on a language it never saw (ko by default) three ways, with the same seeds, batches,
steps and schedule: (a) QLoRA — NF4 4-bit frozen base (bitsandbytes, double
quantization) + LoRA adapters (peft); (b) the same LoRA adapters on the FP32 base;
(c) full fine-tuning. Measured: how many linear layers really are 4-bit and how many
bytes they take, which parameters train (and that the 4-bit base stays bit-identical),
peak memory, wall time, and validation perplexity before/after on the new language
(and on the pretraining language, to see what is forgotten).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.messages import Msg, language_name
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C14"

DEFAULTS: dict[str, Any] = {
    "finetune_language": "ko",
    "variants": ["qlora", "lora", "full"],
    "block_size": 128,
    "train_blocks": None,
    "valid_blocks": 32,
    "steps": 30,
    "batch_size": 4,
    "warmup_steps": 3,
    "lr_adapters": 3e-3,
    "lr_full": 1e-3,
    "min_lr_ratio": 0.1,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "double_quant": True,
    "eval_batch_size": 8,
    "close_tolerance_pct": 5.0,
}
MIB = 2**20
FORMAT = (
    "bitsandbytes NF4 as stored: two 4-bit codes packed in each byte (0.5 byte per weight), plus one "
    "absmax per block of 64 weights (an 8-bit code with double quantization, and one float per 256 "
    "blocks) and the fixed 16-level NF4 table"
)
LABELS = {"qlora": "QLoRA (NF4 base + LoRA)", "lora": "LoRA on FP32 base", "full": "full fine-tuning"}


def _cfg(settings: Mapping[str, Any]) -> dict[str, Any]:
    cfg = {**DEFAULTS, **{k: settings[k] for k in DEFAULTS if k in settings}}
    bad = [v for v in cfg["variants"] if v not in LABELS]
    if bad:
        raise InputError(f"quantization.qlora.variants: unknown {bad} (allowed: {', '.join(LABELS)})")
    return cfg


def _blocks(ctx: ConceptContext, cfg: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """Training and validation blocks of the fine-tuning language, and validation blocks of the others."""
    from whylab.lm.data import corpus_files, load_tokenizer, token_blocks

    lang = str(cfg["finetune_language"])
    retain = [x for x in ctx.settings.get("languages", ["en"]) if str(x) != lang]
    model_dir, corpus = ctx.inputs["model"], ctx.inputs["corpus"]
    tok = load_tokenizer(model_dir)
    block = int(cfg["block_size"])
    train_blocks = token_blocks(corpus_files(corpus, [lang], "train"), tok, block, cfg["train_blocks"])
    valid_blocks = token_blocks(corpus_files(corpus, [lang], "valid"), tok, block, int(cfg["valid_blocks"]))
    retain_blocks = (
        token_blocks(corpus_files(corpus, retain, "valid"), tok, block, int(cfg["valid_blocks"]))
        if retain
        else None
    )
    return train_blocks, valid_blocks, retain_blocks


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Every fine-tuning variant with this seed (same initial adapters' stream, batches and schedule)."""
    from dataclasses import asdict

    from whylab.quant import qlora as ql

    cfg = _cfg(ctx.settings)
    ft = ql.FinetuneConfig.from_settings(cfg)
    train_blocks, valid_blocks, retain_blocks = _blocks(ctx, cfg)
    skipped: list[dict[str, Any]] = []  # messages as key and parameters (the record goes through JSON)
    variants = list(cfg["variants"])
    if "qlora" in variants:
        ok, why = ql.bnb_available()
        if not ok:
            variants.remove("qlora")
            error = why.removeprefix("bitsandbytes cannot be imported: ")
            skipped.append(Msg("C14.skipped.bnb_import", error=error).to_dict())
    results: list[dict[str, Any]] = []
    for variant in variants:
        try:
            result = ql.finetune(
                variant, ctx.inputs["model"], train_blocks, valid_blocks, ft, seed, ctx.device, retain_blocks
            )
        except (RuntimeError, AssertionError, NotImplementedError) as exc:
            if variant != "qlora":
                raise
            skipped.append(
                Msg(
                    "C14.skipped.bnb_failed",
                    device=ctx.device,
                    error_type=type(exc).__name__,
                    error=str(exc).splitlines()[0] if str(exc) else "",
                ).to_dict()
            )
            continue
        results.append(asdict(result))
    return {
        "seed": seed,
        "results": results,
        "skipped": skipped,
        "train_blocks": int(train_blocks.shape[0]),
        "valid_blocks": int(valid_blocks.shape[0]),
    }


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab.plotting import save
    from whylab.quant import qlora as ql

    cfg = _cfg(ctx.settings)
    ft = ql.FinetuneConfig.from_settings(cfg)
    lang = str(cfg["finetune_language"])
    pretrain_langs = [str(x) for x in ctx.settings.get("languages", ["en"])]
    retain = [x for x in pretrain_langs if x != lang]
    block = int(cfg["block_size"])
    model_dir = ctx.inputs["model"]
    skipped: list[str] = []
    if lang in pretrain_langs:
        skipped.append(Msg("C14.skipped.not_new_language", lang=language_name(lang)))
    for rec in per_seed:
        lines = [_skip_text(x) for x in rec["skipped"]]
        skipped += [line for line in lines if line not in skipped]
    results = [ql.FinetuneResult(**r) for rec in per_seed for r in rec["results"]]
    # a variant counts only if it ran with every seed (the arms pair by seed)
    variants = [
        v for v in cfg["variants"] if all(any(r["variant"] == v for r in rec["results"]) for rec in per_seed)
    ]
    results = [r for r in results if r.variant in variants]
    n_train, n_valid = int(per_seed[0]["train_blocks"]), int(per_seed[0]["valid_blocks"])
    summary = ql.summarize(results)
    peak_known = all(b is not None for v in summary.values() for b in v["peak_bytes"])
    if not peak_known:
        skipped.append(Msg("C14.skipped.peak_memory"))

    from whylab.lm.pretrained import folder_parameter_count

    metrics: dict[str, Any] = {
        "model_parameters": folder_parameter_count(model_dir),
        "int4_format": FORMAT,
        "finetune_language": lang,
        "pretrain_languages": pretrain_langs,
        "retention_languages": retain,
        "variants_run": variants,
        "qlora_ran": "qlora" in summary,
        "close_tolerance_pct": float(cfg["close_tolerance_pct"]),
        "memory_method": ql.memory_method(ctx.device),
        "steps": ft.steps,
        "batch_size": ft.batch_size,
        "block_size": block,
        "train_blocks": n_train,
        "valid_blocks": n_valid,
        "lr": {"qlora": ft.lr_adapters, "lora": ft.lr_adapters, "full": ft.lr_full},
        "lora_r": ft.lora_r,
        "lora_alpha": ft.lora_alpha,
        "variants": {},
    }
    for v, s in summary.items():
        metrics["variants"][v] = {
            "trainable_params": s["trainable_params"],
            "total_params": s["total_params"],
            "trainable_share_pct": 100 * s["trainable_params"] / s["total_params"],
            "base_storage_bytes": s["base_storage_bytes"],
            "linear_storage_bytes": s["linear_storage_bytes"],
            "linear_bits_per_weight": s["linear_bits_per_weight"],
            "linear_code_bytes_per_weight": s["linear_code_bytes_per_weight"],
            "linear_table_bytes": s["linear_table_bytes"],
            "linear4bit_count": s["linear4bit_count"],
            "decoder_linear_count": s["decoder_linear_count"],
            "nf4": s["nf4"],
            "only_adapters_trainable": s["only_adapters_trainable"],
            "base_unchanged": s["base_unchanged"],
            "ppl_before": s["ppl_before"],
            "ppl_after": s["ppl_after"],
            "retained_ppl_after": s["retained_ppl_after"] if retain else None,
            "peak_bytes": s["peak_bytes"] if peak_known else None,
            "train_seconds": s["train_seconds"],
            "final_train_loss": s["final_loss"],
        }
    if "qlora" in summary and "lora" in summary:
        q, lo = Spread.of(summary["qlora"]["ppl_after"]).mean, Spread.of(summary["lora"]["ppl_after"]).mean
        metrics["qlora_vs_lora_ppl_gap_pct"] = 100 * (q - lo) / lo
    if "qlora" in summary and "full" in summary:
        q, fu = Spread.of(summary["qlora"]["ppl_after"]).mean, Spread.of(summary["full"]["ppl_after"]).mean
        metrics["qlora_vs_full_ppl_gap_pct"] = 100 * (q - fu) / fu

    figures = [
        _figure_resources(
            ctx.outdir, metrics, sns, plt, save, memory_method_text(ctx.device, metrics["memory_method"])
        ),
        _figure_quality(ctx.outdir, metrics, results, sns, plt, save),
    ]
    return Evidence(
        method=Msg(
            "C14.method",
            pretrain_langs=[language_name(x) for x in pretrain_langs],
            lang=language_name(lang),
            n_train=n_train,
            block=block,
            steps=ft.steps,
            batch_size=ft.batch_size,
            lora_r=ft.lora_r,
            memory_method=memory_method_text(ctx.device, metrics["memory_method"]),
            n_valid=n_valid,
        ),
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=[_table(metrics)],
        figures=figures,
        literature=_literature(metrics),
        skipped=skipped,
    )


def _skip_text(line: Any) -> str:
    """A per-seed skipped line: a message kept as key and parameters, or a plain line (older records)."""
    return Msg.from_dict(line) if isinstance(line, Mapping) else str(line)


def memory_method_text(device: str, method: str) -> str:
    """How peak memory was measured, as a message (the PeakMemory text in either language) or, for a
    method this module does not know, the text as it is."""
    key = "C14.memory_method." + ("cuda" if device.startswith("cuda") else "cpu")
    text = Msg(key)
    return text if text == method else method


def _mean(values: Sequence[float | None]) -> float:
    vals = [float(v) for v in values if v is not None]
    return Spread.of(vals).mean if vals else math.nan


def _sd(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return None
    return Spread.of(vals).std


def _table(m: Mapping[str, Any]) -> Table:
    rows = []
    for v, s in m["variants"].items():
        rows.append(
            {
                "variant": LABELS[v],
                "trainable params": s["trainable_params"],
                "trainable %": round(s["trainable_share_pct"], 2),
                "4-bit linear layers": f"{s['linear4bit_count']}/{s['decoder_linear_count']}",
                "linear bits/weight": round(s["linear_bits_per_weight"], 3),
                "code bytes/weight": round(s["linear_code_bytes_per_weight"], 3),
                "base storage (MiB)": round(s["base_storage_bytes"] / MIB, 3),
                "peak extra in training (MiB)": (
                    None if s["peak_bytes"] is None else round(_mean(s["peak_bytes"]) / MIB, 2)
                ),
                "train time (s)": round(_mean(s["train_seconds"]), 2),
                f"{m['finetune_language']} ppl before": round(s["ppl_before"], 2),
                f"{m['finetune_language']} ppl after": round(_mean(s["ppl_after"]), 2),
                "ppl after sd": None if (sd := _sd(s["ppl_after"])) is None else round(sd, 2),
                "retained-language ppl after": (
                    None if s["retained_ppl_after"] is None else round(_mean(s["retained_ppl_after"]), 2)
                ),
            }
        )
    return Table.from_records("finetune", Msg("C14.table.finetune.caption"), rows)


def _figure_resources(
    outdir: Path, m: Mapping[str, Any], sns: Any, plt: Any, save: Any, memory_method: str = ""
) -> Any:
    memory_method = memory_method or str(m["memory_method"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    names = [LABELS[v] for v in m["variants"]]
    vs = list(m["variants"].values())
    sns.barplot(x=names, y=[s["trainable_params"] for s in vs], ax=axes[0], color=sns.color_palette()[0])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("trainable parameters (count, log scale)")
    axes[0].set_title("what trains")
    storage = pd.DataFrame(
        [
            {"variant": LABELS[v], "part": "decoder linear weights", "MiB": s["linear_storage_bytes"] / MIB}
            for v, s in m["variants"].items()
        ]
        + [
            {
                "variant": LABELS[v],
                "part": "embeddings, LM head, norms",
                "MiB": (s["base_storage_bytes"] - s["linear_storage_bytes"]) / MIB,
            }
            for v, s in m["variants"].items()
        ]
    )
    sns.barplot(data=storage, x="variant", y="MiB", hue="part", ax=axes[1])
    axes[1].set_ylim(0, 1.6 * float(storage["MiB"].max()))  # headroom: the legend sits above the bars
    axes[1].legend(fontsize=8, loc="upper left", title=None)
    axes[1].set_ylabel("base weight storage (MiB)")
    axes[1].set_title("what the base weighs")
    peak = pd.DataFrame(
        [
            {"variant": LABELS[v], "MiB": b / MIB}
            for v, s in m["variants"].items()
            for b in (s["peak_bytes"] or [])
        ]
    )
    if not peak.empty:
        sns.barplot(data=peak, x="variant", y="MiB", errorbar="sd", ax=axes[2], color=sns.color_palette()[2])
    axes[2].set_ylabel("peak extra memory in training (MiB)")
    axes[2].set_title("peak memory above the loaded model")
    for ax in axes:
        ax.set_xlabel("fine-tuning variant")
        ax.tick_params(axis="x", labelsize=8, rotation=12)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(
        fig,
        outdir,
        "resources",
        Msg("C14.figure.resources.title"),
        Msg("C14.figure.resources.caption", memory_method=memory_method),
    )


def _figure_quality(
    outdir: Path, m: Mapping[str, Any], results: Sequence[Any], sns: Any, plt: Any, save: Any
) -> Any:
    lang = m["finetune_language"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    rows = []
    for v, s in m["variants"].items():
        rows.append({"variant": LABELS[v], "stage": "before fine-tuning", "ppl": s["ppl_before"]})
        rows += [{"variant": LABELS[v], "stage": "after fine-tuning", "ppl": p} for p in s["ppl_after"]]
    sns.barplot(data=pd.DataFrame(rows), x="variant", y="ppl", hue="stage", errorbar="sd", ax=axes[0])
    axes[0].set_yscale("log")
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(low, high * 30)  # headroom on the log axis: the legend sits above the bars
    axes[0].legend(title=None, fontsize=8, loc="upper center", ncol=2)
    axes[0].set_xlabel("fine-tuning variant")
    axes[0].set_ylabel(f"{lang} validation perplexity (per token, log scale)")
    axes[0].tick_params(axis="x", labelsize=8, rotation=12)
    curves = pd.DataFrame(
        [
            {"variant": LABELS[r.variant], "step": i + 1, "loss": loss}
            for r in results
            for i, loss in enumerate(r.losses)
        ]
    )
    sns.lineplot(data=curves, x="step", y="loss", hue="variant", errorbar="sd", ax=axes[1])
    axes[1].set_xlabel("optimizer step")
    axes[1].set_ylabel(f"{lang} training loss (nats/token)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(
        fig,
        outdir,
        "quality",
        Msg("C14.figure.quality.title", lang=language_name(lang)),
        Msg("C14.figure.quality.caption", lang=language_name(lang)),
    )


def _literature(m: Mapping[str, Any]) -> list[LiteratureCheck]:
    tol = float(m["close_tolerance_pct"])
    lang = m["finetune_language"]
    checks = []
    gap = m.get("qlora_vs_lora_ppl_gap_pct")
    checks.append(
        LiteratureCheck(
            "Dettmers et al. 2023, QLoRA (NeurIPS)",
            Msg("C14.literature.vs_lora.finding"),
            None if gap is None else abs(gap) <= tol,
            Msg("C14.literature.vs_lora.not_run")
            if gap is None
            else Msg("C14.literature.vs_lora.note", lang=language_name(lang), gap=gap, tol=tol),
        )
    )
    gap_full = m.get("qlora_vs_full_ppl_gap_pct")
    checks.append(
        LiteratureCheck(
            "Dettmers et al. 2023, QLoRA (NeurIPS)",
            Msg("C14.literature.vs_full.finding"),
            None if gap_full is None else abs(gap_full) <= tol,
            Msg("C14.literature.vs_full.not_run")
            if gap_full is None
            else Msg("C14.literature.vs_full.note", lang=language_name(lang), gap=gap_full),
        )
    )
    return checks


def primary_text(m: Mapping[str, Any]) -> str:
    return Msg(
        "C14.primary",
        steps=m.get("steps", "?"),
        lang=language_name(str(m.get("finetune_language", "?"))),
        model_parameters=m.get("model_parameters", 0),
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """A definition check: the QLoRA run must be a frozen, packed 4-bit base plus trained LoRA adapters.

    How well it fine-tunes (vs LoRA on the float base, vs full fine-tuning) is the QLoRA paper's
    finding, held against the literature, not part of what QLoRA *is*.
    """
    out = VerdictOf(Kind.DEFINITION, primary_text(metrics))
    if not metrics.get("qlora_ran") or "qlora" not in metrics.get("variants", {}):
        return out.branch(Label.INCONCLUSIVE, "C14.verdict.not_run")
    q = metrics["variants"]["qlora"]
    n4, nlin = int(q["linear4bit_count"]), int(q["decoder_linear_count"])
    bits = float(q["linear_bits_per_weight"])
    code_bytes = q.get("linear_code_bytes_per_weight")
    nf4 = bool(q["nf4"])
    adapters_only = bool(q["only_adapters_trainable"])
    unchanged = bool(q["base_unchanged"])
    definition = n4 == nlin and nlin > 0 and nf4 and bits <= 5.0 and adapters_only and unchanged
    stored = (
        Msg("C14.reason.stored_packed", code_bytes=float(code_bytes), bits=bits)
        if code_bytes is not None
        else Msg("C14.reason.stored_bits", bits=bits)
    )
    share = float(q["trainable_share_pct"])
    facts = Msg(
        "C14.reason.facts",
        n4=n4,
        nlin=nlin,
        stored=stored,
        trainable=int(q["trainable_params"]),
        share=share,
        who=Msg("C14.reason.adapters_only" if adapters_only else "C14.reason.not_only_adapters"),
        base=Msg("C14.reason.base_identical" if unchanged else "C14.reason.base_changed"),
    )
    if not definition:
        # what this run measured instead of "a frozen 4-bit base plus LoRA", part by part
        failures: list[Msg] = []
        if not (n4 == nlin and nlin > 0):
            failures.append(Msg("C14.reason.fail.not_all_4bit", n4=n4, nlin=nlin))
        if not nf4:
            failures.append(Msg("C14.reason.fail.not_nf4"))
        if bits > 5.0:
            failures.append(Msg("C14.reason.fail.bits", bits=bits))
        if not adapters_only:
            failures.append(Msg("C14.reason.fail.not_only_adapters", share=share))
        if not unchanged:
            failures.append(Msg("C14.reason.fail.base_changed"))
        return out.branch(Label.NOT_SUPPORTED, "C14.verdict.not_definition", facts=facts, failures=failures)
    before = float(q["ppl_before"])
    after = Spread.of([float(x) for x in q["ppl_after"]])
    return out.branch(
        Label.SUPPORTED,
        "C14.verdict.definition_holds",
        facts=facts,
        lang=language_name(str(metrics["finetune_language"])),
        before=before,
        after_mean=after.mean,
        after_sd=after.std,
        n=after.n,
        share=share,
    )
