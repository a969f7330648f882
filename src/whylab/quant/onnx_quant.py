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

import contextlib
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


def has_vnni(features: Mapping[str, bool] | None = None) -> bool:
    """Whether the CPU has an INT8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX)."""
    from whylab.environment import cpu_features

    flags = cpu_features() if features is None else features
    if not flags:
        return False
    return any(flags.get(k, False) for k in ("avx512_vnni", "avx_vnni", "amx"))


def int8_setup(features: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """ONNX Runtime's advice for INT8 on this CPU, as the quantizers here apply it.

    U8S8 (uint8 activations x int8 weights: dynamic, static QOperator) can saturate in the
    AVX2 kernel (vpmaddubsw adds two u8 x s8 products into int16), so without VNNI the weights
    get 7 bits (``reduce_range``); QDQ static uses S8S8, which has no such overflow.
    """
    vnni = has_vnni(features)
    return {
        "vnni": vnni,
        "reduce_range": not vnni,
        "reason": "CPU has VNNI/AMX: full 8-bit weights"
        if vnni
        else "no VNNI/AMX: 7-bit weights (reduce_range) against U8S8 saturation, as ORT's docs advise",
    }


def preprocess(src: Path, dst: Path) -> str:
    """ORT's ``quant_pre_process`` (symbolic shape inference, graph cleanup, ONNX shape inference),
    advised before quantizing; returns what ran.

    Symbolic shape inference does not complete on every exported graph (BERT's attention mask
    arithmetic, for one); there the rest of the pre-processing still runs, and the note says so.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dst.parent.mkdir(parents=True, exist_ok=True)
    large = Path(src).stat().st_size > 1_800_000_000
    kwargs = {"save_as_external_data": large, "all_tensors_to_one_file": True}
    src, dst = Path(src).resolve(), dst.resolve()
    # a failed symbolic shape inference dumps its model (GBs at real scale) into the working directory
    with contextlib.chdir(dst.parent):
        try:
            quant_pre_process(str(src), str(dst), **kwargs)
            return "quant_pre_process: symbolic shape inference, optimization, ONNX shape inference"
        except Exception as exc:  # ORT raises a bare Exception when symbolic inference is incomplete
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True, **kwargs)
            return f"quant_pre_process without symbolic shape inference ({str(exc) or type(exc).__name__})"


def quantized_weight_matmuls(model: onnx.ModelProto, fmt: str) -> int:
    """How many MatMuls with a constant (weight) B input the quantizer turned into INT8 ones.

    ``fmt`` 'dynamic' counts MatMulInteger (and the fused DynamicQuantizeMatMul), 'QOperator'
    QLinearMatMul + MatMulInteger, 'QDQ' MatMuls whose B comes from a DequantizeLinear of an
    initializer (activation x activation MatMuls never count).
    """
    counts = onnx_graph.op_counts(model)
    if fmt == "dynamic":
        return int(counts.get("MatMulInteger", 0)) + int(counts.get("DynamicQuantizeMatMul", 0))
    if fmt == "QOperator":
        return int(counts.get("QLinearMatMul", 0)) + int(counts.get("MatMulInteger", 0))
    inits = onnx_graph.initializers(model)
    dq_of_init = {
        n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
    }
    return sum(1 for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in dq_of_init)


def check_count(got: int, expected: int, what: str) -> int:
    """Fail unless the quantizer produced exactly one quantized op per weight MatMul."""
    if expected < 1 or got != expected:
        raise RuntimeError(
            f"{what}: {got} quantized MatMuls but the graph has {expected} weight MatMuls "
            f"({'it skipped layers' if got < expected else 'it quantized activation x activation MatMuls too'})"
        )
    return got


def _prepared(src: Path, workdir: Path, pre_process: bool, notes: list[str] | None) -> Path:
    if not pre_process:
        return src
    dst = workdir / "preprocessed.onnx"
    note = preprocess(src, dst)
    if notes is not None:
        notes.append(note)
    return dst


def int8_dynamic(
    src: Path,
    dst: Path,
    *,
    per_channel: bool = True,
    reduce_range: bool | None = None,
    pre_process: bool = True,
    notes: list[str] | None = None,
) -> dict[str, int]:
    """Dynamic INT8 (MatMulInteger, activations quantized per call); ``reduce_range`` None: per :func:`int8_setup`."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet_ort_logging()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if reduce_range is None:
        reduce_range = bool(int8_setup()["reduce_range"])
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        prepared = _prepared(src, Path(tmp), pre_process, notes)
        expected = expected_weight_matmuls(prepared)
        quantize_dynamic(
            str(prepared),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=["MatMul", "Gather"],
            use_external_data_format=prepared.stat().st_size > 1_800_000_000,
            extra_options={"MatMulConstBOnly": True},
        )
    model = onnx_graph.load(dst)
    check_count(quantized_weight_matmuls(model, "dynamic"), expected, "ort-int8-dynamic")
    return onnx_graph.op_counts(model)


def int8_static(
    src: Path,
    dst: Path,
    calibration: torch.Tensor,
    *,
    quant_format: str = "QOperator",
    method: str = "MinMax",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    pre_process: bool = True,
    notes: list[str] | None = None,
) -> dict[str, int]:
    """Static INT8 on the same MatMuls as :func:`int8_dynamic` (``MatMulConstBOnly``), ranges calibrated.

    QOperator runs U8S8 (``reduce_range`` per :func:`int8_setup` when None); QDQ runs S8S8,
    which needs no reduced range.
    """
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quiet_ort_logging()
    dst.parent.mkdir(parents=True, exist_ok=True)
    fmt = QuantFormat.QDQ if quant_format == "QDQ" else QuantFormat.QOperator
    # u8 activations x s8 weights is x86's fast path for QOperator; QDQ wants s8/s8
    activation = QuantType.QInt8 if fmt == QuantFormat.QDQ else QuantType.QUInt8
    if reduce_range is None:
        reduce_range = fmt == QuantFormat.QOperator and bool(int8_setup()["reduce_range"])
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        prepared = _prepared(src, Path(tmp), pre_process, notes)
        expected = expected_weight_matmuls(prepared)
        quantize_static(
            str(prepared),
            str(dst),
            calibration_reader(prepared, calibration),
            quant_format=fmt,
            activation_type=activation,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            calibrate_method=getattr(CalibrationMethod, method),
            op_types_to_quantize=["MatMul", "Gather"],
            extra_options={"MatMulConstBOnly": True},
        )
    model = onnx_graph.load(dst)
    check_count(quantized_weight_matmuls(model, quant_format), expected, "ort-int8-static")
    return onnx_graph.op_counts(model)


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
