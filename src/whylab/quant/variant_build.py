"""Building a quantized variant of the trained LM into something runnable (``quant_variant``):
an ONNX Runtime session or a torch model, with how to score and time it, what it weighs on
disk and in memory, and what was quantized (op counts, replaced tensors, diagnostics).
The variants' names are in :mod:`whylab.quant.names`; measuring them is in
:mod:`whylab.quant.variants`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from whylab.errors import InputError
from whylab.quant import measure as ms
from whylab.quant.names import Variant

MATMULNBITS_BLOCKS = (16, 32, 64, 128, 256)


# ----------------------------------------------------------------------------- building
@dataclass
class Built:
    """A runnable variant: how to score and time it, what it weighs, what was quantized."""

    block_nll: Callable[[torch.Tensor], list[float]]
    forward: Callable[[torch.Tensor], Any]
    size_bytes: int
    memory_bytes: int
    providers: list[str]
    provider_note: str = ""
    op_count: dict[str, int] = field(default_factory=dict)
    expected_ops: int | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    # per-block NLL and next-token top-1 accuracy in one pass (C12/C13 report both)
    block_scores: Callable[[torch.Tensor], dict[str, list[float]]] | None = None


@dataclass
class Inputs:
    model_dir: Path
    onnx_file: Path
    eval_blocks: torch.Tensor
    calibration: torch.Tensor
    settings: dict[str, Any]
    device: str
    threads: int
    outdir: Path


def replaced_tensor_bytes(fp32_file: Path, variant_file: Path) -> dict[str, int]:
    """Bytes of the FP32 initializers a quantizer replaced, and of what replaced them.

    Their ratio is the size cut on the quantized tensors alone (scales and zero points
    included), apart from what stayed float (norms, an unquantized embedding) and the graph.
    """
    from onnx import numpy_helper

    from whylab.quant import onnx_graph

    before = {i.name: numpy_helper.to_array(i).nbytes for i in onnx_graph.load(fp32_file).graph.initializer}
    after = {i.name: numpy_helper.to_array(i).nbytes for i in onnx_graph.load(variant_file).graph.initializer}
    removed = sum(b for name, b in before.items() if name not in after)
    added = sum(b for name, b in after.items() if name not in before)
    return {"fp32_bytes": removed, "quantized_bytes": added}


def _ort_built(path: Path, inp: Inputs, **extra: Any) -> Built:
    from whylab.quant import onnx_graph

    if path != inp.onnx_file:
        extra.setdefault("diagnostics", {})["quantized_tensors"] = replaced_tensor_bytes(inp.onnx_file, path)
    sess = ms.ort_session(path, inp.device, inp.threads)
    batch = int(inp.settings["measure"]["eval_batch_size"])
    size = ms.disk_bytes(path) + (
        ms.disk_bytes(Path(str(path) + ".data")) if Path(str(path) + ".data").exists() else 0
    )
    return Built(
        block_nll=lambda blocks: ms.ort_block_nll(sess, blocks, batch),
        block_scores=lambda blocks: ms.ort_block_scores(sess, blocks, batch),
        forward=lambda ids: sess.logits(ids.numpy()),
        size_bytes=size,
        memory_bytes=onnx_graph.weight_bytes(onnx_graph.load(path)),
        providers=sess.providers,
        provider_note=sess.note,
        **extra,
    )


def _torch_built(model: Any, inp: Inputs, state_file: Path | None, **extra: Any) -> Built:
    from whylab.quant.torch_quant import save_state

    batch = int(inp.settings["measure"]["eval_batch_size"])
    device = inp.device
    if state_file is not None:
        save_state(model, state_file)

    @torch.no_grad()
    def forward(ids: torch.Tensor) -> Any:
        ids = ids.to(device)
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits

    provider = f"torch:{device}"
    return Built(
        block_nll=lambda blocks: ms.torch_block_nll(model, blocks, batch, device),
        block_scores=lambda blocks: ms.torch_block_scores(model, blocks, batch, device),
        forward=forward,
        size_bytes=ms.disk_bytes(state_file) if state_file else 0,
        memory_bytes=ms.torch_weight_bytes(model),
        providers=[provider],
        **extra,
    )


def _min_input_width(onnx_file: Path) -> int:
    from whylab.quant import onnx_graph

    return min(wm.k for wm in onnx_graph.weight_matmuls(onnx_graph.load(onnx_file)))


def build(variant: Variant, inp: Inputs) -> Built:
    """Quantize (into ``inp.outdir``) and open ``variant`` for measuring."""
    from whylab.quant import onnx_quant, torch_quant

    q = inp.settings
    out_onnx = inp.outdir / "model.onnx"
    if variant.name == "ort-fp32":
        return _ort_built(inp.onnx_file, inp)
    if variant.name == "torch-fp32":
        model = torch_quant.load_model(inp.model_dir, torch.float32, inp.device)
        return _torch_built(model, inp, inp.outdir / "model.pt")
    if variant.family == "half" and variant.runtime == "torch":
        model = torch_quant.load_model(inp.model_dir, torch_quant.HALF_DTYPES[variant.algorithm], inp.device)
        return _torch_built(model, inp, inp.outdir / "model.pt")
    if variant.name == "ort-fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        from whylab.quant import onnx_graph

        half = convert_float_to_float16(onnx_graph.load(inp.onnx_file), keep_io_types=True)
        onnx_graph.save(half, out_onnx)
        return _ort_built(out_onnx, inp)
    notes: list[str] = []  # quant_pre_process: what ran (INT8 only)
    if variant.name == "ort-int8-dynamic":
        counts = onnx_quant.int8_dynamic(
            inp.onnx_file, out_onnx, per_channel=q["int8"]["per_channel"], notes=notes
        )
        return _ort_built(
            out_onnx,
            inp,
            op_count=_quant_ops(counts),
            expected_ops=onnx_quant.expected_weight_matmuls(inp.onnx_file),
            diagnostics={"int8_setup": onnx_quant.int8_setup(), "preprocess": notes},
        )
    if variant.name == "ort-int8-static":
        counts = onnx_quant.int8_static(
            inp.onnx_file,
            out_onnx,
            inp.calibration,
            quant_format=q["int8"]["ort_static_format"],
            method=q["int8"]["ort_static_method"],
            per_channel=q["int8"]["per_channel"],
            notes=notes,
        )
        return _ort_built(
            out_onnx,
            inp,
            op_count=_quant_ops(counts),
            expected_ops=onnx_quant.expected_weight_matmuls(inp.onnx_file),
            diagnostics={"int8_setup": onnx_quant.int8_setup(), "preprocess": notes},
        )
    if variant.runtime == "torch" and variant.family == "int8":
        model = torch_quant.load_model(inp.model_dir, torch.float32, inp.device)
        expected = torch_quant.linear_count(model)
        fp32_bytes = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, torch.nn.Linear))
        torch_quant.torchao_int8(model, variant.algorithm)
        got = torch_quant.quantized_linear_count(model)
        if got != expected:
            raise RuntimeError(f"{variant.name}: {got} of {expected} linear layers quantized")
        quantized_bytes = sum(
            ms.tensor_bytes(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)
        )
        return _torch_built(
            model,
            inp,
            inp.outdir / "model.pt",
            op_count={"torchao_quantized_linear": got},
            expected_ops=expected,
            diagnostics={"quantized_tensors": {"fp32_bytes": fp32_bytes, "quantized_bytes": quantized_bytes}},
        )
    if variant.family == "int4":
        return _build_int4(variant, inp, out_onnx)
    raise InputError(f"no builder for variant {variant.name!r}")


def float_linears(model: Any) -> list[str]:
    """Linears outside the decoder layers (the LM head): the INT4 variants keep them in float."""
    return [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." not in f".{n}."
    ]


def _node_names(onnx_file: Path, model: Any, names: list[str]) -> list[str]:
    from whylab.quant import onnx_graph

    if not names:
        return []
    matches = onnx_graph.match_linears(onnx_graph.load(onnx_file), model)
    return [matches[n].node_name for n in names]


def _quant_ops(counts: Mapping[str, int]) -> dict[str, int]:
    keep = (
        "MatMulInteger",
        "QLinearMatMul",
        "DynamicQuantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
        "MatMulNBits",
        "GatherBlockQuantized",
        "MatMul",
    )
    return {k: int(v) for k, v in counts.items() if k in keep}


def _build_int4(variant: Variant, inp: Inputs, out_onnx: Path) -> Built:
    from whylab.quant import onnx_quant, torch_quant
    from whylab.quant.int4 import rtn_quantize

    q4 = inp.settings["int4"]
    bs = int(variant.block_size or 0)
    if bs not in MATMULNBITS_BLOCKS:
        raise InputError(
            f"quantization.int4.block_sizes: {bs} is not one of {MATMULNBITS_BLOCKS} "
            "(MatMulNBits needs a power of two from 16)"
        )
    width = _min_input_width(inp.onnx_file)
    if bs > width:
        raise InputError(
            f"quantization.int4.block_sizes: {bs} is wider than the narrowest layer input ({width})"
        )
    sym = bool(q4["symmetric"])
    model = torch_quant.load_model(inp.model_dir, torch.float32, "cpu")
    # the embedding and the LM head stay float, as in the GPTQ and AWQ papers (every algorithm)
    head = float_linears(model)
    head_nodes = _node_names(inp.onnx_file, model, head)
    expected = onnx_quant.expected_weight_matmuls(inp.onnx_file) - len(head_nodes)
    diagnostics: dict[str, Any] = {"float_linears": head}
    if variant.algorithm in ("rtn", "hqq"):
        counts = onnx_quant.int4_ort(
            inp.onnx_file, out_onnx, variant.algorithm, bs, symmetric=sym, exclude=head_nodes
        )
    elif variant.algorithm == "gptq":
        from whylab.quant.gptq import gptq_model, layer_error

        errors = {"gptq": 0.0, "rtn": 0.0}
        changed = [0, 0]

        def record(_name: str, weight: torch.Tensor, qw: Any, h: torch.Tensor) -> None:
            rtn = rtn_quantize(weight, bs, sym)
            errors["gptq"] += layer_error(weight, qw, h)
            errors["rtn"] += layer_error(weight, rtn, h)
            changed[0] += int((qw.real_codes != rtn.real_codes).sum())
            changed[1] += int(rtn.real_codes.size)

        quantized = gptq_model(
            model,
            inp.calibration,
            bs,
            symmetric=sym,
            percdamp=float(q4["gptq_percdamp"]),
            act_order=bool(q4.get("gptq_act_order", True)),
            true_sequential=bool(q4.get("gptq_true_sequential", True)),
            on_layer=record,
        )
        counts = onnx_quant.int4_from_torch(inp.onnx_file, out_onnx, model, quantized, keep_float=head)
        diagnostics.update(
            codes_differ_from_rtn_frac=changed[0] / max(1, changed[1]),
            calibration_output_error=errors,
            act_order=bool(q4.get("gptq_act_order", True)),
            true_sequential=bool(q4.get("gptq_true_sequential", True)),
            note="own GPTQ (the paper's algorithm 1 with the reference code's act-order and true-sequential), "
            "layer after layer, written as MatMulNBits; LM head in float",
        )
    elif variant.algorithm == "awq":
        from whylab.quant.awq import awq

        result = awq(
            model,
            inp.calibration,
            bs,
            alpha_grid=int(q4["awq_alpha_grid"]),
            symmetric=sym,
            clip_grid=int(q4.get("awq_clip_grid", 20)),
            clip_max_shrink=float(q4.get("awq_clip_max_shrink", 0.5)),
        )
        scaled = onnx_quant.write_torch_weights(inp.onnx_file, model, result.model)
        counts = onnx_quant.int4_ort(scaled, out_onnx, "rtn", bs, symmetric=sym, exclude=head_nodes)
        diagnostics.update(
            alphas=result.alphas,
            clipped_range_share=result.clipped,
            calibration_output_error=result.errors,
            note="own AWQ scale search and weight clipping folded into the FP32 graph, then ONNX "
            "Runtime's RTN; LM head in float",
        )
    else:
        raise InputError(f"unknown 4-bit algorithm {variant.algorithm!r}")
    return _ort_built(
        out_onnx, inp, op_count=_quant_ops(counts), expected_ops=expected, diagnostics=diagnostics
    )
