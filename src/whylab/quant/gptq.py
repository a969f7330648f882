"""GPTQ (Frantar et al., ICLR 2023), written from the paper, in torch, onto ONNX Runtime's INT4 grid.

What GPTQ computes, per linear layer with weight W (N×K) and calibration inputs X (K×n):
it looks for quantized weights Q minimising the layer's output error ‖WX − QX‖². That error is
a quadratic in the weights whose Hessian is H = 2XXᵀ — built from *forward activations only*.
GPTQ quantizes the K input columns one at a time (Optimal Brain Surgeon style): after rounding
column j it spreads the rounding error over the columns not yet quantized, using the inverse
Hessian (W[:, j:] -= err_j · H⁻¹[j, j:] / H⁻¹[j, j]), so later columns absorb the error. With a
Cholesky factor of H⁻¹ and "lazy batches" of columns this is one pass, no iterations, no loss
gradient, no backpropagation. Layers are processed in order, each calibrated on the outputs of
the already-quantized layers before it.

As in the authors' reference code (IST-DASLab/gptq, the settings GPTQ models ship with):
act-order (``desc_act``: columns in order of decreasing H_jj, with static groups so the
MatMulNBits layout needs no permutation), true-sequential (within a decoder layer, q/k/v then o
then gate/up then down, each calibrated with the earlier ones quantized), and the embedding and
LM head left in floating point. Checked against Optimal Brain Surgeon's recursion and, on CUDA,
against torchao's prototype GPTQ (tests/test_gptq_crosscheck.py).

ONNX Runtime ships a GPTQ config too (Intel Neural Compressor's code); we write our own because
(1) ORT's collects every layer's inputs from the unquantized model (not sequentially),
(2) it re-rounds GPTQ's result onto a fresh min/max grid when packing (a second rounding), and
(3) on layers whose K/block_size is odd it crashes while packing zero points. Tests compare this
implementation with ORT's ``gptq()`` on the same W and H.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from whylab.quant.int4 import MAXQ, QuantizedWeight, group_params, k_blocks

_LAYER_RE = re.compile(r"(^|\.)layers\.(\d+)\.")


def hessian(inputs: torch.Tensor) -> torch.Tensor:
    """H = 2/n · XᵀX for inputs X (n, K) — the curvature of ‖WX − QX‖² in W (float64)."""
    x = inputs.reshape(-1, inputs.shape[-1]).double()
    return 2.0 * x.T @ x / x.shape[0]


class HessianAccumulator:
    """Running H = 2/n Σ x xᵀ over batches, without keeping the activations."""

    def __init__(self, k: int) -> None:
        self.h = torch.zeros(k, k, dtype=torch.float64)
        self.n = 0

    def add(self, inputs: torch.Tensor) -> None:
        x = inputs.detach().reshape(-1, inputs.shape[-1]).double()
        m = x.shape[0]
        self.h *= self.n / (self.n + m)
        self.n += m
        self.h += 2.0 / self.n * (x.T @ x)


GroupParams = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def gptq_quantize(
    weight: torch.Tensor,
    h: torch.Tensor,
    block_size: int,
    *,
    symmetric: bool = False,
    percdamp: float = 0.01,
    lazy_columns: int = 128,
    act_order: bool = False,
    maxq: int = MAXQ,
    params: GroupParams | None = None,
) -> QuantizedWeight:
    """Quantize one (N, K) weight with GPTQ given the Hessian ``h`` (K, K) of its inputs.

    ``block_size`` is the quantization group along K. Without ``act_order`` each group's
    scale/zero point is set from the group's error-updated weights when GPTQ reaches its
    first column (the paper's algorithm). With ``act_order`` (the reference code's
    ``desc_act``) columns are visited in order of decreasing H_jj, the inputs with the most
    energy first, and every group's scale/zero point is fixed up front from the original
    weights ("static groups"), so groups stay contiguous in K and the result is stored in
    the plain MatMulNBits layout with no column permutation at run time.
    ``lazy_columns`` is the paper's lazy-batch width, rounded to a multiple of the group so
    a group never straddles two batches. ``percdamp`` adds λ = percdamp · mean(diag H) to the
    diagonal (the paper's dampening) so H is safely invertible. ``maxq`` and ``params`` (a
    group's (scale, zero point) from its weights) change the grid; the default is ONNX
    Runtime's 4-bit grid (:func:`whylab.quant.int4.group_params`). Codes are
    ``clamp(round(w / scale) + zp, 0, maxq)``.
    """
    grid: GroupParams = params or (lambda g: group_params(g, symmetric))
    w = weight.detach().double().clone()
    n, k = w.shape
    h = h.detach().double().clone()
    if h.shape != (k, k):
        raise ValueError(f"Hessian is {tuple(h.shape)}, the weight has K={k}")
    dead = torch.diag(h) == 0  # inputs that are always zero carry no information
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    kb = k_blocks(k, block_size)
    codes = torch.zeros(n, kb * block_size, dtype=torch.float64)
    scales = torch.zeros(n, kb, dtype=torch.float64)
    zps = torch.zeros(n, kb, dtype=torch.float64)
    perm = torch.arange(k)
    if act_order:
        padded = torch.cat([w, w.new_zeros(n, kb * block_size - k)], dim=1).view(n, kb, block_size)
        for g in range(kb):
            scale, zp = grid(padded[:, g])
            scales[:, g], zps[:, g] = scale.double(), zp.double()
        perm = torch.argsort(torch.diag(h), descending=True, stable=True)
        w = w[:, perm]
        h = h[perm][:, perm]
    damp = percdamp * torch.mean(torch.diag(h))
    h += damp * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)

    lazy = max(block_size, (lazy_columns // block_size) * block_size)
    for i1 in range(0, k, lazy):
        i2 = min(i1 + lazy, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])  # the column's place in the original weight
            g = col // block_size
            if not act_order and col % block_size == 0:
                scale, zp = grid(w1[:, i : i + block_size])
                scales[:, g], zps[:, g] = scale.double(), zp.double()
            scale, zp = scales[:, g], zps[:, g]
            col_w = w1[:, i]
            # the division in float32, as the RTN grid computes it: with H = I this reproduces RTN's
            # codes bit for bit (float64 would round a few float32 ties the other way)
            code = torch.clamp(torch.round(col_w.float() / scale.float()).double() + zp, 0, maxq)
            q = (code - zp) * scale
            codes[:, col] = code
            err = (col_w - q) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    for col in range(k, kb * block_size):  # padding columns stand for 0
        codes[:, col] = zps[:, col // block_size]
    code_type = torch.uint8 if maxq <= 255 else torch.int32
    return QuantizedWeight(
        codes=codes.to(code_type).numpy(),
        scales=scales.float().numpy().astype(np.float32),
        zero_points=zps.to(code_type).numpy(),
        k=k,
        block_size=block_size,
        symmetric=symmetric,
    )


def layer_error(weight: torch.Tensor, q: QuantizedWeight, h: torch.Tensor) -> float:
    """tr((W−Q) H (W−Q)ᵀ) / N: the mean squared output error GPTQ minimises, on the calibration inputs."""
    delta = weight.detach().double() - q.dequantize().double()
    return float(torch.einsum("nk,kl,nl->", delta, h.double(), delta) / delta.shape[0])


# Linears of a Llama-style decoder layer that read the same input, in the order the layer
# computes them: the reference code's "true sequential" order (q/k/v, then o, then gate/up,
# then down). Each step is calibrated on what the layer computes with the steps before it
# already quantized.
SEQUENTIAL_STEPS = (
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    ("self_attn.o_proj",),
    ("mlp.gate_proj", "mlp.up_proj"),
    ("mlp.down_proj",),
)


def linear_order(model: Any) -> list[list[str]]:
    """The model's nn.Linear names grouped by decoder layer, in depth order; others (lm_head) last."""
    by_layer: dict[int, list[str]] = {}
    rest: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            m = _LAYER_RE.search(name)
            if m:
                by_layer.setdefault(int(m.group(2)), []).append(name)
            else:
                rest.append(name)
    return [by_layer[i] for i in sorted(by_layer)] + ([rest] if rest else [])


def sequential_steps(layer: torch.nn.Module) -> list[list[str]]:
    """The layer's linears (names relative to it) in true-sequential steps.

    Llama-style projections follow :data:`SEQUENTIAL_STEPS`; any other linear in the layer
    is a step of its own, after them, in module order.
    """
    linears = [n for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)]
    steps = [[n for n in step if n in linears] for step in SEQUENTIAL_STEPS]
    known = {n for step in steps for n in step}
    return [s for s in steps if s] + [[n] for n in linears if n not in known]


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """``model.model.layers`` of a Hugging Face decoder (Llama, Mistral, Qwen2, ...)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise ValueError("GPTQ here needs a decoder with model.model.layers (Llama-style)")
    return layers


class _Captured(Exception):
    """Raised by the first decoder layer's pre-hook once its inputs are stored."""


def _layer_inputs(
    model: Any, layer: torch.nn.Module, calibration: torch.Tensor, batch_size: int
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The first decoder layer's (args, kwargs) for every calibration batch; nothing past it runs."""
    stored: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def grab(_m: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        stored.append((args, dict(kwargs)))
        raise _Captured

    hook = layer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        for start in range(0, calibration.shape[0], batch_size):
            batch = calibration[start : start + batch_size]
            with contextlib.suppress(_Captured):
                model(input_ids=batch, attention_mask=torch.ones_like(batch), use_cache=False)
    finally:
        hook.remove()
    return stored


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def gptq_model(
    model: Any,
    calibration: torch.Tensor,
    block_size: int,
    *,
    symmetric: bool = False,
    percdamp: float = 0.01,
    batch_size: int = 8,
    act_order: bool = True,
    true_sequential: bool = True,
    on_layer: Callable[[str, torch.Tensor, QuantizedWeight, torch.Tensor], None] | None = None,
) -> dict[str, QuantizedWeight]:
    """GPTQ every decoder linear of ``model`` (a copy), layer after layer, on ``calibration`` token blocks.

    As in the reference code (``llama.py`` of Frantar et al.): the inputs of the first decoder
    layer are captured once; each layer in turn is calibrated on the outputs of the
    already-quantized layers before it. With ``true_sequential`` the linears of one layer are
    quantized in the order the layer computes them (:data:`SEQUENTIAL_STEPS`), each step's
    Hessian H = 2XXᵀ/n collected with the earlier steps already quantized; without it, all of
    a layer's Hessians come from one pass. ``act_order`` is the reference's ``desc_act``
    (see :func:`gptq_quantize`). The embedding and the LM head stay in floating point, as in
    the GPTQ and AWQ papers. ``on_layer(name, weight, quantized, hessian)`` sees every layer.
    Returns module name -> quantized weight. The input model is not modified.
    """
    work = copy.deepcopy(model).float().eval()
    layers = decoder_layers(work)
    prefix = next(n for n, m in work.named_modules() if m is layers)
    out: dict[str, QuantizedWeight] = {}
    inputs = _layer_inputs(work, layers[0], calibration, batch_size)
    for index, layer in enumerate(layers):
        modules = dict(layer.named_modules())
        steps = sequential_steps(layer)
        if not true_sequential:
            steps = [[n for step in steps for n in step]]
        for step in steps:
            acc = {name: HessianAccumulator(modules[name].in_features) for name in step}
            hooks = [
                modules[name].register_forward_pre_hook(lambda _m, args, h=acc[name]: h.add(args[0]))
                for name in step
            ]
            try:
                for args, kwargs in inputs:
                    layer(*args, **kwargs)
            finally:
                for hook in hooks:
                    hook.remove()
            for name in step:
                linear = modules[name]
                original = linear.weight.detach().clone()
                q = gptq_quantize(
                    original,
                    acc[name].h,
                    block_size,
                    symmetric=symmetric,
                    percdamp=percdamp,
                    act_order=act_order,
                )
                full = f"{prefix}.{index}.{name}"
                if on_layer is not None:
                    on_layer(full, original, q, acc[name].h)
                linear.weight.copy_(q.dequantize().to(linear.weight.dtype))
                out[full] = q
        inputs = [
            ((_hidden(layer(*args, **kwargs)), *args[1:]), kwargs)
            if args
            else ((), {**kwargs, "hidden_states": _hidden(layer(**kwargs))})
            for args, kwargs in inputs
        ]
    return out
