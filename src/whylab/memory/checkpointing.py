"""Gradient checkpointing schedules for a LlamaForCausalLM.

- ``per_layer``: transformers' own ``gradient_checkpointing_enable`` (non-reentrant
  torch.utils.checkpoint around every decoder layer): only each layer's input is
  kept; the layer's forward is re-run during backward.
- ``sqrt``: Chen et al. 2016 ("Training Deep Nets with Sublinear Memory Cost"):
  the L layers are cut into segments of ceil(sqrt(L)) layers; only each segment's
  input is kept and a whole segment is recomputed at once, so the memory is
  O(sqrt(L)) boundaries + O(sqrt(L)) layers instead of O(L).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from whylab.errors import InputError
from whylab.memory.training import sqrt_segments

MODES = ("none", "per_layer", "sqrt")


class CheckpointedSegment(nn.Module):
    """Runs consecutive decoder layers under one checkpoint: only the segment's input is saved."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        def run(h: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                out = layer(h, *args, **kwargs)
                h = out[0] if isinstance(out, tuple) else out
            return h

        return checkpoint(run, hidden_states, use_reentrant=False)


class PassThrough(nn.Module):
    """Stands in the decoder loop where a segment already ran this layer."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


def apply_checkpointing(model: nn.Module, mode: str) -> int:
    """Switch ``model`` to ``mode``; returns the segment length (0 for none)."""
    if mode == "none":
        return 0
    if mode == "per_layer":
        enable: Any = model.gradient_checkpointing_enable  # transformers' PreTrainedModel method
        enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return 1
    if mode == "sqrt":
        inner = model.get_submodule("model")
        layers = list(inner.get_submodule("layers").children())
        k = sqrt_segments(len(layers))
        new: list[nn.Module] = []
        for i in range(0, len(layers), k):
            new.append(CheckpointedSegment(layers[i : i + k]))
            new.extend(PassThrough() for _ in layers[i + 1 : i + k])
        inner.layers = nn.ModuleList(new)
        return k
    raise InputError(f"memory.C19.modes: {mode!r} is not one of {', '.join(MODES)}")
