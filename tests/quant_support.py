"""Builders for the quantization tests: a tiny trained-layout LM tree (model, ONNX, corpus).

The layout mirrors what the lm rules write (``model/`` with tokenizer files, ``onnx/fp32/model.onnx``
exported by optimum with a KV cache, ``corpus/<lang>/{train,valid}.txt``), so the variant step
runs on it exactly as in the DAG. Widths are 64 and 128 so INT4 block sizes 32 and 64 divide them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from lm_helpers import write_corpus, write_tokenizer

QUANT_MODEL = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 128,
}

TINY_QUANT_SETTINGS: dict[str, Any] = {
    "measure": {
        "block_size": 32,
        "eval_blocks": 4,
        "eval_batch_size": 4,
        "latency_prompt_tokens": 16,
        "latency_warmup": 1,
        "latency_runs": 5,
        "throughput_batch_size": 2,
        "throughput_runs": 1,
    },
    "calibration": {"blocks": 4, "draws": 2, "pool_blocks": 8},
    "int8": {
        "ort_static_format": "QOperator",
        "ort_static_method": "MinMax",
        "per_channel": True,
        "torchao_configs": ["int8_dynamic", "int8_weight_only"],
    },
    "int4": {
        "algorithms": ["rtn", "hqq", "gptq", "awq"],
        "block_sizes": [32],
        "symmetric": False,
        "gptq_percdamp": 0.01,
        "awq_alpha_grid": 5,
    },
    "fp16": {"enabled": True},
}


def build_tree(root: Path, seed: int = 0) -> dict[str, Path]:
    """corpus/en, model/ (weights + tokenizer) and onnx/fp32/ under ``root``."""
    from whylab.lm.data import load_tokenizer
    from whylab.lm.export import export_onnx
    from whylab.lm.model import build_model

    paths = write_corpus(root / "corpus" / "en", chars=16_000)
    tok = load_tokenizer(write_tokenizer(root / "tok", paths["train"], vocab_size=300))
    torch.manual_seed(seed)
    model = build_model(
        QUANT_MODEL,
        len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    _give_structure(model, seed)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    export_onnx(root / "model", root / "onnx" / "fp32")
    return {"root": root, "model": root / "model", "onnx": root / "onnx" / "fp32", "corpus": root / "corpus"}


@torch.no_grad()
def _give_structure(model: Any, seed: int) -> None:
    """Make a random model look a little trained: low-rank embeddings (correlated hidden channels,
    which GPTQ exploits) and a few salient channels (which AWQ protects). Purely synthetic."""
    gen = torch.Generator().manual_seed(seed + 1)
    emb = model.get_input_embeddings().weight
    vocab, hidden = emb.shape
    low = torch.randn(vocab, 8, generator=gen) @ torch.randn(8, hidden, generator=gen)
    emb.copy_(0.5 * low / low.std() + 0.2 * torch.randn(vocab, hidden, generator=gen))
    for layer in model.model.layers:
        scale = torch.ones(hidden)
        scale[torch.randperm(hidden, generator=gen)[:3]] = 8.0
        layer.input_layernorm.weight.copy_(scale)
        layer.post_attention_layernorm.weight.copy_(scale.flip(0))


def settings(variant: str, **overrides: Any) -> dict[str, Any]:
    q = copy.deepcopy(TINY_QUANT_SETTINGS)
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        q[section][name] = value
    return {"seeds": [0], "device": "cpu", "variant": variant, "quantization": q, "languages": ["en"]}


def run_variant(tree: dict[str, Path], variant: str, out_root: Path, **overrides: Any) -> dict[str, Any]:
    """Run the quant_variant step like the rule does (reference first when needed); return measures."""
    from whylab.files import read_json
    from whylab.quant.variants import parse

    v = parse(variant)
    inputs = {"model": tree["model"], "onnx": tree["onnx"], "corpus": tree["corpus"]}
    if not v.is_reference:
        ref = out_root / v.reference / "measures.json"
        if not ref.is_file():
            run_variant(tree, v.reference, out_root, **overrides)
        inputs["reference"] = ref
    from whylab.quant.variant_jobs import run_step

    out = out_root / variant / "measures.json"
    run_step(settings(variant, **overrides), inputs, {"measures": out}, threads=1)
    return read_json(out)


def run_family(
    tree: dict[str, Path], names: list[str], out_root: Path, **overrides: Any
) -> dict[str, dict[str, Any]]:
    """Run the quant_variant step on several variants in one call, as a family rule does (each
    reference's measures.json read from out_root); return each variant's measures."""
    from whylab.files import read_json
    from whylab.quant.variant_jobs import run_step
    from whylab.quant.variants import parse

    inputs = {"model": tree["model"], "onnx": tree["onnx"], "corpus": tree["corpus"]}
    outputs = {}
    for name in names:
        reference = parse(name).reference
        if reference != name:
            inputs[f"reference.{reference}"] = out_root / reference / "measures.json"
        outputs[f"measures.{name}"] = out_root / name / "measures.json"
        outputs[f"models.{name}"] = out_root / name / "model"
    family = {**settings(names[0], **overrides), "variants": list(names)}
    del family["variant"]
    run_step(family, inputs, outputs, threads=1)
    return {name: read_json(outputs[f"measures.{name}"]) for name in names}
