"""The small model and the training step every memory experiment measures.

A ``LlamaForCausalLM`` built from a config (no hub weights), the optimizers the
notes name (Adam/AdamW, AdaFactor, SGD with and without momentum) and a
mixed-precision AdamW that keeps FP32 master weights, so that the accounting in
:mod:`whylab.memory.calculator` can be held against real training steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from whylab.errors import InputError

OPTIMIZERS = ("adamw", "adam", "sgd", "sgd_momentum", "adafactor", "mixed_adamw")
PRECISIONS = ("fp32", "bf16", "fp16", "mixed_bf16")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def llama_config(model_cfg: Mapping[str, Any]) -> Any:
    """A LlamaConfig from the memory section's ``model`` keys (MHA: as many KV heads as heads)."""
    from transformers import LlamaConfig

    hidden = int(model_cfg["hidden_size"])
    heads = int(model_cfg["num_heads"])
    if hidden % heads:
        raise InputError(f"memory model: hidden_size {hidden} is not divisible by num_heads {heads}")
    attn = str(model_cfg.get("attn_implementation", "eager"))
    cfg = LlamaConfig(
        vocab_size=int(model_cfg["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(model_cfg["intermediate_size"]),
        num_hidden_layers=int(model_cfg["num_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=int(model_cfg.get("max_position_embeddings", 2048)),
        tie_word_embeddings=bool(model_cfg.get("tie_word_embeddings", False)),
        use_cache=False,
        attn_implementation=attn,
    )
    cfg._attn_implementation = attn
    return cfg


def build_llama(
    model_cfg: Mapping[str, Any],
    seed: int,
    precision: str = "fp32",
    device: str = "cpu",
    num_layers: int | None = None,
) -> nn.Module:
    """Build the model deterministically from ``seed``; ``precision`` sets the parameter dtype."""
    from transformers import LlamaForCausalLM

    cfg = dict(model_cfg)
    if num_layers is not None:
        cfg["num_layers"] = num_layers
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(cfg))
    nn.Module.to(model, device=device, dtype=param_dtype(precision))
    model.train()
    return model


def param_dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise InputError(f"memory: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return torch.bfloat16 if precision == "mixed_bf16" else TORCH_DTYPES[precision]


def random_ids(vocab: int, batch: int, seq: int, seed: int, device: str = "cpu") -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=gen).to(device)


class MixedPrecisionAdamW(torch.optim.Optimizer):
    """AdamW over 16-bit model weights with an FP32 master copy of each weight in the state.

    This is the mixed-precision recipe whose cost ZeRO (Rajbhandari et al. 2020)
    counts as 16 bytes per parameter: 16-bit weights (2) and gradients (2), and
    FP32 master weight, momentum and variance (4 + 4 + 4) as optimizer state.
    The 16-bit gradient is upcast one tensor at a time, so the extra FP32 buffer
    is the size of one tensor, not of the model.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["master"] = p.detach().float().clone()
                    state["exp_avg"] = torch.zeros_like(state["master"])
                    state["exp_avg_sq"] = torch.zeros_like(state["master"])
                state["step"] += 1
                t = state["step"]
                grad = p.grad.float()  # one tensor's FP32 gradient at a time
                master, m, v = state["master"], state["exp_avg"], state["exp_avg_sq"]
                master.mul_(1 - group["lr"] * group["weight_decay"])
                m.lerp_(grad, 1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                denom = (v / (1 - b2**t)).sqrt_().add_(group["eps"])
                master.addcdiv_(m, denom, value=-group["lr"] / (1 - b1**t))
                del grad, denom
                p.copy_(master)


def make_optimizer(model: nn.Module, name: str, lr: float = 1e-3) -> torch.optim.Optimizer:
    """The optimizers the notes name, in their torch implementations (foreach=False: one tensor at a time)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if name in ("adamw", "adam"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, foreach=False)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, foreach=False)
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=False)
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, foreach=False)
    if name == "mixed_adamw":
        return MixedPrecisionAdamW(params, lr=lr)
    raise InputError(f"memory: optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")


class Stepper(Protocol):
    """What a training step needs of an optimizer (torch's, or the CPU-offloading one)."""

    def step(self) -> Any: ...

    def zero_grad(self, set_to_none: bool = True) -> None: ...


def train_step(model: nn.Module, optimizer: Stepper | None, ids: torch.Tensor) -> float:
    """One step: forward with next-token labels, backward, optimizer step, gradients released."""
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    value = float(loss.detach())
    del loss
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return value


def param_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters()]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def head_dim(model_cfg: Mapping[str, Any]) -> int:
    return int(model_cfg["hidden_size"]) // int(model_cfg["num_heads"])


def sqrt_segments(num_layers: int) -> int:
    """Segment length for Chen et al.'s sqrt(n) checkpointing: ceil(sqrt(n)) layers per segment."""
    return max(1, math.ceil(math.sqrt(num_layers)))


def step_work(
    model_cfg: dict[str, Any], batch: int, seq: int, optimizer: str, precision: str, seed: int
) -> Any:
    """Set up model, optimizer and one warm-up step; return the measured work: one more step.

    Used by :func:`whylab.memory.measure.rss_peak` in a fresh process (the set-up
    is not measured; the optimizer state already exists, as in steady training).
    """
    model = build_llama(model_cfg, seed, precision)
    opt = make_optimizer(model, optimizer)
    ids = random_ids(int(model_cfg["vocab_size"]), batch, seq, seed)
    train_step(model, opt, ids)

    def work() -> float:
        return train_step(model, opt, ids)

    return work
