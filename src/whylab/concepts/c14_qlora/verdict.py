"""C14's decision: from the fine-tuning runs to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
``close_tolerance_pct`` (the literature check's band) is a setting only the decision reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts.c14_qlora import parts as c14_parts
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, language_name
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C14"
SPEC = load_spec(CLAIM_ID)
FORMAT = (
    "bitsandbytes NF4 as stored: two 4-bit codes packed in each byte (0.5 byte per weight), plus one "
    "absmax per block of 64 weights (an 8-bit code with double quantization, and one float per 256 "
    "blocks) and the fixed 16-level NF4 table"
)
# the facts of a variant's runs that do not depend on the seed
FIXED = (
    "trainable_params",
    "total_params",
    "base_storage_bytes",
    "linear_storage_bytes",
    "linear_table_bytes",
    "linear_bits_per_weight",
    "linear_code_bytes_per_weight",
    "linear_weights",
    "linear4bit_count",
    "decoder_linear_count",
    "nf4",
    "ppl_before",
)


def by_variant(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: the per-seed lists and the seed-independent facts of its runs."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        v = out.setdefault(
            r["variant"],
            {
                "seeds": [],
                "ppl_after": [],
                "retained_ppl_after": [],
                "peak_bytes": [],
                "train_seconds": [],
                "final_loss": [],
            },
        )
        v["seeds"].append(r["seed"])
        for key in ("ppl_after", "retained_ppl_after", "peak_bytes", "train_seconds"):
            v[key].append(r[key])
        v["final_loss"].append(sum(r["losses"][-5:]) / len(r["losses"][-5:]))
        v.update({key: r[key] for key in FIXED})
        v["only_adapters_trainable"] = v.get("only_adapters_trainable", True) and r["only_adapters_trainable"]
        v["base_unchanged"] = v.get("base_unchanged", True) and r["base_unchanged"]
    return out


def variants_run(settings: Mapping[str, Any], per_seed: Sequence[Mapping[str, Any]]) -> list[str]:
    """The variants that ran with every seed (the arms pair by seed)."""
    return [
        v
        for v in settings["variants"]
        if all(any(r["variant"] == v for r in rec["results"]) for rec in per_seed)
    ]


def results_run(measured: Measured) -> list[dict[str, Any]]:
    """Every run of the variants that ran with every seed."""
    variants = variants_run(measured.settings, measured.per_seed)
    return [r for rec in measured.per_seed for r in rec["results"] if r["variant"] in variants]


def _variant_metrics(s: Mapping[str, Any], retain: bool, peak_known: bool) -> dict[str, Any]:
    return {
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


def summarize(measured: Measured) -> dict[str, Any]:
    s, per_seed = measured.settings, measured.per_seed
    lang = str(s["finetune_language"])
    pretrain_langs = [str(x) for x in s["languages"]]
    retain = [x for x in pretrain_langs if x != lang]
    summary = by_variant(results_run(measured))
    peak_known = all(b is not None for v in summary.values() for b in v["peak_bytes"])
    metrics: dict[str, Any] = {
        "model_parameters": per_seed[0]["model_parameters"],
        "int4_format": FORMAT,
        "finetune_language": lang,
        "pretrain_languages": pretrain_langs,
        "retention_languages": retain,
        "variants_run": variants_run(s, per_seed),
        "qlora_ran": "qlora" in summary,
        "close_tolerance_pct": float(s["close_tolerance_pct"]),
        "memory_method": per_seed[0]["memory_method"],
        "device": str(s.get("device", "cpu")),
        "steps": s["steps"],
        "batch_size": s["batch_size"],
        "block_size": int(s["block_size"]),
        "train_blocks": int(per_seed[0]["train_blocks"]),
        "valid_blocks": int(per_seed[0]["valid_blocks"]),
        "lr": {"qlora": s["lr_adapters"], "lora": s["lr_adapters"], "full": s["lr_full"]},
        "lora_r": s["lora_r"],
        "lora_alpha": s["lora_alpha"],
        "variants": {v: _variant_metrics(x, bool(retain), peak_known) for v, x in summary.items()},
        "real_scale": c14_parts.real_scale(),
    }
    if "qlora" in summary and "lora" in summary:
        q, lo = Spread.of(summary["qlora"]["ppl_after"]).mean, Spread.of(summary["lora"]["ppl_after"]).mean
        metrics["qlora_vs_lora_ppl_gap_pct"] = 100 * (q - lo) / lo
    if "qlora" in summary and "full" in summary:
        q, fu = Spread.of(summary["qlora"]["ppl_after"]).mean, Spread.of(summary["full"]["ppl_after"]).mean
        metrics["qlora_vs_full_ppl_gap_pct"] = 100 * (q - fu) / fu
    return metrics


def primary_text(m: Mapping[str, Any]) -> str:
    part = SPEC.part("definition")
    assert part.primary is not None
    return Msg(
        part.primary.text,
        steps=m.get("steps", "?"),
        lang=language_name(str(m.get("finetune_language", "?"))),
        model_parameters=m.get("model_parameters", 0),
    )


def _failures(
    n4: int, nlin: int, nf4: bool, bits: float, adapters_only: bool, unchanged: bool, share: float
) -> list[Msg]:
    """What this run measured instead of "a frozen 4-bit base plus LoRA", part by part."""
    failures: list[Msg] = []
    if not (n4 == nlin and nlin > 0):
        failures.append(Msg("C14.reason.fail.not_all_4bit", n4=n4, nlin=nlin))
    if not nf4:
        failures.append(Msg("C14.reason.fail.not_nf4"))
    if bits > SPEC.threshold("max_bits_per_weight"):
        failures.append(Msg("C14.reason.fail.bits", bits=bits))
    if not adapters_only:
        failures.append(Msg("C14.reason.fail.not_only_adapters", share=share))
    if not unchanged:
        failures.append(Msg("C14.reason.fail.base_changed"))
    return failures


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """A definition check: the QLoRA run must be a frozen, packed 4-bit base plus trained LoRA adapters.

    How well it fine-tunes (vs LoRA on the float base, vs full fine-tuning) is the QLoRA paper's
    finding, held against the literature, not part of what QLoRA *is*.
    """
    out = VerdictOf(Kind.DEFINITION, primary_text(metrics))
    out.parts.extend(c14_parts.parts_of(metrics))
    if not metrics.get("qlora_ran") or "qlora" not in metrics.get("variants", {}):
        return out.branch(Label.INCONCLUSIVE, "C14.verdict.not_run")
    q = metrics["variants"]["qlora"]
    n4, nlin = int(q["linear4bit_count"]), int(q["decoder_linear_count"])
    bits = float(q["linear_bits_per_weight"])
    code_bytes = q.get("linear_code_bytes_per_weight")
    nf4 = bool(q["nf4"])
    adapters_only = bool(q["only_adapters_trainable"])
    unchanged = bool(q["base_unchanged"])
    max_bits = SPEC.threshold("max_bits_per_weight")
    definition = n4 == nlin and nlin > 0 and nf4 and bits <= max_bits and adapters_only and unchanged
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
        failures = _failures(n4, nlin, nf4, bits, adapters_only, unchanged, share)
        return out.branch(Label.NOT_SUPPORTED, "C14.verdict.not_definition", facts=facts, failures=failures)
    before = float(q["ppl_before"])
    after = Spread.of([float(x) for x in q["ppl_after"]])
    # fine-tuning must also learn: the new language's perplexity falls (the lora_finetuning part)
    learning = next(p for p in out.parts if p.id == "lora_finetuning")
    if learning.run is not Label.SUPPORTED:
        key = (
            "C14.verdict.no_learning"
            if learning.run is Label.NOT_SUPPORTED
            else "C14.verdict.learning_unclear"
        )
        label = Label.PARTLY if learning.run is Label.NOT_SUPPORTED else Label.INCONCLUSIVE
        return out.branch(label, key, facts=facts, learning=learning.reason)
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
