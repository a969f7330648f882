"""Storage formats a loaded model can be put in: float dtypes and real quantized weight formats.

Each format is produced by the library that implements it (torch casts,
torchao's ``quantize_``, bitsandbytes' Linear8bitLt / Linear4bit), on every
``nn.Linear`` of the model (embeddings and norms stay as they are, as those
libraries do by default), so the measured bytes include what the formats
really carry: scales, zero points, block statistics.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from whylab.memory.measure import tensor_bytes


@dataclass(frozen=True)
class Format:
    name: str
    nominal: str  # the notes' dtype this format stands for: fp32 | fp16 | bf16 | int8 | int4
    library: str
    apply: Callable[[nn.Module], nn.Module]
    description: str
    packed: bool = (
        True  # False: the kernel stores a sub-byte value in a whole byte (a property of that layout)
    )


def _cast(dtype: torch.dtype) -> Callable[[nn.Module], nn.Module]:
    return lambda model: model.to(dtype)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torchao / bitsandbytes print lines about missing CUDA kernels on import: keep the log readable."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _torchao_int8(model: nn.Module) -> nn.Module:
    with _quiet():
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    quantize_(model, Int8WeightOnlyConfig())
    return model


def _torchao_int4(model: nn.Module, group_size: int = 32) -> nn.Module:
    with _quiet():
        from torchao.quantization import IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerGroup
    int4 = torch.int4  # type: ignore[attr-defined]  # exists at run time (torch 2.13), not in its stubs
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=int4, granularity=PerGroup(group_size)))
    return model


def _replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, make(child))
        else:
            _replace_linears(child, make)
    return model


def _bnb_int8(model: nn.Module) -> nn.Module:
    with _quiet():
        import bitsandbytes as bnb

    def make(lin: nn.Linear) -> nn.Module:
        new = bnb.nn.Linear8bitLt(
            lin.in_features, lin.out_features, bias=lin.bias is not None, has_fp16_weights=False
        )
        new.weight = bnb.nn.Int8Params(lin.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
        if lin.bias is not None:
            new.bias = nn.Parameter(lin.bias.data.clone(), requires_grad=False)
        return new.to(lin.weight.device)  # quantizes on the move to a device

    return _replace_linears(model, make)


def _bnb_nf4(model: nn.Module) -> nn.Module:
    with _quiet():
        import bitsandbytes as bnb

    def make(lin: nn.Linear) -> nn.Module:
        new = bnb.nn.Linear4bit(
            lin.in_features,
            lin.out_features,
            bias=lin.bias is not None,
            quant_type="nf4",
            compute_dtype=torch.float32,
        )
        new.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4")
        if lin.bias is not None:
            new.bias = nn.Parameter(lin.bias.data.clone(), requires_grad=False)
        return new.to(lin.weight.device)

    return _replace_linears(model, make)


FORMATS: dict[str, Format] = {
    "fp32": Format("fp32", "fp32", "torch", _cast(torch.float32), "float32, 4 bytes per value"),
    "fp16": Format("fp16", "fp16", "torch", _cast(torch.float16), "float16, 2 bytes per value"),
    "bf16": Format("bf16", "bf16", "torch", _cast(torch.bfloat16), "bfloat16, 2 bytes per value"),
    "torchao_int8": Format(
        "torchao_int8", "int8", "torchao", _torchao_int8, "int8 weight-only, one FP32 scale per output row"
    ),
    "torchao_int4": Format(
        "torchao_int4",
        "int4",
        "torchao",
        _torchao_int4,
        "int4 weight-only (IntxWeightOnly, groups of 32; CPU layout keeps one int4 per byte)",
        packed=False,
    ),
    "bnb_int8": Format(
        "bnb_int8",
        "int8",
        "bitsandbytes",
        _bnb_int8,
        "LLM.int8() Linear8bitLt, int8 rows with FP32 row scales",
    ),
    "bnb_nf4": Format(
        "bnb_nf4",
        "int4",
        "bitsandbytes",
        _bnb_nf4,
        "NF4 Linear4bit, two values per byte, 8-bit block absmax (double quantization)",
    ),
}


def linear_weight_params(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def quantized_layer_bytes(model: nn.Module) -> int:
    """Bytes of every Linear-like module's own tensors (weight with its scales, bias)."""
    total = 0
    for module in model.modules():
        if module is model or not hasattr(module, "weight") or isinstance(module, (nn.Embedding,)):
            continue
        if len(list(module.children())) == 0 and "Norm" not in type(module).__name__:
            total += tensor_bytes(module)
    return total


_KEEP: list[nn.Module] = []


def load_work(model_cfg: dict, fmt: str, seed: int) -> Callable[[], int]:
    """For :func:`whylab.memory.measure.rss_peak`: build the model and put it in ``fmt``, keeping it alive.

    The resident-set growth after this work is the process-level measure of the
    loaded model's bytes (the FP32 original is freed once converted). The set-up
    converts a tiny model first, so that code loaded on first use (lazy imports,
    the quantization library's native kernels) is not counted as model memory.
    """
    from whylab.memory.training import build_llama

    tiny = {
        **model_cfg,
        "vocab_size": 32,
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_layers": 1,
        "num_heads": 2,
    }
    _ = FORMATS[fmt].apply(build_llama(tiny, seed, "fp32"))(torch.zeros(1, 4, dtype=torch.long))

    def work() -> int:
        model = FORMATS[fmt].apply(build_llama(model_cfg, seed, "fp32"))
        _KEEP.append(model)
        return tensor_bytes(model)

    return work
