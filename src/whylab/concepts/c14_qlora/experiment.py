"""C14's measurements: per seed, every fine-tuning variant (QLoRA, LoRA on FP32, full) on the LM.

Measuring only: each variant's storage report, trainable parameters, base fingerprint check,
perplexities, peak memory, time and losses, as :class:`whylab.quant.qlora.FinetuneResult` fields;
the skipped variants as messages kept as key and parameters (this module imports no texts).
Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from whylab.concepts.context import ConceptContext
from whylab.errors import InputError

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
VARIANTS = ("qlora", "lora", "full")
MSG_TAG = "$msg"  # a message kept as key and parameters, as whylab.messages.Msg.to_dict writes it


def _message(key: str, **params: Any) -> dict[str, Any]:
    return {MSG_TAG: key, "params": params}


def _cfg(settings: Mapping[str, Any]) -> dict[str, Any]:
    cfg = {**DEFAULTS, **{k: settings[k] for k in DEFAULTS if k in settings}}
    bad = [v for v in cfg["variants"] if v not in VARIANTS]
    if bad:
        raise InputError(f"quantization.qlora.variants: unknown {bad} (allowed: {', '.join(VARIANTS)})")
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


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Every fine-tuning variant with this seed (same initial adapters' stream, batches and schedule)."""
    from whylab.lm.pretrained import folder_parameter_count
    from whylab.quant import qlora as ql

    cfg = _cfg(ctx.settings)
    ft = ql.FinetuneConfig.from_settings(cfg)
    train_blocks, valid_blocks, retain_blocks = _blocks(ctx, cfg)
    skipped: list[dict[str, Any]] = []
    variants = list(cfg["variants"])
    if "qlora" in variants:
        ok, why = ql.bnb_available()
        if not ok:
            variants.remove("qlora")
            skipped.append(
                _message(
                    "C14.skipped.bnb_import", error=why.removeprefix("bitsandbytes cannot be imported: ")
                )
            )
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
                _message(
                    "C14.skipped.bnb_failed",
                    device=ctx.device,
                    error_type=type(exc).__name__,
                    error=str(exc).splitlines()[0] if str(exc) else "",
                )
            )
            continue
        results.append(asdict(result))
    return {
        "seed": seed,
        "results": results,
        "skipped": skipped,
        "train_blocks": int(train_blocks.shape[0]),
        "valid_blocks": int(valid_blocks.shape[0]),
        "model_parameters": folder_parameter_count(ctx.inputs["model"]),
        "device": ctx.device,
        "memory_method": ql.memory_method(ctx.device),
    }
