"""W8A8 fake quantization (weights and activations to symmetric INT8, simulated in float) of a
decoder's linear layers: what SmoothQuant (:mod:`whylab.quant.smoothquant`) is measured with."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from whylab.errors import InputError

ACT_SCHEMES = ("per_tensor_static", "per_tensor_dynamic", "per_token_dynamic")
QMAX = 127  # symmetric INT8: integers in [-127, 127]
EPS = 1e-5  # the reference implementation's floor for scales


def decoder_linears(model: nn.Module) -> list[str]:
    """Qualified names of every nn.Linear inside the decoder layers (not the LM head)."""
    return [
        name for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and ".layers." in f".{name}"
    ]


def quantize_weight_per_channel(w: torch.Tensor) -> torch.Tensor:
    """Symmetric INT8 per output channel (row), returned dequantized (fake quantization)."""
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=EPS) / QMAX
    return torch.clamp(torch.round(w / scale), -QMAX, QMAX) * scale


def quantize_activation(x: torch.Tensor, scheme: str, static_absmax: float | None = None) -> torch.Tensor:
    """Symmetric INT8 fake quantization of a layer input.

    per_tensor_dynamic: one scale for the whole tensor, from its own max |x|;
    per_token_dynamic: one scale per token (row); per_tensor_static: one scale fixed
    from calibration, values beyond it are clipped (the paper's fastest setting, O3).
    """
    if scheme == "per_token_dynamic":
        absmax = x.abs().amax(dim=-1, keepdim=True)
    elif scheme == "per_tensor_dynamic":
        absmax = x.abs().amax()
    elif scheme == "per_tensor_static":
        if static_absmax is None:
            raise ValueError("per_tensor_static needs a calibrated absmax")
        absmax = torch.tensor(static_absmax, dtype=x.dtype, device=x.device)
    else:
        raise InputError(f"smoothquant.act_schemes: {scheme!r} is not one of {', '.join(ACT_SCHEMES)}")
    scale = absmax.clamp(min=EPS) / QMAX
    return torch.clamp(torch.round(x / scale), -QMAX, QMAX) * scale


class W8A8Linear(nn.Module):
    """nn.Linear with INT8 per-channel weights and INT8 activations, simulated in float."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, scheme: str, static_absmax: float | None = None) -> None:
        super().__init__()
        if scheme not in ACT_SCHEMES:
            raise InputError(f"smoothquant.act_schemes: {scheme!r} is not one of {', '.join(ACT_SCHEMES)}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.scheme = scheme
        self.static_absmax = static_absmax
        self.register_buffer("weight", quantize_weight_per_channel(linear.weight.detach().clone()))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(quantize_activation(x, self.scheme, self.static_absmax), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, act={self.scheme}"


def quantize_w8a8(
    model: nn.Module, scheme: str, act_stats: Mapping[str, torch.Tensor] | None = None
) -> nn.Module:
    """A copy of ``model`` with every decoder linear layer replaced by a W8A8Linear.

    Embeddings, norms, attention's softmax/matmuls and the LM head stay in float32
    (the reference code's ``quantize_llama_like`` keeps the same set in high precision).
    ``act_stats`` (per-channel input absmax) gives the static per-tensor scales.
    """
    if scheme == "per_tensor_static" and act_stats is None:
        raise ValueError("per_tensor_static needs calibration statistics")
    out = copy.deepcopy(model)
    for name in decoder_linears(out):
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name)
        static = float(act_stats[name].max()) if scheme == "per_tensor_static" and act_stats else None
        setattr(parent, attr, W8A8Linear(getattr(parent, attr), scheme, static))
    return out
