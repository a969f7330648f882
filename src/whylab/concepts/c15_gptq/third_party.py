"""C15's deciding check: a GPTQ someone else wrote (torchao 0.18's prototype), under the probe.

Which third-party GPTQs this environment has, and why only one of them can decide:

- torchao's ``torchao.prototype.gptq`` (Meta): its observer (the Hessian H = 2XXᵀ/n from the
  layer inputs) runs anywhere, but ``gptq_quantize`` asserts a CUDA device and calls
  ``torch.cuda.synchronize()``. On a CUDA machine it runs as installed; on a CPU machine we run
  its installed source with exactly those two guard lines removed (checked: both must be found,
  nothing else changes) and say so in the result. Its INT4 path needs ``mslk`` (not on PyPI for
  this stack), so the check uses its INT8 per-row grid.
- optimum's ``optimum.gptq`` needs ``gptqmodel`` (absent here).
- ONNX Runtime 1.32's ``neural_compressor.weight_only.gptq`` ignores H: it takes the column
  ``Hinv[i:, i]`` of an *upper* Cholesky factor (zeros below the diagonal) where the reference
  takes the row ``Hinv[i, i:]``, so no rounding error reaches a later column and it returns
  round-to-nearest (``experiment.ort_builtin_check`` shows it on the trained LM's first layer).
- the authors' reference code (IST-DASLab/gptq) is not a package; it is not copied here.

The probe counts only ``backward()``/``autograd.grad()`` calls, with grad mode on: saved tensors
alone are not gradient use.
"""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

import numpy as np
import torch

from whylab.concepts.c15_gptq.experiment import autograd_probe

GUARDS = ('assert device.type == "cuda", "GPTQ only supports CUDA currently"', "torch.cuda.synchronize()")


def torchao_gptq() -> tuple[Any, list[str], str | None]:
    """torchao's ``gptq_quantize`` for this machine, the lines removed to run it, and why not (or None)."""
    from torchao.prototype.gptq import api

    if torch.cuda.is_available():
        return api.gptq_quantize, [], None
    source = textwrap.dedent(inspect.getsource(api.gptq_quantize)).splitlines()
    removed = [line.strip() for line in source if line.strip() in GUARDS]
    if sorted(removed) != sorted(GUARDS):
        return None, removed, f"torchao's gptq_quantize changed: guard lines found {removed}"
    kept = "\n".join(line for line in source if line.strip() not in GUARDS)
    namespace = dict(vars(api))
    exec(compile(kept, api.__file__, "exec"), namespace)  # the installed source, two guard lines removed
    return namespace["gptq_quantize"], removed, None


def _cpu_refusal() -> str | None:
    """torchao's own message when its GPTQ is asked to run on CPU (None on a CUDA machine)."""
    from torchao.prototype.gptq import GPTQConfig
    from torchao.prototype.gptq import gptq_quantize as ao_gptq
    from torchao.quantization import Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerRow

    if torch.cuda.is_available():
        return None
    cfg = GPTQConfig(step="convert", base_config=Int8WeightOnlyConfig(granularity=PerRow()))
    try:
        ao_gptq(torch.eye(8), torch.randn(4, 8), cfg)
    except AssertionError as err:
        return str(err)
    return None


def torchao_check(weight: torch.Tensor, inputs: torch.Tensor, h_ours: torch.Tensor) -> dict[str, Any]:
    """torchao's GPTQ (observe, then convert) on one layer under the probe, grad mode on.

    ``inputs`` are the layer's calibration inputs (tokens, K). Returns the probe's counts, the
    fraction of codes that differ from torchao's own round-to-nearest (same per-row scale), the
    agreement with whylab's GPTQ on the same grid and Hessian, and the output-error ratio
    tr(ΔHΔᵀ) GPTQ / RTN under torchao's Hessian.
    """
    from torchao.prototype.gptq import GPTQConfig
    from torchao.quantization import Int8Tensor, Int8WeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerRow

    from whylab.quant.gptq import gptq_quantize

    out: dict[str, Any] = {"implementation": "torchao.prototype.gptq (INT8 per-row)", "ran": False}
    out["cpu_refusal"] = _cpu_refusal()
    fn, removed, why = torchao_gptq()
    out["guard_lines_removed"] = removed
    if fn is None:
        return out | {"why_not": why}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n, k = weight.shape
    cfg = GPTQConfig(
        step="convert", base_config=Int8WeightOnlyConfig(granularity=PerRow()), gptq_quantize_block_size=k
    )  # one lazy batch = the whole row: torchao takes its per-row scale from the first batch's columns
    linear = torch.nn.Linear(k, n, bias=False).to(device)
    with torch.no_grad():
        linear.weight.copy_(weight)
    layer = torch.nn.Sequential(linear)
    with torch.enable_grad(), autograd_probe() as counts:
        quantize_(layer, GPTQConfig(step="observe", base_config=cfg.base_config))
        layer(inputs.to(device))
        observed: Any = layer[0].weight  # torchao's GPTQObserverTensor
        h = observed.hessian.detach().clone()
        theirs = fn(observed.hessian.clone(), observed.hp_data.clone(), cfg)
        grad_mode = torch.is_grad_enabled()
    h64 = h.double().cpu()
    w = weight.detach().double()
    rtn = Int8Tensor.from_hp(weight.float().to(device), PerRow())
    scale = rtn.scale.view(-1).double().cpu()
    codes = theirs.qdata.cpu().numpy().astype(np.int32)
    rtn_codes = rtn.qdata.cpu().numpy().astype(np.int32)
    ours = gptq_quantize(
        weight, h64, k, lazy_columns=k, maxq=255, params=lambda g: (scale, torch.full_like(scale, 128.0))
    )

    def err(deq: torch.Tensor) -> float:
        d = w - deq.double().cpu()
        return float(torch.einsum("nk,kl,nl->", d, h64, d) / n)

    err_theirs = err(theirs.dequantize(output_dtype=torch.float))
    err_rtn = err(rtn.dequantize(output_dtype=torch.float))
    return out | {
        "ran": True,
        "device": device,
        "grad_mode_on": bool(grad_mode),
        "backward_calls": counts["backward_calls"],
        "grad_calls": counts["grad_calls"],
        "layer_shape": [n, k],
        "calibration_tokens": int(inputs.shape[0]),
        "hessian_rel_diff_vs_ours": _shape_diff(h64, h_ours.double()),
        "codes_differ_from_rtn_frac": float(np.mean(codes != rtn_codes)),
        "codes_agree_with_ours_frac": float(np.mean(codes + 128 == ours.real_codes.astype(np.int32))),
        "error_ratio_vs_rtn": err_theirs / err_rtn if err_rtn else None,
    }


def _shape_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative difference of two Hessians up to scale (each divided by its trace): both are XXᵀ
    up to the 2/n convention."""
    a, b = a / torch.trace(a), b / torch.trace(b)
    return float((a - b).norm() / b.norm())


def first_layer_inputs(model: Any, name: str, calibration: torch.Tensor) -> torch.Tensor:
    """The FP model's inputs to module ``name`` on ``calibration`` (tokens, K): what GPTQ's first
    layer is calibrated on (nothing before it is quantized)."""
    module = dict(model.named_modules())[name]
    seen: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(input_ids=calibration, attention_mask=torch.ones_like(calibration), use_cache=False)
    finally:
        hook.remove()
    return torch.cat([s.reshape(-1, s.shape[-1]) for s in seen]).float()
