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

ONNX Runtime ships a GPTQ config too (Intel Neural Compressor's code); we write our own because
(1) ORT's collects every layer's inputs from the unquantized model (not sequentially),
(2) it re-rounds GPTQ's result onto a fresh min/max grid when packing (a second rounding), and
(3) on layers whose K/block_size is odd it crashes while packing zero points. Tests compare this
implementation with ORT's ``gptq()`` on the same W and H.
"""

from __future__ import annotations

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


def gptq_quantize(
    weight: torch.Tensor,
    h: torch.Tensor,
    block_size: int,
    *,
    symmetric: bool = False,
    percdamp: float = 0.01,
    lazy_columns: int = 128,
) -> QuantizedWeight:
    """Quantize one (N, K) weight with GPTQ given the Hessian ``h`` (K, K) of its inputs.

    ``block_size`` is the quantization group along K (each group's scale/zero point is set
    from the group's error-updated weights when GPTQ reaches its first column);
    ``lazy_columns`` is the paper's lazy-batch width, rounded to a multiple of the group so
    a group never straddles two batches. ``percdamp`` adds λ = percdamp · mean(diag H) to the
    diagonal (the paper's dampening) so H is safely invertible.
    """
    w = weight.detach().double().clone()
    n, k = w.shape
    h = h.detach().double().clone()
    if h.shape != (k, k):
        raise ValueError(f"Hessian is {tuple(h.shape)}, the weight has K={k}")
    dead = torch.diag(h) == 0  # inputs that are always zero carry no information
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    damp = percdamp * torch.mean(torch.diag(h))
    h += damp * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)

    kb = k_blocks(k, block_size)
    codes = torch.zeros(n, kb * block_size, dtype=torch.float64)
    scales = torch.zeros(n, kb, dtype=torch.float64)
    zps = torch.zeros(n, kb, dtype=torch.float64)
    if symmetric:
        zps.fill_(8.0)
    lazy = max(block_size, (lazy_columns // block_size) * block_size)
    for i1 in range(0, k, lazy):
        i2 = min(i1 + lazy, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            g = col // block_size
            if col % block_size == 0:
                scale, zp = group_params(w1[:, i : i + block_size], symmetric)
                scales[:, g], zps[:, g] = scale.double(), zp.double()
            scale, zp = scales[:, g], zps[:, g]
            col_w = w1[:, i]
            code = torch.clamp(torch.round(col_w / scale) + zp, 0, MAXQ)
            q = (code - zp) * scale
            codes[:, col] = code
            err = (col_w - q) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    for col in range(k, kb * block_size):  # padding columns stand for 0
        codes[:, col] = zps[:, col // block_size]
    return QuantizedWeight(
        codes=codes.to(torch.uint8).numpy(),
        scales=scales.float().numpy().astype(np.float32),
        zero_points=zps.to(torch.uint8).numpy(),
        k=k,
        block_size=block_size,
        symmetric=symmetric,
    )


def layer_error(weight: torch.Tensor, q: QuantizedWeight, h: torch.Tensor) -> float:
    """tr((W−Q) H (W−Q)ᵀ) / N: the mean squared output error GPTQ minimises, on the calibration inputs."""
    delta = weight.detach().double() - q.dequantize().double()
    return float(torch.einsum("nk,kl,nl->", delta, h.double(), delta) / delta.shape[0])


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


def _forward(model: Any, blocks: torch.Tensor, batch_size: int) -> None:
    for start in range(0, blocks.shape[0], batch_size):
        batch = blocks[start : start + batch_size]
        model(input_ids=batch, attention_mask=torch.ones_like(batch), use_cache=False)


@torch.no_grad()
def gptq_model(
    model: Any,
    calibration: torch.Tensor,
    block_size: int,
    *,
    symmetric: bool = False,
    percdamp: float = 0.01,
    batch_size: int = 8,
    on_layer: Callable[[str, torch.Tensor, QuantizedWeight, torch.Tensor], None] | None = None,
) -> dict[str, QuantizedWeight]:
    """GPTQ every nn.Linear of ``model`` (a copy), layer after layer, on ``calibration`` token blocks.

    For each decoder layer in turn, the calibration blocks are run through the model whose
    earlier layers already hold their quantized weights; hooks collect H = 2XXᵀ/n for each of
    the layer's linears; each is then quantized and its weight replaced by the dequantized
    result, so the next layer is calibrated on what the quantized model really computes.
    ``on_layer(name, weight, quantized, hessian)`` sees every layer (for diagnostics).
    Returns module name -> quantized weight. The input model is not modified.
    """
    work = copy.deepcopy(model).float().eval()
    modules = dict(work.named_modules())
    out: dict[str, QuantizedWeight] = {}
    for group in linear_order(work):
        acc = {name: HessianAccumulator(modules[name].in_features) for name in group}
        hooks = [
            modules[name].register_forward_pre_hook(lambda _m, args, h=acc[name]: h.add(args[0]))
            for name in group
        ]
        try:
            _forward(work, calibration, batch_size)
        finally:
            for hook in hooks:
                hook.remove()
        for name in group:
            linear = modules[name]
            original = linear.weight.detach().clone()
            q = gptq_quantize(original, acc[name].h, block_size, symmetric=symmetric, percdamp=percdamp)
            if on_layer is not None:
                on_layer(name, original, q, acc[name].h)
            linear.weight.copy_(q.dequantize().to(linear.weight.dtype))
            out[name] = q
    return out
