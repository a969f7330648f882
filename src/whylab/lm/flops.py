"""Training throughput as FLOPs: the FLOPs per token of a training step and the device's peak
FLOP/s, from which ``lm_train`` reports the MFU."""

from __future__ import annotations

from typing import Any

import torch

from whylab.lm.model import count_parameters

# Peak dense tensor-core FLOP/s by device name (vendor datasheets, without sparsity):
# (bf16/fp16, tf32). The first substring that occurs in torch's device name wins,
# so the more specific names come first.
PEAK_FLOPS: list[tuple[str, float, float]] = [
    ("H100 PCIe", 756e12, 378e12),
    ("H100 NVL", 835e12, 418e12),
    ("GH200", 989e12, 495e12),
    ("H200", 989e12, 495e12),
    ("H100", 989e12, 495e12),
    ("A100", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("A10", 125e12, 62.5e12),
]


def peak_flops(device: str, precision: str) -> tuple[float | None, str]:
    """The device's peak FLOP/s for ``precision`` and a note saying where it came from."""
    if device != "cuda":
        return None, "MFU is reported on GPUs only"
    name = torch.cuda.get_device_name()
    for key, bf16, tf32 in PEAK_FLOPS:
        if key in name:
            value = bf16 if precision == "bf16" else tf32
            basis = "bf16 dense" if precision == "bf16" else "tf32 dense"
            return value, f"{name}: {value / 1e12:.0f} TFLOP/s {basis} peak (datasheet table)"
    return None, f"{name}: peak FLOP/s unknown (not in whylab.lm.train.PEAK_FLOPS), MFU not computed"


def flops_per_token(model: torch.nn.Module, block_size: int) -> float:
    """Training FLOPs per token: 6·N plus the attention term 12·L·d·T (PaLM, app. B).

    N counts every weight that multiplies activations (the embedding lookup is
    left out, the output head is in).
    """
    cfg: Any = model.config  # a transformers config: its fields are set at run time
    n = count_parameters(model, non_embedding=True)
    return 6.0 * n + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * block_size
