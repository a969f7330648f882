"""C15's cross-check on llmcompressor's GPTQModifier, as installed (runs in ``.venv-llmc``).

llmcompressor's ``oneshot`` with a ``GPTQModifier`` (INT4 weights, group ``group_size``, every
decoder linear; the LM head stays float) runs on the trained LM's calibration blocks under the
autograd probe with grad mode on, and so does its round-to-nearest: a ``QuantizationModifier``
with the same scheme, data-free. Both are llmcompressor's unmodified code on CPU. Recorded: the
probe's backward()/autograd.grad() calls (the positive control is one gradient step it must see),
the codes (``compressed_tensors``' own ``quantize`` of each module's weight with its scale and
zero point) that GPTQ changes from RTN's, and on the first decoder linear the output error
‖(W − Q)X‖² on its calibration inputs X (the FP model's: nothing is quantized before it), GPTQ's
over RTN's.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from whylab.thirdparty.probe import autograd_probe, probe_control

FIRST_LAYER = "model.layers.0.self_attn.q_proj"


def scheme(group_size: int, symmetric: bool) -> Any:
    """The INT4 group-wise weight-only scheme of every decoder linear (llmcompressor's config group)."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(
        num_bits=4, type="int", symmetric=symmetric, strategy="group", group_size=group_size
    )
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}


def calibration_dataset(blocks: torch.Tensor) -> Any:
    """The calibration blocks as the ``datasets.Dataset`` ``oneshot`` takes (already tokenized)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": blocks.tolist(), "attention_mask": torch.ones_like(blocks).tolist()}
    )


def layer_inputs(model: Any, name: str, blocks: torch.Tensor) -> torch.Tensor:
    """The FP model's inputs to module ``name`` on ``blocks``: (tokens, K)."""
    module = dict(model.named_modules())[name]
    seen: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        with torch.no_grad():
            model(input_ids=blocks, attention_mask=torch.ones_like(blocks), use_cache=False)
    finally:
        hook.remove()
    return torch.cat([s.reshape(-1, s.shape[-1]) for s in seen]).double()


def codes(module: Any) -> torch.Tensor:
    """A quantized module's integer codes: compressed_tensors' ``quantize`` of its (fake-quantized)
    weight with its own scale and zero point."""
    from compressed_tensors.quantization.lifecycle.forward import quantize

    args = module.quantization_scheme.weights
    return quantize(
        module.weight.detach(), module.weight_scale, module.weight_zero_point, args, dtype=torch.int8
    ).to(torch.int32)


def dequantized(module: Any) -> torch.Tensor:
    """The weight the codes stand for: compressed_tensors' ``dequantize`` of :func:`codes` (RTN's
    module keeps its FP weight and quantizes on the fly; GPTQ's holds the fake-quantized one)."""
    from compressed_tensors.quantization.lifecycle.forward import dequantize

    args = module.quantization_scheme.weights
    q = codes(module).to(torch.int8)
    return dequantize(q, module.weight_scale, module.weight_zero_point, args, torch.float64)


def quantized_modules(model: Any) -> dict[str, Any]:
    return {n: m for n, m in model.named_modules() if hasattr(m, "weight_scale")}


def gptq_check(
    model: Any, blocks: torch.Tensor, group_size: int, symmetric: bool, dampening: float
) -> dict[str, Any]:
    """llmcompressor's GPTQ and RTN on copies of ``model`` (see the module docstring)."""
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier

    x = layer_inputs(model, FIRST_LAYER, blocks)
    w = dict(model.named_modules())[FIRST_LAYER].weight.detach().double().clone()
    gptq_model, rtn_model = copy.deepcopy(model), copy.deepcopy(model)
    gptq = GPTQModifier(
        config_groups=scheme(group_size, symmetric), ignore=["lm_head"], dampening_frac=dampening
    )
    with torch.enable_grad(), autograd_probe() as counts:
        grad_mode = torch.is_grad_enabled()
        oneshot(
            model=gptq_model,
            dataset=calibration_dataset(blocks),
            recipe=gptq,
            num_calibration_samples=int(blocks.shape[0]),
            max_seq_length=int(blocks.shape[1]),
            shuffle_calibration_samples=False,
        )
    rtn = QuantizationModifier(config_groups=scheme(group_size, symmetric), ignore=["lm_head"])
    with torch.enable_grad(), autograd_probe() as rtn_counts:
        oneshot(model=rtn_model, recipe=rtn)
    ours, theirs = quantized_modules(gptq_model), quantized_modules(rtn_model)
    differ = sum(int((codes(ours[n]) != codes(theirs[n])).sum()) for n in ours)
    total = sum(int(ours[n].weight.numel()) for n in ours)
    scale_diff = max(float((ours[n].weight_scale - theirs[n].weight_scale).abs().max()) for n in ours)

    def err(module: Any) -> float:
        d = w - dequantized(module)
        return float(((x @ d.T) ** 2).sum())

    err_gptq, err_rtn = err(ours[FIRST_LAYER]), err(theirs[FIRST_LAYER])
    stored = float((dequantized(ours[FIRST_LAYER]) - ours[FIRST_LAYER].weight.detach().double()).abs().max())
    first_differ = codes(ours[FIRST_LAYER]) != codes(theirs[FIRST_LAYER])
    return {
        "implementation": "llmcompressor GPTQModifier (oneshot)",
        "ran": True,
        "device": "cpu",
        "modified": False,
        "grad_mode_on": bool(grad_mode),
        "backward_calls": counts["backward_calls"],
        "grad_calls": counts["grad_calls"],
        "saved_for_backward": counts["saved_for_backward"],
        "rtn_backward_calls": rtn_counts["backward_calls"] + rtn_counts["grad_calls"],
        "probe_control": probe_control(),
        "scheme": {
            "num_bits": 4,
            "group_size": group_size,
            "symmetric": symmetric,
            "dampening_frac": dampening,
        },
        "actorder": str(gptq_model.get_submodule(FIRST_LAYER).quantization_scheme.weights.actorder),
        "rtn_fallback_modules": list(getattr(gptq, "_rtn_fallback_module_names", [])),
        "quantized_modules": len(ours),
        "codes_differ_from_rtn_frac": differ / max(1, total),
        "scales_max_abs_diff_vs_rtn": scale_diff,
        "layer": FIRST_LAYER,
        "layer_shape": list(w.shape),
        "calibration_tokens": int(x.shape[0]),
        "layer_codes_differ_from_rtn_frac": float(first_differ.float().mean()),
        "layer_weight_vs_codes_max_abs_diff": stored,  # GPTQ's stored weight is its codes' value
        "layer_error_gptq": err_gptq,
        "layer_error_rtn": err_rtn,
        "error_ratio_vs_rtn": err_gptq / err_rtn if err_rtn else None,
    }
