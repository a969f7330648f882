"""Reading and editing the exported ONNX graph: which MatMuls carry weights, and whose weights they are.

optimum names the exported linear weights anonymously (``onnx::MatMul_536``), so a torch
``nn.Linear`` is found in the graph by value: its weight, transposed, is byte-identical to
exactly one MatMul initializer (the export copies it). With that map our own GPTQ and AWQ
(computed in torch) write their results into the *same* graph ONNX Runtime's own quantizers
see, and the INT4 op count can be held against the number of linear layers.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from whylab.quant.int4 import QuantizedWeight, pack_matmulnbits, unpack_matmulnbits

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class WeightMatMul:
    node_name: str
    weight_name: str  # the initializer holding the (K, N) weight
    k: int
    n: int


def load(path: str | Path) -> onnx.ModelProto:
    return onnx.load(str(path))


def save(model: onnx.ModelProto, path: str | Path) -> None:
    """Save as one file (our models are far below protobuf's 2 GB limit; larger ones get external data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    large = model.ByteSize() > 1_800_000_000
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=large,
        all_tensors_to_one_file=True,
        location=path.name + ".data" if large else None,
    )


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def weight_matmuls(model: onnx.ModelProto) -> list[WeightMatMul]:
    """MatMul nodes whose second input is a rank-2 initializer: the quantizable linear layers."""
    inits = initializers(model)
    out = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        dims = list(inits[node.input[1]].dims)
        if len(dims) == 2:
            out.append(WeightMatMul(node.name, node.input[1], int(dims[0]), int(dims[1])))
    return out


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()


def match_linears(model: onnx.ModelProto, torch_model: Any) -> dict[str, WeightMatMul]:
    """torch module name -> the MatMul whose initializer equals that ``nn.Linear``'s weight (transposed).

    Raises ValueError when a linear layer is missing from the graph or matches more than one
    initializer (then the map would be a guess).
    """
    import torch

    inits = initializers(model)
    by_digest: dict[str, list[WeightMatMul]] = collections.defaultdict(list)
    for wm in weight_matmuls(model):
        by_digest[_digest(numpy_helper.to_array(inits[wm.weight_name]))].append(wm)
    found: dict[str, WeightMatMul] = {}
    for name, module in torch_model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        key = _digest(module.weight.detach().float().cpu().numpy().T)
        matches = by_digest.get(key, [])
        if len({m.weight_name for m in matches}) != 1:
            raise ValueError(
                f"linear layer {name}: {len(matches)} matching MatMul weights in the ONNX graph "
                "(expected exactly one; was the ONNX exported from this model?)"
            )
        found[name] = matches[0]
    return found


def set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Replace an initializer's value in place (same name, dtype float32)."""
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            new = numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name=name)
            model.graph.initializer[i].CopyFrom(new)
            return
    raise KeyError(f"no initializer named {name!r}")


def _ensure_ms_opset(model: onnx.ModelProto) -> None:
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))


def replace_with_matmulnbits(
    model: onnx.ModelProto, wm: WeightMatMul, q: QuantizedWeight, accuracy_level: int = 0
) -> None:
    """Swap the MatMul ``wm`` for a MatMulNBits node holding ``q`` (the fp32 weight is dropped)."""
    if (q.n, q.k) != (wm.n, wm.k):
        raise ValueError(f"{wm.node_name}: quantized weight is {q.n}x{q.k}, the MatMul is {wm.n}x{wm.k}")
    b, scales, zp = pack_matmulnbits(q)
    prefix = f"{wm.weight_name}_Q4G{q.block_size}"
    new_inits = [numpy_helper.from_array(b, prefix), numpy_helper.from_array(scales, prefix + "_scales")]
    nodes = list(model.graph.node)
    index = next(i for i, n in enumerate(nodes) if n.name == wm.node_name)
    old = nodes[index]
    inputs = [old.input[0], prefix, prefix + "_scales"]
    if zp is not None:
        new_inits.append(numpy_helper.from_array(zp, prefix + "_zp"))
        inputs.append(prefix + "_zp")
    new = helper.make_node(
        "MatMulNBits",
        inputs,
        list(old.output),
        name=old.name + "_Q4",
        domain=MS_DOMAIN,
        K=wm.k,
        N=wm.n,
        bits=4,
        block_size=q.block_size,
        accuracy_level=accuracy_level,
    )
    nodes[index] = new
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_inits)
    still_used = any(wm.weight_name in n.input for n in model.graph.node)
    if not still_used:
        for init in list(model.graph.initializer):
            if init.name == wm.weight_name:
                model.graph.initializer.remove(init)
    _ensure_ms_opset(model)


def matmulnbits_weights(model: onnx.ModelProto) -> dict[str, QuantizedWeight]:
    """Every MatMulNBits node's 4-bit weight, keyed by the node's output name.

    The output name survives every quantizer unchanged (initializer names do not), so two
    quantized versions of one graph can be compared layer by layer.
    """
    inits = initializers(model)
    out = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if int(attrs.get("bits", 4)) != 4:
            continue
        b = numpy_helper.to_array(inits[node.input[1]])
        scales = numpy_helper.to_array(inits[node.input[2]])
        zp = numpy_helper.to_array(inits[node.input[3]]) if len(node.input) > 3 and node.input[3] else None
        out[node.output[0]] = unpack_matmulnbits(b, scales, zp, int(attrs["K"]), int(attrs["block_size"]))
    return out


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all initializers: what the runtime holds as weights."""
    total = 0
    for init in model.graph.initializer:
        if init.HasField("raw_data"):
            total += len(init.raw_data)
        else:
            total += numpy_helper.to_array(init).nbytes
    return total
