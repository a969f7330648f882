"""AWQ — activation-aware weight quantization (Lin et al., MLSys 2024), written from the paper.

No maintained AWQ library fits this environment: AutoAWQ (archived, 0.2.9) needs triton and
CUDA kernels and predates transformers 4.57; llmcompressor needs transformers 5. So this is
the published algorithm, for Llama-style decoder layers, in torch:

1. Run calibration blocks through the FP32 model and keep the inputs X of each group of
   linears that share an input: (q, k, v) after ``input_layernorm``; o after v; (gate, up)
   after ``post_attention_layernorm``; down after up.
2. Per input channel, the activation salience is ``mean |x|``. For α on a grid in [0, 1]
   the channel scales are ``s = mean|x|^α`` (normalised so max·min = 1); the group's weights
   become ``Q(W·diag(s))·diag(s)⁻¹`` with Q the group-wise INT4 round-to-nearest of
   :mod:`whylab.quant.int4`. α is chosen to minimise the mean squared error of the group's
   output on the calibration inputs (for gate/up: the whole MLP's output). α = 0 gives
   s = 1, i.e. plain RTN, so the chosen α is never worse than RTN on the calibration data.
3. The scales are folded in exactly: the linears' weights are multiplied by s (columns) and
   the preceding op divided by s (the RMSNorm weight, or the rows of v / up), so the FP32
   model computes the same function; only its *quantization* changes.

4. Weight clipping (the paper's §3.3, the reference code's ``auto_clip``): after scaling, for
   each output row and quantization group of every linear except q/k (their outputs meet in
   QKᵀ, which a per-linear error cannot see, as the reference notes), the weights are clamped
   to ±max|w|·(1 − i/n) for the i in [0, max_shrink·n) whose quantized group output on (a
   subsample of) the scaled calibration inputs is closest to the unquantized one. i = 0 is
   no clipping, so clipping never raises that calibration error either.

o-proj scaling is skipped when v's output width differs from o's input (grouped-query
attention), as in the reference code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from whylab.quant.int4 import fake_quantize, k_blocks

CLIP_SKIP = ("q_proj", "k_proj")  # the reference code's auto_clip skips them too


@dataclass
class ScaleGroup:
    """Linears sharing one input, the op before them that absorbs 1/s, and how to score a choice."""

    name: str
    linears: list[torch.nn.Linear]
    previous: torch.nn.Module  # RMSNorm (has .weight over channels) or nn.Linear (rows scaled)
    inputs: torch.Tensor  # (tokens, K) calibration inputs of the linears
    block: Callable[[torch.Tensor], torch.Tensor] | None = (
        None  # whole-block output, if wider than the linears
    )


@dataclass
class AwqResult:
    model: Any  # the FP32 model with the scales folded in (same function as the input model)
    alphas: dict[str, float] = field(default_factory=dict)
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # group -> {"rtn": e, "awq": e}
    clipped: dict[str, float] = field(default_factory=dict)  # linear -> share of (row, group) ranges cut


def channel_scales(inputs: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = mean|x|^α per input channel, normalised so that max(s)·min(s) = 1 (as the reference code)."""
    mean_abs = inputs.abs().reshape(-1, inputs.shape[-1]).float().mean(dim=0).clamp(min=1e-8)
    s = mean_abs.pow(alpha).clamp(min=1e-4)
    return s / torch.sqrt(s.max() * s.min())


def _group_output(group: ScaleGroup, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    originals = [lin.weight.data for lin in group.linears]
    try:
        for lin, w in zip(group.linears, weights, strict=True):
            lin.weight.data = w
        if group.block is not None:
            return group.block(group.inputs)
        return torch.cat(
            [torch.nn.functional.linear(group.inputs, lin.weight, lin.bias) for lin in group.linears], dim=-1
        )
    finally:
        for lin, w in zip(group.linears, originals, strict=True):
            lin.weight.data = w


Quantizer = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def search_scale(
    group: ScaleGroup,
    block_size: int,
    alphas: Sequence[float],
    *,
    symmetric: bool = False,
    quantizer: Quantizer | None = None,
) -> tuple[float, torch.Tensor, dict[float, float]]:
    """Grid search of α: returns (best α, its scales s, error for each α).

    ``quantizer`` maps a weight to its fake-quantized (quantize-dequantize) version; the
    default is group-wise INT4 RTN on ONNX Runtime's grid (what the variant then writes).
    """
    fq: Quantizer = quantizer or (lambda w: fake_quantize(w, block_size, symmetric))
    reference = _group_output(group, [lin.weight.data for lin in group.linears])
    errors: dict[float, float] = {}
    best: tuple[float, float, torch.Tensor] | None = None
    for alpha in alphas:
        s = channel_scales(group.inputs, float(alpha))
        trial = [fq(lin.weight.data.float() * s) / s for lin in group.linears]
        err = float(torch.mean((_group_output(group, trial) - reference) ** 2))
        errors[float(alpha)] = err
        if best is None or err < best[0]:
            best = (err, float(alpha), s)
    assert best is not None
    return best[1], best[2], errors


@torch.no_grad()
def search_clip(
    weight: torch.Tensor,
    inputs: torch.Tensor,
    block_size: int,
    *,
    n_grid: int = 20,
    max_shrink: float = 0.5,
    symmetric: bool = False,
    max_tokens: int = 512,
    row_chunk: int = 64,
) -> torch.Tensor:
    """The clipping bound per (output row, group) that best keeps each group's output: (N, k_blocks).

    For i in [0, max_shrink·n_grid) the weights are clamped to ±max|w|·(1 − i/n_grid) within
    the group, quantized, and the group's partial output Σ_k x_k w_k over the calibration
    tokens (every ``len/max_tokens``-th, as the reference subsamples) is compared with the
    unquantized one; the bound with the least mean squared error wins (i = 0: no clipping).
    """
    n, k = weight.shape
    kb = k_blocks(k, block_size)
    pad = kb * block_size - k
    x = inputs.reshape(-1, k).float()
    x = x[:: max(1, x.shape[0] // max_tokens)][:max_tokens]
    x = torch.nn.functional.pad(x, (0, pad)).view(-1, kb, block_size)
    w_all = torch.nn.functional.pad(weight.detach().float(), (0, pad)).view(n, kb, block_size)
    steps = max(1, int(max_shrink * n_grid))
    best_bounds = []
    for r0 in range(0, n, row_chunk):
        w = w_all[r0 : r0 + row_chunk]
        rows = w.shape[0]
        reference = torch.einsum("tgb,rgb->rtg", x, w)
        org_max = w.abs().amax(dim=-1, keepdim=True)
        best_err = torch.full((rows, kb), float("inf"))
        best = org_max.squeeze(-1).clone()
        for i in range(steps):
            bound = org_max * (1 - i / n_grid)
            clipped = torch.clamp(w, -bound, bound)
            q = fake_quantize(clipped.reshape(rows, -1), block_size, symmetric).view(rows, kb, block_size)
            err = (torch.einsum("tgb,rgb->rtg", x, q) - reference).pow(2).mean(dim=1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, bound.squeeze(-1), best)
        best_bounds.append(best)
    return torch.cat(best_bounds)


def apply_clip(linear: torch.nn.Linear, bounds: torch.Tensor, block_size: int) -> float:
    """Clamp ``linear``'s weight group-wise to ±bounds (N, k_blocks); returns the share of ranges cut."""
    n, k = linear.weight.shape
    kb = bounds.shape[1]
    pad = kb * block_size - k
    w = torch.nn.functional.pad(linear.weight.data.float(), (0, pad)).view(n, kb, block_size)
    before = w.abs().amax(dim=-1)
    w = torch.clamp(w, -bounds[..., None], bounds[..., None])
    linear.weight.data.copy_(w.reshape(n, -1)[:, :k].to(linear.weight.dtype))
    return float((bounds < before).float().mean())


def apply_scale(group: ScaleGroup, s: torch.Tensor) -> None:
    """Fold s in exactly: linears' columns × s, the previous op ÷ s."""
    prev = group.previous
    if isinstance(prev, torch.nn.Linear):
        prev.weight.data.div_(s[:, None])
        if prev.bias is not None:
            prev.bias.data.div_(s)
    else:
        norm_weight: torch.Tensor = getattr(prev, "weight")  # noqa: B009 (an RMSNorm's; nn.Module does not declare it)
        norm_weight.data.div_(s)
    for lin in group.linears:
        lin.weight.data.mul_(s[None, :])


def _decoder_layers(model: Any) -> Sequence[Any]:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError("AWQ here supports Llama-style models (model.model.layers)")
    needed = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
        "input_layernorm",
        "post_attention_layernorm",
    )
    names = {n for n, _ in layers[0].named_modules()}
    missing = [n for n in needed if n not in names]
    if missing:
        raise ValueError(f"AWQ here supports Llama-style decoder layers; missing {', '.join(missing)}")
    return layers


@torch.no_grad()
def collect_inputs(model: Any, calibration: torch.Tensor, batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Inputs of every q/o/gate/down projection over the calibration blocks, (tokens, K) each."""
    layers = _decoder_layers(model)
    taps = {}
    for i, layer in enumerate(layers):
        for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            taps[f"{i}.{name}"] = layer.get_submodule(name)
    store: dict[str, list[torch.Tensor]] = {k: [] for k in taps}
    hooks = [
        mod.register_forward_pre_hook(
            lambda _m, args, key=key: store[key].append(
                args[0].detach().reshape(-1, args[0].shape[-1]).float()
            )
        )
        for key, mod in taps.items()
    ]
    try:
        for start in range(0, calibration.shape[0], batch_size):
            batch = calibration[start : start + batch_size]
            model(input_ids=batch, attention_mask=torch.ones_like(batch), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return {k: torch.cat(v) for k, v in store.items()}


@torch.no_grad()
def awq(
    model: Any,
    calibration: torch.Tensor,
    block_size: int,
    *,
    alpha_grid: int = 11,
    symmetric: bool = False,
    batch_size: int = 8,
    clip_grid: int = 20,
    clip_max_shrink: float = 0.5,
) -> AwqResult:
    """Search and fold AWQ scales, then search and apply weight clipping, in a copy of ``model``.

    Quantize the result with RTN afterwards (``clip_grid=0`` leaves clipping out).
    """
    work = copy.deepcopy(model).float().eval()
    layers = _decoder_layers(work)
    inputs = collect_inputs(work, calibration, batch_size)
    alphas = [i / (alpha_grid - 1) for i in range(alpha_grid)]
    result = AwqResult(model=work)
    for i, layer in enumerate(layers):
        attn, mlp = layer.self_attn, layer.mlp
        groups = [
            ScaleGroup(
                f"layers.{i}.qkv",
                [attn.q_proj, attn.k_proj, attn.v_proj],
                layer.input_layernorm,
                inputs[f"{i}.self_attn.q_proj"],
            )
        ]
        if attn.v_proj.out_features == attn.o_proj.in_features:
            groups.append(
                ScaleGroup(f"layers.{i}.o", [attn.o_proj], attn.v_proj, inputs[f"{i}.self_attn.o_proj"])
            )
        groups.append(
            ScaleGroup(
                f"layers.{i}.gate_up",
                [mlp.gate_proj, mlp.up_proj],
                layer.post_attention_layernorm,
                inputs[f"{i}.mlp.gate_proj"],
                block=mlp,
            )
        )
        groups.append(
            ScaleGroup(f"layers.{i}.down", [mlp.down_proj], mlp.up_proj, inputs[f"{i}.mlp.down_proj"])
        )
        for group in groups:
            alpha, s, errors = search_scale(group, block_size, alphas, symmetric=symmetric)
            apply_scale(group, s)
            result.alphas[group.name] = alpha
            result.errors[group.name] = {"rtn": errors[0.0], "awq": errors[alpha]}
        if clip_grid > 0:
            # as the reference: after every scale of the layer is folded in, on the scaled inputs
            for group in groups:
                scaled = group.inputs / channel_scales(group.inputs, result.alphas[group.name])
                for lin in group.linears:
                    name = next(n for n, m in layer.named_modules() if m is lin)
                    if name.rsplit(".", 1)[-1] in CLIP_SKIP:
                        continue
                    bounds = search_clip(
                        lin.weight.data,
                        scaled,
                        block_size,
                        n_grid=clip_grid,
                        max_shrink=clip_max_shrink,
                        symmetric=symmetric,
                    )
                    result.clipped[f"layers.{i}.{name}"] = apply_clip(lin, bounds, block_size)
    return result
