"""SmoothQuant (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training
Quantization for Large Language Models") on a transformers ``LlamaForCausalLM``, in torch.

Why it is written here: the maintained implementations do not fit this environment
(neural-compressor needs numpy < 2, llmcompressor needs transformers 5.x), so this module
implements the published algorithm and the tests check it against the paper's properties.

What the paper computes. A linear layer ``Y = X W^T`` is rewritten, exactly, as
``Y = (X diag(s)^-1) (W diag(s))^T``. For every input channel ``j``::

    s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)

where ``max|X_j|`` is the channel's absolute maximum over calibration tokens and
``max|W_j|`` the absolute maximum of weight column ``j`` over every linear layer that
reads the same input. ``alpha`` sets how much of the activations' outlier "difficulty"
moves into the weights (0: none moves and the weight columns are normalised to max 1;
1: all of it, every activation channel then peaks at 1). ``1/s`` is folded into whatever
produces the input (an RMSNorm's weight, or the output rows of the previous linear
layer), ``s`` into the consuming weights, so the smoothed model computes the same function
in floating point and costs nothing at run time. Only then are weights and activations
quantized to INT8 (W8A8), here as fake quantization (quantize, then dequantize).

Which inputs are smoothed in a Llama decoder layer (each fold is exact):

- ``attn_in``: q/k/v_proj read ``input_layernorm``'s output -> 1/s into the norm weight.
- ``mlp_in``: gate/up_proj read ``post_attention_layernorm``'s output -> 1/s into the norm.
- ``attn_out``: o_proj reads the attention output, which is linear in v_proj's output
  channel by channel -> 1/s into v_proj's output rows (with grouped-query attention one
  v channel feeds several heads, so those o_proj channels share one factor).
- ``mlp_down``: down_proj reads ``act(gate) * up``, linear in up_proj's output -> 1/s into
  up_proj's output rows.

The paper (and llmcompressor's default mapping) smooths the two norm-fed groups; the
two linear-fed folds are the same algorithm applied where the architecture makes it free.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from whylab.errors import InputError
from whylab.quant.w8a8 import (  # re-exported: SmoothQuant's users quantize with them
    ACT_SCHEMES as ACT_SCHEMES,
)
from whylab.quant.w8a8 import EPS, decoder_linears
from whylab.quant.w8a8 import W8A8Linear as W8A8Linear
from whylab.quant.w8a8 import quantize_activation as quantize_activation
from whylab.quant.w8a8 import quantize_w8a8 as quantize_w8a8
from whylab.quant.w8a8 import quantize_weight_per_channel as quantize_weight_per_channel

GROUP_KINDS = ("attn_in", "attn_out", "mlp_in", "mlp_down")


@dataclass(frozen=True)
class SmoothGroup:
    """Linear layers that read one input, and the module that produces that input."""

    name: str  # e.g. "model.layers.2.mlp_in"
    kind: str  # one of GROUP_KINDS
    linears: tuple[str, ...]  # qualified module names of the consumers
    source: str  # qualified name of the RMSNorm or nn.Linear that the 1/s is folded into
    kv_groups: int = 1  # attn_out only: attention heads per key/value head (GQA)


def smooth_groups(model: nn.Module, kinds: Iterable[str] = GROUP_KINDS) -> list[SmoothGroup]:
    """The smoothable groups of a Llama-style decoder, in layer order."""
    kinds = list(kinds)
    bad = [k for k in kinds if k not in GROUP_KINDS]
    if bad:
        raise InputError(f"smoothquant.groups: unknown group(s) {bad} (allowed: {list(GROUP_KINDS)})")
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise InputError("SmoothQuant here needs a Llama-style model (model.model.layers)")
    config: Any = getattr(model, "config")  # noqa: B009 (nn.Module does not declare it)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    groups: list[SmoothGroup] = []
    for i, layer in enumerate(layers):
        p = f"model.layers.{i}"
        needed = ("input_layernorm", "post_attention_layernorm", "self_attn", "mlp")
        if not all(hasattr(layer, n) for n in needed):
            raise InputError(f"layer {i} is not Llama-style (needs {', '.join(needed)})")
        for kind in kinds:
            if kind == "attn_in":
                groups.append(
                    SmoothGroup(
                        f"{p}.attn_in",
                        kind,
                        (f"{p}.self_attn.q_proj", f"{p}.self_attn.k_proj", f"{p}.self_attn.v_proj"),
                        f"{p}.input_layernorm",
                    )
                )
            elif kind == "mlp_in":
                groups.append(
                    SmoothGroup(
                        f"{p}.mlp_in",
                        kind,
                        (f"{p}.mlp.gate_proj", f"{p}.mlp.up_proj"),
                        f"{p}.post_attention_layernorm",
                    )
                )
            elif kind == "attn_out":
                groups.append(
                    SmoothGroup(
                        f"{p}.attn_out",
                        kind,
                        (f"{p}.self_attn.o_proj",),
                        f"{p}.self_attn.v_proj",
                        heads // kv_heads,
                    )
                )
            elif kind == "mlp_down":
                groups.append(SmoothGroup(f"{p}.mlp_down", kind, (f"{p}.mlp.down_proj",), f"{p}.mlp.up_proj"))
    return groups


@torch.no_grad()
def collect_act_absmax(
    model: nn.Module,
    blocks: torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    batch_size: int = 8,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """Per-input-channel max |x| over every calibration token, for each named linear layer.

    This is the paper's calibration step (and the reference code's ``get_act_scales``):
    forward hooks record the running channel-wise absolute maximum of each layer's input.
    """
    names = list(names) if names is not None else decoder_linears(model)
    modules = dict(model.named_modules())
    stats: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_mod: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            cur = x.reshape(-1, x.shape[-1]).abs().amax(dim=0).float().cpu()
            stats[name] = cur if name not in stats else torch.maximum(stats[name], cur)

        return record

    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, blocks.shape[0], batch_size):
            batch = blocks[start : start + batch_size].to(device)
            model(input_ids=batch, attention_mask=torch.ones_like(batch))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return stats


def weight_absmax(model: nn.Module, group: SmoothGroup) -> torch.Tensor:
    """max |W_j| per input channel j over all of the group's consumer weights."""
    modules = dict(model.named_modules())
    cols = torch.stack([modules[n].weight.detach().abs().amax(dim=0).float().cpu() for n in group.linears])
    return cols.amax(dim=0)


def smoothing_factors(act_absmax: torch.Tensor, w_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha), floored at 1e-5 as in the reference code."""
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"smoothquant.alphas: {alpha} is outside [0, 1]")
    return (act_absmax.pow(alpha) / w_absmax.clamp(min=EPS).pow(1.0 - alpha)).clamp(min=EPS)


def _kv_heads(model: nn.Module) -> int:
    config: Any = getattr(model, "config")  # noqa: B009 (nn.Module does not declare it)
    return int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)


def _shared_over_heads(values: torch.Tensor, kv_groups: int, kv_heads: int) -> torch.Tensor:
    """Max over the attention heads that share one key/value head, expanded back.

    o_proj's input channel (head h, dim d) comes from v channel (h // kv_groups, d), so
    with grouped-query attention one factor must serve every head of a group.
    """
    if kv_groups == 1:
        return values
    head_dim = values.numel() // (kv_heads * kv_groups)
    shared = values.view(kv_heads, kv_groups, head_dim).amax(dim=1)
    return shared.unsqueeze(1).expand(kv_heads, kv_groups, head_dim).reshape(-1)


def group_factors(
    model: nn.Module, groups: Sequence[SmoothGroup], act_stats: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """Smoothing factors s (one per input channel of the consumers) for every group."""
    out: dict[str, torch.Tensor] = {}
    for g in groups:
        a = act_stats[g.linears[0]]
        w = weight_absmax(model, g)
        if g.kv_groups > 1:
            kv_heads = _kv_heads(model)
            a = _shared_over_heads(a, g.kv_groups, kv_heads)
            w = _shared_over_heads(w, g.kv_groups, kv_heads)
        out[g.name] = smoothing_factors(a, w, alpha)
    return out


@torch.no_grad()
def apply_smoothing(
    model: nn.Module, groups: Sequence[SmoothGroup], factors: Mapping[str, torch.Tensor]
) -> None:
    """Fold 1/s into each group's source and s into its consumers, in place.

    The result computes the same function as before (up to float rounding).
    """
    modules = dict(model.named_modules())
    for g in groups:
        s = factors[g.name]
        for n in g.linears:
            lin = modules[n]
            lin.weight.mul_(s.to(lin.weight).view(1, -1))
        src = modules[g.source]
        if isinstance(src, nn.Linear):
            inv = s
            if g.kv_groups > 1:  # one factor per v channel: take one head of each group
                kv_heads = _kv_heads(model)
                inv = s.view(kv_heads, g.kv_groups, -1)[:, 0, :].reshape(-1)
            src.weight.div_(inv.to(src.weight).view(-1, 1))
            if src.bias is not None:
                src.bias.div_(inv.to(src.bias))
        else:  # RMSNorm: y = weight * normalize(x); bias too if a norm has one
            src.weight.div_(s.to(src.weight))
            bias = getattr(src, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias.div_(s.to(bias))


def smoothed_copy(
    model: nn.Module, groups: Sequence[SmoothGroup], act_stats: Mapping[str, torch.Tensor], alpha: float
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A deep copy of ``model`` with SmoothQuant applied at ``alpha``, and the factors used.

    v_proj and up_proj are consumers in one group (attn_in, mlp_in: their columns) and
    sources in another (attn_out, mlp_down: their rows). The row folds go first, so the
    column groups' max|W_j| are those of the weights that will really be quantized; the
    activation statistics need no update, since each fold leaves the other groups' inputs
    unchanged.
    """
    smoothed = copy.deepcopy(model)
    factors: dict[str, torch.Tensor] = {}
    for g in sorted(groups, key=lambda g: g.kind not in ("attn_out", "mlp_down")):
        f = group_factors(smoothed, [g], act_stats, alpha)
        apply_smoothing(smoothed, [g], f)
        factors.update(f)
    return smoothed, factors


def smoothed_act_stats(
    groups: Sequence[SmoothGroup], act_stats: Mapping[str, torch.Tensor], factors: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per-channel input absmax of every linear after smoothing: max|X_j / s_j| = max|X_j| / s_j.

    Exact for the same calibration tokens (s is positive and constant per channel), so
    static scales and outlier ratios after smoothing need no second calibration pass.
    """
    out = dict(act_stats)
    for g in groups:
        for n in g.linears:
            out[n] = act_stats[n] / factors[g.name]
    return out


def outlier_ratio(channel_absmax: torch.Tensor) -> float:
    """max_j / median_j of the per-channel absmax: how far the worst channel sticks out."""
    med = float(channel_absmax.median())
    return float(channel_absmax.max()) / max(med, 1e-12)


# ------------------------------------------------------- outlier channels, as large LLMs have


def norm_fed_groups(groups: Sequence[SmoothGroup]) -> list[SmoothGroup]:
    """The groups whose input is an RMSNorm output (q/k/v and gate/up)."""
    return [g for g in groups if g.kind in ("attn_in", "mlp_in")]


def strongest_norm_channels(model: nn.Module, n: int) -> list[int]:
    """The ``n`` hidden channels with the largest mean |RMSNorm weight| over all layers.

    Chosen from the weights alone (no data), so the choice does not peek at validation text.
    """
    weights = [
        mod.weight.detach().abs().float().cpu()
        for name, mod in model.named_modules()
        if name.endswith(("input_layernorm", "post_attention_layernorm"))
    ]
    if not weights or n <= 0:
        return []
    mean = torch.stack(weights).mean(dim=0)
    return sorted(int(i) for i in torch.topk(mean, min(n, mean.numel())).indices)


@torch.no_grad()
def inject_outlier_channels(
    model: nn.Module, groups: Sequence[SmoothGroup], channels: Sequence[int], scale: float
) -> nn.Module:
    """A copy of ``model`` whose norm-fed inputs carry outlier channels, computing the same function.

    The inverse of smoothing: RMSNorm weight j times ``scale``, consumer weight column j
    divided by it. Large LLMs show this pattern on their own (a few hidden channels ~20x
    larger than the rest, in every layer: Dettmers et al. 2022); a small CPU-trained
    model does not, so this recreates it exactly without changing the float model.
    """
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    factors: dict[str, torch.Tensor] = {}
    for g in norm_fed_groups(groups):
        width = modules[g.linears[0]].in_features
        s = torch.ones(width)
        s[list(channels)] = 1.0 / float(scale)
        factors[g.name] = s
    apply_smoothing(out, norm_fed_groups(groups), factors)
    return out


@torch.no_grad()
def amplify_channels(model: nn.Module, channels: Sequence[int], scale: float) -> nn.Module:
    """A copy of ``model`` whose RMSNorm outputs carry ``channels`` ``scale`` times larger.

    Unlike :func:`inject_outlier_channels` the consumers are *not* divided to match, so this
    changes the function: the model must then be trained with the outliers
    (:func:`train_in`) for them to be part of a working model, as they are in large LLMs.
    """
    out = copy.deepcopy(model)
    for name, mod in out.named_modules():
        if name.endswith(("input_layernorm", "post_attention_layernorm")):
            weight = getattr(mod, "weight")  # noqa: B009 (RMSNorm has it; nn.Module does not declare it)
            weight[list(channels)] *= float(scale)
    return out


def train_in(
    model: nn.Module,
    blocks: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str = "cpu",
) -> list[float]:
    """Fine-tune every parameter of ``model`` in place (AdamW, constant lr) on ``blocks``; the losses.

    The batches are drawn with ``seed``, so one seed gives one fine-tuned model.
    """
    gen = torch.Generator().manual_seed(int(seed))
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(0, blocks.shape[0], (min(batch_size, blocks.shape[0]),), generator=gen)
        batch = blocks[idx].to(device)
        out: Any = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
    model.eval()
    for p in params:
        p.requires_grad_(False)
    return losses
