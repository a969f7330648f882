"""Checks of a run against the machine it starts on, and the memory its LM rules request.

The Snakefile calls these once, in the process that starts the run, before the DAG is built:
a run that cannot fit (the language model's training step is larger than this machine's
memory), a ``device: cuda`` without a GPU, or a ``results_dir`` that cannot be written each
stop it with one ``whylab:`` line instead of a failing job later. ``lm_*_mem_mb`` size the
LM rules' ``mem_mb`` from the memory planner (:mod:`whylab.memory.planner`, pure Python, no
torch import), so what a SLURM job requests follows the config.

Margins, stated once: every torch job holds about 1 GB before its model exists (Python,
torch, transformers, ONNX Runtime and the corpus; ~0.6 GB measured on the quantized-variant
jobs of the default config), counted as ``BASE_MB``; a predicted peak is requested with
``MARGIN`` (x1.5: the allocator's caching and fragmentation, and the evaluation passes the
planner does not model).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from whylab.errors import InputError

GiB = 2**30
MB = 10**6
BASE_MB = 1000  # a torch job's process before its model: interpreter, libraries, corpus
MARGIN = 1.5  # over a predicted peak


def lm_planner_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The planner's (transformers') config.json of the run's language model (lm.model)."""
    model = config["lm"]["model"]
    return {
        "model_type": "llama",
        "hidden_size": model["hidden_size"],
        "num_hidden_layers": model["num_layers"],
        "num_attention_heads": model["num_heads"],
        "num_key_value_heads": model.get("num_kv_heads") or model["num_heads"],
        "intermediate_size": model["intermediate_size"],
        "vocab_size": config["lm"]["tokenizer"]["vocab_size"],
        "max_position_embeddings": model["max_position_embeddings"],
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
    }


def lm_train_peak_bytes(config: Mapping[str, Any]) -> int:
    """The planner's peak of one lm_train step: FP32 weights, AdamW, sdpa, training.batch_size x block_size.

    FP32 is an upper bound of the bf16 autocast a GPU run uses (its weights and Adam state stay FP32).
    """
    from whylab.memory.planner import Setup, plan

    training = config["lm"]["training"]
    setup = Setup(batch=training["batch_size"], seq=training["block_size"], dtype="fp32", attention="sdpa")
    return plan(lm_planner_config(config), setup, name="lm.model").peak


def lm_weights_bytes(config: Mapping[str, Any]) -> int:
    """The LM's FP32 weights (parameters x 4 bytes)."""
    from whylab.memory.planner import arch_from_config, param_count

    return 4 * param_count(arch_from_config(lm_planner_config(config), "lm.model"))


def lm_train_mem_mb(config: Mapping[str, Any]) -> int:
    """lm_train's mem_mb (attempt 1): BASE_MB + MARGIN x the planner's peak."""
    return BASE_MB + math.ceil(MARGIN * lm_train_peak_bytes(config) / MB)


def lm_copies_mem_mb(config: Mapping[str, Any], copies: int) -> int:
    """mem_mb of a rule that holds `copies` FP32 copies of the LM at once (a model, its ONNX
    export, an ORT session, a quantized variant, a reference), with MARGIN."""
    return BASE_MB + math.ceil(MARGIN * copies * lm_weights_bytes(config) / MB)


def real_scale_weights_bytes(config: Mapping[str, Any]) -> int:
    """FP32 weights of the larger of the real-scale step's two models (quantization.real_scale:
    BERT-base and the Llama-2-7B-width layers)."""
    from whylab.memory.planner import arch_from_config, param_count

    shapes = config["quantization"]["real_scale"]
    sizes = []
    for family in ("bert", "llama"):
        m = shapes[family]
        cfg = {
            "model_type": family,
            "hidden_size": m["hidden_size"],
            "num_hidden_layers": m["num_layers"],
            "num_attention_heads": m["num_heads"],
            "intermediate_size": m["intermediate_size"],
            "vocab_size": m["vocab_size"],
            "max_position_embeddings": m["max_position_embeddings"],
        }
        sizes.append(4 * param_count(arch_from_config(cfg, f"quantization.real_scale.{family}")))
    return max(sizes)


# the real-scale step holds the FP32 model, its ONNX export and the FP32, INT8 and INT4 sessions
# of one model at a time: 3.46 GB peak on the default config, 4.1 x its 843 MB Llama-width layer
REAL_SCALE_COPIES = 4


def real_scale_mem_mb(config: Mapping[str, Any]) -> int:
    """quant_real_scale's mem_mb (attempt 1): BASE_MB + MARGIN x REAL_SCALE_COPIES FP32 copies."""
    return BASE_MB + math.ceil(MARGIN * REAL_SCALE_COPIES * real_scale_weights_bytes(config) / MB)


# --- the machine --------------------------------------------------------------------------------


def host_memory_bytes() -> int | None:
    """This machine's physical memory (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gpu_memory_bytes() -> int | None:
    """The first GPU's memory from nvidia-smi (None without a driver or an answer)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return int(out.split()[0]) * 2**20  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def check_lm_fits(config: Mapping[str, Any], device: str, mem_mb: int) -> None:
    """Stop a local run whose lm_train step is predicted larger than this machine's memory."""
    peak = lm_train_peak_bytes(config)
    if device == "cuda":
        total, where = gpu_memory_bytes(), "this machine's GPU has"
    else:
        total, where = host_memory_bytes(), "this machine has"
    if total is None or peak <= total:
        return
    training = config["lm"]["training"]
    raise InputError(
        f"config error: lm.model does not fit: one lm_train step needs about {peak / GiB:,.1f} GiB "
        f"(memory planner: FP32 AdamW, batch {training['batch_size']} x block {training['block_size']}), "
        f"{where} {total / GiB:,.1f} GiB (the rule would request mem_mb={mem_mb:,}); "
        "make lm.model or lm.training.batch_size smaller"
    )


def check_device(device: str, torch_has_cuda: bool) -> None:
    """``device: cuda`` on a machine where torch cannot reach a GPU."""
    if device != "cuda":
        return
    if not shutil.which("nvidia-smi"):
        raise InputError(
            "config error: device: cuda, but this machine has no NVIDIA driver (nvidia-smi not found); "
            "use device: auto or cpu here, or run on a GPU machine or through a cluster executor"
        )
    if not torch_has_cuda:
        raise InputError(
            "config error: device: cuda, but the installed torch is a CPU build; install a CUDA build "
            "(pip install -e '.[gpu]') or use --sdm conda (workflow/envs/ml-gpu.yaml)"
        )


def check_writable(folder: str | Path, key: str) -> None:
    """The folder, or the nearest folder above it that exists, can be written (nothing is created)."""
    path = Path(folder).absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return
    why = "is not a folder" if not probe.is_dir() else "is not writable"
    raise InputError(
        f"config error: {key}: {str(folder)!r} cannot be written ({str(probe)!r} {why}); pick a folder you can write"
    )
