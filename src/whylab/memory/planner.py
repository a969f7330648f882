"""Training-memory planner: "will fine-tuning this model fit on my GPU, and what does each trick buy?"

``python -m whylab plan-memory MODEL [--batch B --seq S --dtype bf16 --optimizer adamw ...] [--json]``

MODEL is a preset name (:mod:`whylab.memory.presets`) or the path of a model's
``config.json``. Three families are understood: BERT (encoder, fine-tuned as
``BertForSequenceClassification``), GPT-2 (``GPT2LMHeadModel``) and Llama
(``LlamaForCausalLM``, grouped-query attention included). Everything is counted
from the config in pure Python (no torch import), so an answer takes well under
a second; the tests check every count against the model classes built on torch's
meta device and every activation count against the tensors autograd really saves
in small models of each family.

Per component, in bytes:

- weights: parameters × bytes of the weight dtype (``--qlora``: NF4 with double
  quantization, 4.127 bits, on the blocks' Linear layers; embeddings and head stay 16-bit);
- master copy: the FP32 copy of the trainable weights that mixed-precision training keeps
  (``--dtype bf16|fp16``; ZeRO's 16 bytes/param = 2 + 2 + 4 master + 8 Adam);
- gradients: trainable parameters × gradient bytes (16-bit in mixed precision);
- optimizer state: AdamW two FP32 moments (8 B/param); adamw8bit (bitsandbytes) two
  blockwise 8-bit moments (tensors below 4096 values stay 32-bit); SGD none; AdaFactor
  (torch.optim.Adafactor) a factored second moment: a row and a column vector per matrix;
- activations: the tensors autograd saves for backward, counted operation by operation
  for each family (``eager``: the b·a·s² attention probabilities are stored;
  ``sdpa``/``flash``: a fused kernel keeps only a log-sum-exp per head and token);
  dropout masks at ``mask_bytes`` (1: CUDA's bool masks);
- logits: the FP32 log-softmax the loss keeps, plus the two FP32 b·s·V gradients that
  exist together at the start of backward;
- buffers: the model's registered buffers (position ids, causal masks, RoPE frequencies).

The peak is the larger of two moments (the phase model of
:func:`whylab.memory.calculator.training_estimate`, validated on measured steps): the
start of backward (weights, master, optimizer state, activations, logits) and the
optimizer step (weights, master, gradients, optimizer state). The sum of all terms
is shown too: it is what most back-of-the-envelope formulas add up. Against a measured
AdamW step (MemTracker, CPU) the peak is within 0.1% for GPT-2 and Llama; BERT with a
classification head peaks inside a layer's backward, on transient gradients the phase
model does not count, and is under-estimated by about 5% (tests/test_memory_planner.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from whylab.errors import InputError
from whylab.memory.activations import ATTENTION as ATTENTION
from whylab.memory.activations import CUDA as CUDA
from whylab.memory.activations import Kernels as Kernels
from whylab.memory.activations import head_activation_bytes as head_activation_bytes
from whylab.memory.activations import layer_activation_bytes as layer_activation_bytes
from whylab.memory.activations import logits_bytes as logits_bytes
from whylab.memory.architecture import DEFAULTS as DEFAULTS
from whylab.memory.architecture import FAMILIES as FAMILIES
from whylab.memory.architecture import Arch as Arch
from whylab.memory.architecture import Param as Param
from whylab.memory.architecture import arch_from_config as arch_from_config
from whylab.memory.architecture import buffer_bytes as buffer_bytes
from whylab.memory.architecture import param_count as param_count
from whylab.memory.architecture import param_list as param_list
from whylab.memory.presets import PRESETS
from whylab.memory.training_plan import BNB8_BLOCK as BNB8_BLOCK
from whylab.memory.training_plan import BNB8_MIN_SIZE as BNB8_MIN_SIZE
from whylab.memory.training_plan import DTYPES as DTYPES
from whylab.memory.training_plan import GB as GB
from whylab.memory.training_plan import GPU_SIZES_GB as GPU_SIZES_GB
from whylab.memory.training_plan import NF4_BYTES as NF4_BYTES
from whylab.memory.training_plan import OFFLOAD as OFFLOAD
from whylab.memory.training_plan import OPTIMIZERS as OPTIMIZERS
from whylab.memory.training_plan import GiB as GiB
from whylab.memory.training_plan import Plan as Plan
from whylab.memory.training_plan import Setup as Setup
from whylab.memory.training_plan import _optimizer_bytes as _optimizer_bytes
from whylab.memory.training_plan import accelerate_estimate as accelerate_estimate
from whylab.memory.training_plan import lora_params as lora_params
from whylab.memory.training_plan import plan as plan

# --------------------------------------------------------------------------- command line


def load_model_config(model: str) -> tuple[str, dict[str, Any]]:
    """A preset name or a ``config.json`` path (or a folder holding one)."""
    if model in PRESETS:
        return model, dict(PRESETS[model])
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise InputError(
            f"plan-memory: MODEL {model!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json file"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"plan-memory: {path} is not a JSON config: {exc}") from None
    if not isinstance(cfg, dict):
        raise InputError(f"plan-memory: {path} does not hold a JSON object")
    return path.parent.name or path.stem, cfg


def render(p: Plan) -> str:
    """The plan as a plain-text table (GiB)."""
    s = p.setup
    lines = [
        f"{p.model} ({p.family}): {p.params:,} parameters, {p.trainable_params:,} trainable",
        f"batch {s['batch']} × seq {s['seq']}, {s['dtype']}{' mixed precision' if s['dtype'] != 'fp32' and s['master'] else ''}, "
        f"{s['optimizer']}, attention {s['attention']}, checkpointing {'on' if s['checkpointing'] else 'off'}, "
        f"offload {s['offload']}",
        "",
        f"{'component':<38}{'GiB':>10}",
    ]
    for k, v in p.components.items():
        lines.append(f"{k:<38}{v / GiB:>10.2f}")
    lines.append(f"{'sum of all terms':<38}{p.sum_of_terms / GiB:>10.2f}")
    lines.append(f"{'estimated peak (phase model)':<38}{p.peak / GiB:>10.2f}")
    for k, v in p.host.items():
        lines.append(f"{'CPU memory: ' + k:<38}{v / GiB:>10.2f}")
    lines.append("")
    lines.append("fits: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in p.fits.items()))
    acc = p.accelerate
    lines.append(
        f"accelerate estimate-memory ({acc['dtype']}): total size {acc['total_size'] / GiB:.2f} GiB, "
        f"'training using Adam' {acc['training_using_adam'] / GiB:.2f} GiB (weights, gradients and Adam only; "
        "no activations)"
    )
    lines.extend(f"note: {n}" for n in p.notes)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whylab plan-memory", description="Training memory of a model, per component, in GiB."
    )
    parser.add_argument("model", help=f"a preset ({', '.join(PRESETS)}) or a config.json path")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument(
        "--dtype", choices=DTYPES, default="bf16", help="bf16/fp16: mixed precision (FP32 master)"
    )
    parser.add_argument("--pure", action="store_true", help="16-bit training without an FP32 master copy")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing per layer")
    parser.add_argument(
        "--lora", type=int, default=0, metavar="R", help="LoRA rank (adapters on every block Linear)"
    )
    parser.add_argument("--qlora", action="store_true", help="base weights in NF4 (needs --lora)")
    parser.add_argument("--offload", choices=OFFLOAD, default="none")
    parser.add_argument(
        "--attention", choices=ATTENTION, default="sdpa", help="eager stores the s² probabilities"
    )
    parser.add_argument(
        "--overhead-gib", type=float, default=0.0, help="add a CUDA context/allocator allowance"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--output", type=Path, default=None, metavar="PATH", help="also write the JSON to PATH"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        name, cfg = load_model_config(args.model)
        result = plan(
            cfg,
            Setup(
                batch=args.batch,
                seq=args.seq,
                dtype=args.dtype,
                optimizer=args.optimizer,
                checkpointing=args.checkpointing,
                lora=args.lora,
                qlora=args.qlora,
                offload=args.offload,
                attention=args.attention,
                master=not args.pure,
            ),
            name,
            int(args.overhead_gib * GiB),
        )
    except InputError as exc:
        print(f"whylab: {exc}", file=sys.stderr)
        return 2
    data = json.dumps(result.to_dict(), indent=2)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(data + "\n", encoding="utf-8")
    print(data if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
