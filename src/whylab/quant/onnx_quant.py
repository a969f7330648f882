"""ONNX Runtime quantization of the exported FP32 model: INT8 (dynamic, static) and INT4 weight-only.

Every function reads the FP32 ``model.onnx`` and writes a quantized one, then *counts* the
quantized ops it produced and fails if that count is not what the graph calls for — a
quantizer that silently skips layers (GPT-2's Gemm under MatMulNBits, for example) cannot
slip through as a "quantized" row.

* INT8 dynamic: ``quantize_dynamic`` — weights INT8 ahead of time, activations quantized per
  batch at run time (MatMulInteger).
* INT8 static: ``quantize_static`` — activation ranges calibrated beforehand on token blocks
  of the *training* split through a ``CalibrationDataReader`` (QLinearMatMul, or QDQ pairs).
* INT4: ``MatMulNBitsQuantizer`` with its round-to-nearest (DEFAULT) and HQQ configs, and
  MatMulNBits written from our own GPTQ/AWQ results (:mod:`whylab.quant.gptq`,
  :mod:`whylab.quant.awq`) on the same grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from whylab.quant import onnx_graph
from whylab.quant.int4 import QuantizedWeight
from whylab.quant.measure import ort_session

INT8_OPS = ("MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "QGemm")


def quiet_ort_logging() -> None:
    """ORT's quantizers log every node at INFO on the root logger; keep errors only (the log stays readable)."""
    logging.getLogger().setLevel(logging.ERROR)
    for name in (
        "onnxruntime",
        "onnxruntime.quantization",
        "onnxruntime.quantization.matmul_nbits_quantizer",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)


class TokenBlockReader:
    """A ``CalibrationDataReader`` over token blocks: one (1, L) block per ``get_next``, then None.

    ``feeds`` turns a block into the session's inputs (mask, positions, an empty KV cache for
    exports "with past"), exactly as measurement does.
    """

    def __init__(self, blocks: torch.Tensor, feeds: Callable[[np.ndarray], dict[str, np.ndarray]]) -> None:
        self._blocks = blocks.numpy()
        self._feeds = feeds
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._blocks):
            return None
        feeds = self._feeds(self._blocks[self._index][None, :])
        self._index += 1
        return feeds

    def rewind(self) -> None:
        self._index = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item

    def __len__(self) -> int:
        return len(self._blocks)


def calibration_reader(src: Path, blocks: torch.Tensor) -> Any:
    """A TokenBlockReader for ``src``'s inputs, registered as an onnxruntime CalibrationDataReader."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(TokenBlockReader, CalibrationDataReader):
        pass

    return _Reader(blocks, ort_session(src).feeds)


def expected_weight_matmuls(model_path: str | Path) -> int:
    return len(onnx_graph.weight_matmuls(onnx_graph.load(model_path)))


def check_count(counts: Mapping[str, int], ops: tuple[str, ...], expected_at_least: int, what: str) -> int:
    got = sum(int(counts.get(op, 0)) for op in ops)
    if got < max(1, expected_at_least):
        raise RuntimeError(
            f"{what}: {got} quantized ops ({'/'.join(ops)}) but the graph has "
            f"{expected_at_least} weight MatMuls: the quantizer skipped layers"
        )
    return got


def int8_dynamic(src: Path, dst: Path, *, per_channel: bool = True) -> dict[str, int]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet_ort_logging()
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        op_types_to_quantize=["MatMul", "Gather"],
    )
    counts = onnx_graph.op_counts(onnx_graph.load(dst))
    check_count(counts, INT8_OPS, expected_weight_matmuls(src), "ort-int8-dynamic")
    return counts


def int8_static(
    src: Path,
    dst: Path,
    calibration: torch.Tensor,
    *,
    quant_format: str = "QOperator",
    method: str = "MinMax",
    per_channel: bool = True,
) -> dict[str, int]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quiet_ort_logging()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fmt = QuantFormat.QDQ if quant_format == "QDQ" else QuantFormat.QOperator
    # u8 activations x s8 weights is x86's fast path for QOperator; QDQ wants s8/s8
    activation = QuantType.QInt8 if fmt == QuantFormat.QDQ else QuantType.QUInt8
    quantize_static(
        str(src),
        str(dst),
        calibration_reader(src, calibration),
        quant_format=fmt,
        activation_type=activation,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        calibrate_method=getattr(CalibrationMethod, method),
        op_types_to_quantize=["MatMul", "Gather"],
    )
    counts = onnx_graph.op_counts(onnx_graph.load(dst))
    ops = ("QLinearMatMul", "MatMulInteger") if fmt == QuantFormat.QOperator else ("DequantizeLinear",)
    check_count(counts, ops, expected_weight_matmuls(src), "ort-int8-static")
    return counts


def int4_ort(
    src: Path | onnx.ModelProto,
    dst: Path,
    algorithm: str,
    block_size: int,
    *,
    symmetric: bool = False,
    exclude: Sequence[str] = (),
) -> dict[str, int]:
    """ONNX Runtime's own 4-bit weight-only quantizer: 'rtn' (its DEFAULT blockwise RTN) or 'hqq'.

    ``exclude``: MatMul node names left in float (the LM head, as the GPTQ/AWQ papers keep it).
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    quiet_ort_logging()
    model = onnx_graph.load(src) if not isinstance(src, onnx.ModelProto) else src
    expected = len(onnx_graph.weight_matmuls(model)) - len(set(exclude))
    if algorithm == "rtn":
        config: Any = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric)
    elif algorithm == "hqq":
        config = HQQWeightOnlyQuantConfig(block_size=block_size)
    else:
        raise ValueError(f"ONNX Runtime 4-bit algorithm {algorithm!r}: use rtn or hqq")
    quantizer = MatMulNBitsQuantizer(
        model,
        block_size=block_size,
        is_symmetric=symmetric,
        algo_config=config,
        nodes_to_exclude=list(exclude),
    )
    quantizer.process()
    out = quantizer.model.model
    onnx_graph.save(out, dst)
    counts = onnx_graph.op_counts(out)
    _check_int4(counts, expected, f"ort-int4-{algorithm}")
    return counts


def _check_int4(counts: Mapping[str, int], expected: int, what: str) -> None:
    got = int(counts.get("MatMulNBits", 0))
    if got == 0 or got != expected:
        raise RuntimeError(f"{what}: {got} MatMulNBits nodes, expected one per weight MatMul ({expected})")


def int4_from_torch(
    src: Path,
    dst: Path,
    torch_model: Any,
    quantized: Mapping[str, QuantizedWeight],
    *,
    keep_float: Sequence[str] = (),
) -> dict[str, int]:
    """Write torch-computed 4-bit weights (GPTQ) into the FP32 graph as MatMulNBits nodes.

    ``torch_model`` must hold the *original* FP32 weights (they locate each layer's MatMul);
    ``keep_float`` names the linears that stay float (the LM head).
    """
    model = onnx_graph.load(src)
    expected = len(onnx_graph.weight_matmuls(model)) - len(set(keep_float))
    matches = {k: v for k, v in onnx_graph.match_linears(model, torch_model).items() if k not in keep_float}
    missing = set(matches) - set(quantized)
    if missing:
        raise ValueError(f"no quantized weight for {', '.join(sorted(missing))}")
    for name, wm in matches.items():
        onnx_graph.replace_with_matmulnbits(model, wm, quantized[name])
    onnx_graph.save(model, dst)
    counts = onnx_graph.op_counts(model)
    _check_int4(counts, expected, "int4-from-torch")
    return counts


def write_torch_weights(src: Path, original: Any, modified: Any) -> onnx.ModelProto:
    """The FP32 graph with every weight that ``modified`` changed relative to ``original`` written in.

    Linear weights are found by value (:func:`onnx_graph.match_linears` on ``original``);
    other changed parameters (RMSNorm weights after AWQ folding) by their parameter name,
    which optimum keeps as the initializer name.
    """
    model = onnx_graph.load(src)
    matches = onnx_graph.match_linears(model, original)
    inits = onnx_graph.initializers(model)
    new_params = dict(modified.named_parameters())
    for name, param in original.named_parameters():
        new = new_params[name].detach().float()
        if torch.equal(new, param.detach().float()):
            continue
        module_name = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and module_name in matches:
            onnx_graph.set_initializer(model, matches[module_name].weight_name, new.numpy().T)
        elif name in inits:
            onnx_graph.set_initializer(model, name, new.numpy())
        else:
            raise ValueError(f"changed parameter {name} has no initializer of that name in the ONNX graph")
    return model
