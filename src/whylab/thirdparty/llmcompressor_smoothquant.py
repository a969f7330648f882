"""C16's cross-check on llmcompressor's SmoothQuantModifier, as installed (runs in ``.venv-llmc``).

The trained LM with its MLP activation swapped to SiLU, GELU and ReLU (``config.hidden_act`` and
every ``mlp.act_fn``, weights unchanged) is smoothed by llmcompressor's ``oneshot`` with a
``SmoothQuantModifier`` (α = ``alpha``) on the calibration blocks, with its default Llama mappings
(``input_layernorm`` → q/k/v, ``post_attention_layernorm`` → gate/up) and one more, ``up_proj`` →
``down_proj``, so that the input the activation function feeds is smoothed too. The
``basic`` pipeline calibrates on the FP model in one pass, so the statistics it sees are the ones
recorded here. llmcompressor's factors are read back from what it did to the weights (it divides
each smooth layer's output channels by s_j and multiplies the balance layers' input columns by
s_j): s_j = least squares of W_after[:, j] on W_before[:, j] of the first balance layer.

Checked, as ``whylab.concepts.c16_smoothquant.definition`` does for torchao:

- ``formula_max_rel_err``: the factors against llmcompressor's formula on the smooth layer's
  recorded outputs: s_j = (max X_j − min X_j)^α / (2·max_balance max|W_j|)^(1−α) (clamped below
  at 1e-5), the channel's range and twice the weight maximum where Eq. 4 of the paper has max|X_j|
  and max|W_j|; ``paper_formula_max_rel_diff`` gives how far that is from Eq. 4;
- ``norm_fed_first_layer_max_rel_diff``: layer 0's ``input_layernorm`` factors across functions
  (their inputs precede every MLP: same statistics, so the same factors);
- ``down_max_rel_diff``: the ``up_proj`` → ``down_proj`` factors across functions (its statistic is
  ``up_proj``'s output, the activation function's other factor; from layer 1 on the functions
  change it through the residual stream).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from whylab.thirdparty.llmcompressor_gptq import calibration_dataset

FUNCTIONS = ("silu", "gelu", "relu")
# (balance layers, smooth layer): llmcompressor's default Llama mappings, then the activation's input
MAPPINGS = [
    (["re:.*q_proj", "re:.*k_proj", "re:.*v_proj"], "re:.*input_layernorm"),
    (["re:.*gate_proj", "re:.*up_proj"], "re:.*post_attention_layernorm"),
    (["re:.*down_proj"], "re:.*up_proj"),
]
# per decoder layer: smooth layer -> its balance layers
SMOOTHS = {
    "input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj"),
    "mlp.up_proj": ("mlp.down_proj",),
}
MIN_SCALE = 1e-5  # llmcompressor's MINIMUM_SMOOTHING_SCALE


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())


def swapped(model: Any, function: str) -> Any:
    from transformers.activations import ACT2FN

    work = copy.deepcopy(model).float().eval()
    work.config.hidden_act = function
    for layer in work.model.layers:
        layer.mlp.act_fn = ACT2FN[function]
    return work


def smooth_once(model: Any, blocks: torch.Tensor, alpha: float) -> dict[str, dict[str, torch.Tensor]]:
    """llmcompressor's smoothing of ``model`` (in place): per smoothed module, the factors read back
    from the weights, the recorded output range and max |W_j| of its balance layers before smoothing."""
    from llmcompressor import oneshot
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    modules = dict(model.named_modules())
    balance = {
        f"model.layers.{i}.{smooth}": [f"model.layers.{i}.{b}" for b in targets]
        for i in range(len(model.model.layers))
        for smooth, targets in SMOOTHS.items()
    }
    names = list(balance)
    before = {n: modules[balance[n][0]].weight.detach().clone() for n in names}
    w_max = {
        n: torch.stack([modules[b].weight.detach().abs().amax(dim=0) for b in balance[n]]).amax(dim=0)
        for n in names
    }
    lo: dict[str, torch.Tensor] = {}
    hi: dict[str, torch.Tensor] = {}

    def record(name: str) -> Any:
        def hook(_m: Any, _args: Any, out: torch.Tensor) -> None:
            flat = out.detach().reshape(-1, out.shape[-1])
            lo[name] = torch.minimum(lo[name], flat.amin(0)) if name in lo else flat.amin(0)
            hi[name] = torch.maximum(hi[name], flat.amax(0)) if name in hi else flat.amax(0)

        return hook

    hooks = [modules[n].register_forward_hook(record(n)) for n in names]
    try:
        oneshot(
            model=model,
            dataset=calibration_dataset(blocks),
            recipe=SmoothQuantModifier(smoothing_strength=alpha, mappings=[list(m) for m in MAPPINGS]),
            num_calibration_samples=int(blocks.shape[0]),
            max_seq_length=int(blocks.shape[1]),
            shuffle_calibration_samples=False,
            pipeline="basic",
        )
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for n in names:
        w0, w1 = before[n].double(), modules[balance[n][0]].weight.detach().double()
        out[n] = {
            "factors": ((w1 * w0).sum(0) / (w0 * w0).sum(0)).float(),
            "range": hi[n] - lo[n],
            "absmax": torch.maximum(hi[n].abs(), lo[n].abs()),
            "w_max": w_max[n],
        }
    return out


def llmc_formula(rec: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:
    w = 2.0 * rec["w_max"]
    s = rec["range"].pow(alpha) / w.pow(1 - alpha)
    return torch.where(w > 0, s, rec["range"]).clamp_min(MIN_SCALE)


def paper_formula(rec: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:
    return rec["absmax"].pow(alpha) / rec["w_max"].pow(1 - alpha)


def smoothquant_check(model: Any, blocks: torch.Tensor, alpha: float) -> dict[str, Any]:
    """llmcompressor's smoothing factors under SiLU, GELU and ReLU (see the module docstring)."""
    runs = {f: smooth_once(swapped(model, f), blocks, alpha) for f in FUNCTIONS}
    base = FUNCTIONS[0]
    names = sorted(runs[base])
    first = "model.layers.0.input_layernorm"
    downs = [n for n in names if n.endswith("mlp.up_proj")]
    formula = max(
        _rel(runs[f][n]["factors"], llmc_formula(runs[f][n], alpha)) for f in FUNCTIONS for n in names
    )
    paper = max(
        _rel(runs[f][n]["factors"], paper_formula(runs[f][n], alpha)) for f in FUNCTIONS for n in names
    )
    return {
        "implementation": "llmcompressor SmoothQuantModifier (oneshot, basic pipeline)",
        "ran": True,
        "modified": False,
        "functions": list(FUNCTIONS),
        "alpha": alpha,
        "mappings": [[list(b), s] for b, s in MAPPINGS],
        "smoothed_modules": len(names),
        "formula_max_rel_err": formula,
        "paper_formula_max_rel_diff": paper,
        "norm_fed_first_layer_max_rel_diff": max(
            _rel(runs[f][first]["factors"], runs[base][first]["factors"]) for f in FUNCTIONS[1:]
        ),
        "down_max_rel_diff": max(
            _rel(runs[f][n]["factors"], runs[base][n]["factors"]) for f in FUNCTIONS[1:] for n in downs
        ),
        "down_first_layer_max_rel_diff": max(
            _rel(runs[f][downs[0]]["factors"], runs[base][downs[0]]["factors"]) for f in FUNCTIONS[1:]
        ),
    }
