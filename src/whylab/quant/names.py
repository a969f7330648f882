"""The names of the quantized variants: what each is, and which ones the config asks for.

Torch-free on purpose: ``workflow/rules/quantize.smk`` reads these while Snakemake parses the
DAG, and importing torch there would slow every run, the no-op included. The building and
measuring of a variant is in :mod:`whylab.quant.variants`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whylab.errors import InputError

REFERENCES = {"onnxruntime": "ort-fp32", "torch": "torch-fp32"}
INT4_ALGORITHMS = ("rtn", "hqq", "gptq", "awq")


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # fp32 | half | int8 | int4
    bits: int
    runtime: str  # onnxruntime | torch
    algorithm: str
    block_size: int | None = None
    needs_cuda: bool = False

    @property
    def reference(self) -> str:
        return REFERENCES[self.runtime]

    @property
    def is_reference(self) -> bool:
        return self.name == self.reference


_FIXED = {
    "ort-fp32": Variant("ort-fp32", "fp32", 32, "onnxruntime", "fp32"),
    "torch-fp32": Variant("torch-fp32", "fp32", 32, "torch", "fp32"),
    "torch-bf16": Variant("torch-bf16", "half", 16, "torch", "bf16"),
    "torch-fp16": Variant("torch-fp16", "half", 16, "torch", "fp16", needs_cuda=True),
    "ort-fp16": Variant("ort-fp16", "half", 16, "onnxruntime", "fp16", needs_cuda=True),
    "ort-int8-dynamic": Variant("ort-int8-dynamic", "int8", 8, "onnxruntime", "dynamic"),
    "ort-int8-static": Variant("ort-int8-static", "int8", 8, "onnxruntime", "static"),
    "torchao-int8-dynamic": Variant("torchao-int8-dynamic", "int8", 8, "torch", "int8_dynamic"),
    "torchao-int8-weight-only": Variant("torchao-int8-weight-only", "int8", 8, "torch", "int8_weight_only"),
}
_INT4 = re.compile(r"^ort-int4-(?P<alg>[a-z]+)-b(?P<bs>\d+)$")


def parse(name: str) -> Variant:
    if name in _FIXED:
        return _FIXED[name]
    m = _INT4.match(name)
    if m and m["alg"] in INT4_ALGORITHMS:
        return Variant(name, "int4", 4, "onnxruntime", m["alg"], int(m["bs"]))
    raise InputError(f"unknown quantization variant {name!r}")


def variant_names(q: Mapping[str, Any]) -> list[str]:
    """Every variant the ``quantization`` config section asks for, references first."""
    names = ["ort-fp32", "torch-fp32"]
    if q["fp16"]["enabled"]:
        names += ["torch-bf16", "torch-fp16", "ort-fp16"]
    names += ["ort-int8-dynamic", "ort-int8-static"]
    names += [f"torchao-{k.replace('_', '-')}" for k in q["int8"]["torchao_configs"]]
    algorithms = list(q["int4"]["algorithms"])
    for bs in q["int4"]["block_sizes"]:
        names += [f"ort-int4-{alg}-b{bs}" for alg in INT4_ALGORITHMS if alg in algorithms]
    return names
