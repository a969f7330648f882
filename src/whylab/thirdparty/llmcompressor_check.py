"""llmcompressor's GPTQ (C15) and SmoothQuant (C16) on the trained LM, in llmcompressor's own environment.

    .venv-llmc/bin/python -m whylab.thirdparty.llmcompressor_check --settings JSON \\
        --input model=results/lm/model --input corpus=results/corpus \\
        --output result=results/thirdparty/llmcompressor.json [--threads N]

``settings``: ``languages`` (the LM's training languages), ``block_size`` and
``calibration_blocks`` (C15's and C16's calibration: the first blocks of the training split, as
their experiments take them), ``group_size``, ``symmetric`` and ``dampening`` (GPTQ's), ``alpha``
(SmoothQuant's). Writes one JSON file: the environment, the GPTQ check
(:mod:`whylab.thirdparty.llmcompressor_gptq`) and the SmoothQuant check
(:mod:`whylab.thirdparty.llmcompressor_smoothquant`). A check that cannot run (llmcompressor
absent from this interpreter: ``absent: true``, or an error inside it) is recorded with ``ran:
false`` and the error's line in ``why_not``; the claims then stay on torchao and say why.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "llmcompressor", "compressed-tensors")
SETUP_HINT = "make setup-llmc builds .venv-llmc"


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def why_not(err: BaseException) -> str:
    """The error's last line, as a traceback ends (``ModuleNotFoundError: No module named 'x'``)."""
    return traceback.format_exception_only(type(err), err)[-1].strip()


def guarded(what: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``, or ``{"ran": False, "why_not": <its error's line>}`` when it raises."""
    try:
        return run()
    except Exception as err:  # any failure of the third-party code is the finding, not a crash
        traceback.print_exc()
        return {"implementation": what, "ran": False, "why_not": why_not(err)}


def calibration(model_dir: Path, corpus: Path, settings: dict[str, Any]) -> Any:
    """C15's first calibration set (= C16's calibration blocks): the first ``calibration_blocks``
    blocks of the training split, at most half of what twice that many gives."""
    from whylab.lm.data import corpus_files, load_tokenizer, token_blocks

    n = int(settings["calibration_blocks"])
    tokenizer = load_tokenizer(model_dir)
    files = corpus_files(corpus, [str(x) for x in settings["languages"]], "train")
    blocks = token_blocks(files, tokenizer, int(settings["block_size"]), 2 * n)
    return blocks[: max(1, min(n, blocks.shape[0] // 2))]


def run(model_dir: Path, corpus: Path, settings: dict[str, Any], threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": sys.executable,
        "python_version": platform.python_version(),
        "versions": versions(),
        "settings": settings,
    }
    try:
        import llmcompressor  # noqa: F401
    except ImportError as err:
        absent = {
            "ran": False,
            "absent": True,
            "why_not": f"{why_not(err)} in {sys.executable} ({SETUP_HINT})",
        }
        return out | {
            "gptq": {"implementation": "llmcompressor GPTQModifier", **absent},
            "smoothquant": {"implementation": "llmcompressor SmoothQuantModifier", **absent},
        }
    import torch
    from transformers import AutoModelForCausalLM

    from whylab.thirdparty.llmcompressor_gptq import gptq_check
    from whylab.thirdparty.llmcompressor_smoothquant import smoothquant_check

    torch.manual_seed(0)
    torch.set_num_threads(max(1, threads))
    blocks = calibration(model_dir, corpus, settings)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    started = time.perf_counter()
    out["gptq"] = guarded(
        "llmcompressor GPTQModifier",
        lambda: gptq_check(
            model,
            blocks,
            int(settings["group_size"]),
            bool(settings["symmetric"]),
            float(settings["dampening"]),
        ),
    )
    out["gptq_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    out["smoothquant"] = guarded(
        "llmcompressor SmoothQuantModifier",
        lambda: smoothquant_check(model, blocks, float(settings["alpha"])),
    )
    out["smoothquant_seconds"] = time.perf_counter() - started
    out["calibration_blocks"] = list(blocks.shape)
    return out


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"whylab: {flag} {item!r}: expected NAME=PATH")
        pairs[name] = value
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="JSON (see the module docstring)")
    parser.add_argument("--input", action="append", default=[], help="model=DIR, corpus=DIR")
    parser.add_argument("--output", action="append", default=[], help="result=FILE")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    inputs, outputs = _pairs(args.input, "--input"), _pairs(args.output, "--output")
    record = run(Path(inputs["model"]), Path(inputs["corpus"]), json.loads(args.settings), args.threads)
    target = Path(outputs["result"])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
