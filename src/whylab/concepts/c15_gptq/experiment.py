"""C15's measurements: whylab's GPTQ run on the trained LM under an autograd probe.

Measuring only: the probe's counts during GPTQ and on a positive control (one gradient step),
the Hessian checks (H = I gives round-to-nearest; the real H changes codes and lowers the
calibration output error; a second calibration set gives other codes), torchao's GPTQ and ONNX
Runtime's built-in GPTQ on one layer, llmcompressor's GPTQ as its own environment ran it
(``--input llmcompressor``, :mod:`whylab.thirdparty.llmcompressor_check`), and the INT4 variants'
measures.json (GPTQ vs RTN perplexity). Deciding is in
``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from whylab.concepts.context import ConceptContext
from whylab.concepts.spec import load_spec
from whylab.quant.variant_records import load_measures
from whylab.thirdparty.probe import autograd_probe, probe_control
from whylab.thirdparty.records import llmcompressor_part

CLAIM_ID = "C15"


def hessian_checks(
    model: Any,
    calib_a: torch.Tensor,
    calib_b: torch.Tensor,
    block_size: int,
    percdamp: float,
    *,
    act_order: bool = True,
    true_sequential: bool = True,
) -> dict[str, Any]:
    """Run GPTQ on the model twice (two calibration sets) under the probe; compare with RTN and H = I."""
    from whylab.quant.gptq import gptq_model, gptq_quantize, layer_error
    from whylab.quant.int4 import rtn_quantize

    stats: dict[str, Any] = {
        "layers": 0,
        "identity_equals_rtn": True,
        "differ": 0,
        "total": 0,
        "err_gptq": 0.0,
        "err_rtn": 0.0,
        "grad_enabled_layers": 0,
    }
    first: dict[str, Any] = {}

    def on_layer(name: str, weight: torch.Tensor, q: Any, h: torch.Tensor) -> None:
        rtn = rtn_quantize(weight, block_size)
        ident = gptq_quantize(
            weight, torch.eye(h.shape[0], dtype=torch.float64), block_size, percdamp=percdamp
        )
        stats["layers"] += 1
        stats["identity_equals_rtn"] = bool(stats["identity_equals_rtn"]) and bool(
            np.array_equal(ident.real_codes, rtn.real_codes)
        )
        stats["differ"] += int((q.real_codes != rtn.real_codes).sum())
        stats["total"] += int(rtn.real_codes.size)
        stats["err_gptq"] += layer_error(weight, q, h)
        stats["err_rtn"] += layer_error(weight, rtn, h)
        stats["grad_enabled_layers"] += int(torch.is_grad_enabled())
        if not first:
            first.update(name=name, weight=weight.clone(), h=h.clone())

    with autograd_probe() as counts:
        result_a = gptq_model(
            model,
            calib_a,
            block_size,
            percdamp=percdamp,
            act_order=act_order,
            true_sequential=true_sequential,
            on_layer=on_layer,
        )
    result_b = gptq_model(
        model, calib_b, block_size, percdamp=percdamp, act_order=act_order, true_sequential=true_sequential
    )
    differ_ab = sum(int((result_a[n].real_codes != result_b[n].real_codes).sum()) for n in result_a)
    total = sum(int(result_a[n].real_codes.size) for n in result_a)
    return {
        "gradients": dict(counts, grad_enabled_layers=stats["grad_enabled_layers"]),
        "hessian": {
            "layers": stats["layers"],
            "identity_equals_rtn": stats["identity_equals_rtn"],
            "codes_differ_from_rtn_frac": stats["differ"] / max(1, stats["total"]),
            "codes_differ_between_calibration_sets_frac": differ_ab / max(1, total),
            "calibration_error_gptq": stats["err_gptq"],
            "calibration_error_rtn": stats["err_rtn"],
            "error_ratio_gptq_vs_rtn": stats["err_gptq"] / stats["err_rtn"] if stats["err_rtn"] else None,
        },
        "_first_layer": first,
    }


def ort_builtin_check(weight: torch.Tensor, h: torch.Tensor, block_size: int) -> dict[str, Any] | None:
    """ONNX Runtime's GPTQ (Intel Neural Compressor code) on one layer: does its result depend on H?"""
    try:
        from onnxruntime.quantization.neural_compressor.weight_only import gptq as ort_gptq
    except ImportError:
        return None
    from whylab.quant.int4 import rtn_quantize

    w = weight.detach().float().numpy().T.copy()  # ONNX orientation (K, N)
    k = w.shape[0]
    real = ort_gptq(
        w.copy(),
        h.numpy().copy(),
        num_bits=4,
        group_size=block_size,
        scheme="asym",
        blocksize=128,
        percdamp=0.01,
    )
    ident = ort_gptq(
        w.copy(),
        np.eye(k) * float(np.mean(np.diag(h.numpy()))),
        num_bits=4,
        group_size=block_size,
        scheme="asym",
        blocksize=128,
        percdamp=0.01,
    )
    rtn = rtn_quantize(weight, block_size).dequantize().numpy().T
    return {
        "max_diff_real_vs_identity_hessian": float(np.abs(real - ident).max()),
        "max_diff_vs_rtn": float(np.abs(real - rtn).max()),
        "ignores_hessian": bool(np.abs(real - ident).max() == 0.0),
    }


def measure(ctx: ConceptContext) -> dict[str, Any]:
    from whylab.lm.data import corpus_files, load_tokenizer, token_blocks
    from whylab.lm.pretrained import folder_parameter_count, load_causal_lm

    q = ctx.settings["quantization"]
    sizes = [int(b) for b in q["int4"]["block_sizes"]]
    primary_group = int(load_spec(CLAIM_ID).threshold("primary_group"))
    block_size = primary_group if primary_group in sizes else sizes[0]
    n = int(q["calibration"]["blocks"])
    tokenizer = load_tokenizer(ctx.inputs["model"])
    train = corpus_files(ctx.inputs["corpus"], ctx.settings["languages"], "train")
    blocks = token_blocks(train, tokenizer, int(q["measure"]["block_size"]), 2 * n)
    if blocks.shape[0] < 2:
        raise ValueError("C15 needs at least two calibration blocks")
    half = min(n, blocks.shape[0] // 2)
    calib_a, calib_b = blocks[:half], blocks[half : 2 * half]
    model = load_causal_lm(ctx.inputs["model"], torch.float32, "cpu")
    checks = hessian_checks(
        model,
        calib_a,
        calib_b,
        block_size,
        float(q["int4"]["gptq_percdamp"]),
        act_order=bool(q["int4"].get("gptq_act_order", True)),
        true_sequential=bool(q["int4"].get("gptq_true_sequential", True)),
    )
    first = checks.pop("_first_layer")
    ort_check = ort_builtin_check(first["weight"], first["h"], block_size)
    from whylab.concepts.c15_gptq.third_party import first_layer_inputs, torchao_check

    inputs = first_layer_inputs(model, first["name"], calib_a)
    third_party = torchao_check(first["weight"], inputs, first["h"]) | {"layer": first["name"]}
    rows = load_measures(ctx.inputs["variants"], ctx.settings["variants"])
    return {
        **checks,
        "probe_control": probe_control(),
        "ort_builtin_gptq": ort_check,
        # decides: llmcompressor's GPTQ, unmodified, in its own environment (llmcompressor.smk);
        # torchao's under the same probe is the second cross-check (and decides when it did not run)
        "llmcompressor": llmcompressor_part(ctx.inputs.get("llmcompressor"), "gptq"),
        "third_party": third_party,
        "check_block_size": block_size,
        "model_parameters": folder_parameter_count(ctx.inputs["model"]),
        "calibration_blocks": [int(calib_a.shape[0]), int(calib_b.shape[0])],
        "int4_rows": [r for r in rows if r["family"] == "int4"],  # GPTQ vs RTN, and why any was skipped
    }
