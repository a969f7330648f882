"""PyTorch-side variants: the FP32 model, half precision (bf16/fp16) and torchao INT8.

torchao is the successor of ``torch.ao.quantization.quantize_dynamic`` (deprecated). Its
``Int8DynamicActivationInt8WeightConfig`` quantizes weights per output channel ahead of time
and activations per token at run time (W8A8, the LLM.int8()-era scheme without the outlier
decomposition); ``Int8WeightOnlyConfig`` keeps activations in float (W8A16).
Every ``nn.Linear`` is quantized, the embedding table stays float.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import torch

from whylab.messages import Msg

TORCHAO_CONFIGS = {
    "int8_dynamic": "Int8DynamicActivationInt8WeightConfig",
    "int8_weight_only": "Int8WeightOnlyConfig",
}
HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(model_dir: Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Any:
    """The LM (trained here, or ``lm.pretrained``) from its ``save_pretrained`` folder, offline, in eval mode."""
    from whylab.lm.pretrained import load_causal_lm

    return load_causal_lm(model_dir, dtype, device)


def half_supported(kind: str, device: str) -> tuple[bool, Msg | None]:
    """Whether this device runs the half type natively; the reason (a catalogue message) when it does not."""
    if kind == "fp16" and not device.startswith("cuda"):
        return False, Msg("quant.skipped.fp16_cpu")
    if kind == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return False, Msg("quant.skipped.no_bf16")
    return True, None


def torchao_int8(model: Any, kind: str) -> Any:
    """Quantize ``model``'s linears in place with a torchao INT8 config ('int8_dynamic' | 'int8_weight_only')."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        import torchao.quantization as tq  # prints missing-CUDA-kernel lines on CPU
    if kind not in TORCHAO_CONFIGS:
        raise ValueError(f"torchao config {kind!r}: use one of {', '.join(TORCHAO_CONFIGS)}")
    config = getattr(tq, TORCHAO_CONFIGS[kind])()
    tq.quantize_(model, config)
    return model


def quantized_linear_count(model: Any) -> int:
    """Linears whose weight is a torchao quantized tensor (not a plain tensor)."""
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and type(module.weight.data) is not torch.Tensor:
            count += 1
    return count


def linear_count(model: Any) -> int:
    return sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))


def save_state(model: Any, path: Path) -> None:
    """The variant's weights on disk (torch.save of the state dict, quantized tensors included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
