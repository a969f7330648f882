"""CPU offloading: keep optimizer state, or some layers' weights, in host memory.

- :class:`CPUOffloadAdamW` (the ZeRO-Offload recipe, Ren et al. 2021, without its
  overlap and partitioning): FP32 master weights and both Adam moments live on
  the CPU; after backward each gradient is copied to the host and freed on the
  accelerator, AdamW runs on the CPU, and the updated weights are copied back.
  The accelerator then never holds optimizer state (8 B/param for Adam), at the
  cost of moving gradients down and weights up every step.
- :func:`offload_layers`: accelerate's ``cpu_offload`` on the first N decoder
  layers: their weights stay in CPU memory and are copied to the execution
  device for each forward (inference), then dropped again.

Both run unchanged on CUDA (execution device ``cuda``) and on a CPU-only machine
(where host and "accelerator" are the same memory, so they only show that the
mechanism computes the same thing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of a LlamaForCausalLM (``model.model.layers``)."""
    inner = model.get_submodule("model.layers")
    return list(inner.children())


class CPUOffloadAdamW:
    """AdamW whose FP32 master weights and moments live on ``offload_device`` (ZeRO-Offload, Ren et al. 2021).

    The model keeps only its (16-bit or FP32) weights on the accelerator. With ``stream_grads``
    (the default, as ZeRO-Offload does) each gradient is copied to the host as soon as backward has
    accumulated it (a post-accumulate-grad hook) and freed on the accelerator at once, so the device
    never holds the model's gradients together; the update runs on the CPU and the weights are
    copied back, cast to the model's dtype. Without ``stream_grads`` the gradients are moved after
    backward. Bytes moved each way are counted.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        offload_device: str = "cpu",
        stream_grads: bool = True,
        **adamw_kwargs: Any,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        pin = torch.cuda.is_available() and any(p.device.type == "cuda" for p in self.params)
        self.master = []
        for p in self.params:
            m = p.detach().to(offload_device, torch.float32, copy=True)
            self.master.append(m.pin_memory() if pin else m)
        for m in self.master:
            m.requires_grad_(True)
        self.inner = torch.optim.AdamW(self.master, lr=lr, foreach=False, **adamw_kwargs)
        self.bytes_to_host = 0
        self.bytes_to_device = 0
        self.handles = (
            [
                p.register_post_accumulate_grad_hook(self._hook(p, m))
                for p, m in zip(self.params, self.master, strict=True)
            ]
            if stream_grads
            else []
        )

    def _hook(self, p: nn.Parameter, m: torch.Tensor) -> Any:
        def move(param: torch.Tensor) -> None:
            self._to_host(param, m)

        return move

    @torch.no_grad()
    def _to_host(self, p: torch.Tensor, m: torch.Tensor) -> None:
        if p.grad is None:
            return
        g = p.grad.to(m.device, torch.float32)
        m.grad = g if m.grad is None else m.grad.add_(g)  # accumulation over micro-batches adds up
        self.bytes_to_host += p.grad.numel() * p.grad.element_size()
        p.grad = None  # the accelerator copy of the gradient is freed at once

    @torch.no_grad()
    def step(self) -> None:
        for p, m in zip(self.params, self.master, strict=True):
            self._to_host(p, m)  # gradients not streamed yet (stream_grads=False)
        self.inner.step()
        for p, m in zip(self.params, self.master, strict=True):
            p.copy_(m, non_blocking=True)
            self.bytes_to_device += p.numel() * p.element_size()
            m.grad = None
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p, m in zip(self.params, self.master, strict=True):
            p.grad = None
            m.grad = None

    def remove_hooks(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def state_bytes(self) -> int:
        """Bytes held off the accelerator: master weights and Adam moments (and step counters)."""
        total = sum(m.numel() * m.element_size() for m in self.master)
        for state in self.inner.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
        return total


def offload_layers(model: nn.Module, n_layers: int, execution_device: str) -> int:
    """Put the weights of the first ``n_layers`` decoder layers in CPU memory (accelerate's cpu_offload).

    Returns the bytes of weights now kept off the execution device. The rest of
    the model must already be on ``execution_device``.
    """
    from accelerate import cpu_offload

    layers = decoder_layers(model)[:n_layers]
    moved = 0
    for layer in layers:
        moved += sum(p.numel() * p.element_size() for p in layer.parameters())
        layer.to("cpu")
        cpu_offload(layer, execution_device=torch.device(execution_device))
    return moved


def layer_weight_bytes(model: nn.Module, n_layers: int) -> int:
    return sum(
        p.numel() * p.element_size() for layer in decoder_layers(model)[:n_layers] for p in layer.parameters()
    )
