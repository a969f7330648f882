"""C16's definition check: does SmoothQuant's smoothing factor take the activation *function* into account?

On someone else's implementation (torchao 0.18's ``torchao.prototype.smoothquant``): the trained
LM with its MLP activation swapped to SiLU, GELU and ReLU (``config.hidden_act`` and every
``mlp.act_fn``, weights unchanged). torchao's observer is attached to each layer's ``q_proj``
(fed by the RMSNorm: the paper's smoothed input) and ``down_proj`` (fed by the activation
function), the model runs on the calibration blocks, and its smoothing factors are read back.
Four numbers:

- ``formula_max_rel_err``: torchao's factors against s_j = (max|X_j| + ε)^α / (max|W_j| + ε)^(1−α)
  computed from the recorded inputs' absolute maxima alone;
- ``swap_max_rel_diff``: an observer on the SiLU model's ``down_proj`` given the GELU (then ReLU)
  model's recorded inputs returns that model's factors (the function is not an input of the factor);
- ``norm_fed_first_layer_max_rel_diff``: layer 0's ``q_proj`` factors across functions (its inputs
  precede every MLP, so the same statistics: the same factors under three functions);
- ``down_max_rel_diff``: ``down_proj`` factors across functions (the functions change the
  statistics, so the check could have seen the function's effect).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

FUNCTIONS = ("silu", "gelu", "relu")
OBSERVED = ("self_attn.q_proj", "mlp.down_proj")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())


def observe(model: Any, function: str, calib: torch.Tensor, alpha: float) -> dict[str, Any]:
    """A copy of ``model`` with ``function`` as its MLP activation, torchao's SmoothQuant observers
    on ``OBSERVED``, run on ``calib``: module name -> its observer."""
    from torchao.prototype.smoothquant import SmoothQuantConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    from transformers.activations import ACT2FN

    work = copy.deepcopy(model).float().eval()
    work.config.hidden_act = function
    for layer in work.model.layers:
        layer.mlp.act_fn = ACT2FN[function]
    config = SmoothQuantConfig(Int8DynamicActivationInt8WeightConfig(), step="prepare", alpha=alpha)
    quantize_(
        work, config, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn.endswith(OBSERVED)
    )
    with torch.no_grad():
        work(input_ids=calib, attention_mask=torch.ones_like(calib), use_cache=False)
    return {n: m.obs for n, m in work.named_modules() if hasattr(m, "obs")}


def _formula(obs: Any, alpha: float) -> torch.Tensor:
    x = torch.cat([i.reshape(-1, i.shape[-1]) for i in obs.inputs]).abs().amax(dim=0)
    w = obs.weight.detach().abs().amax(dim=0)
    eps = torch.finfo(torch.float32).eps
    return (x + eps) ** alpha / (w + eps) ** (1 - alpha)


def activation_swap_check(model: Any, calib: torch.Tensor, alpha: float) -> dict[str, Any]:
    """torchao's smoothing factors on ``model`` under SiLU, GELU and ReLU (see the module docstring)."""
    observers = {f: observe(model, f, calib, alpha) for f in FUNCTIONS}
    factors = {f: {n: o.calculate_qparams()[0] for n, o in obs.items()} for f, obs in observers.items()}
    names = sorted(factors[FUNCTIONS[0]])
    formula = max(_rel(factors[f][n], _formula(observers[f][n], alpha)) for f in FUNCTIONS for n in names)
    first_q = next(n for n in names if n.endswith("layers.0.self_attn.q_proj"))
    downs = [n for n in names if n.endswith("mlp.down_proj")]
    base = FUNCTIONS[0]
    swap = 0.0
    for f in FUNCTIONS[1:]:
        for n in downs:
            probe = copy.copy(observers[base][n])
            probe.inputs = observers[f][n].inputs  # the other model's statistics, this model's weight
            swap = max(swap, _rel(probe.calculate_qparams()[0], factors[f][n]))
    by_function = {
        f: {"down_absmax_max": max(float(_formula(observers[f][n], 1.0).max()) for n in downs)}
        for f in FUNCTIONS
    }
    return {
        "implementation": "torchao.prototype.smoothquant.SmoothQuantObserver",
        "functions": list(FUNCTIONS),
        "alpha": alpha,
        "observed_modules": len(names),
        "formula_max_rel_err": formula,
        "swap_max_rel_diff": swap,
        "norm_fed_first_layer_max_rel_diff": max(
            _rel(factors[f][first_q], factors[base][first_q]) for f in FUNCTIONS[1:]
        ),
        "down_max_rel_diff": max(_rel(factors[f][n], factors[base][n]) for f in FUNCTIONS[1:] for n in downs),
        "by_function": by_function,
    }
