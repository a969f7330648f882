"""Export the trained model to ONNX with optimum, and prove the export is faithful: ``lm_export``.

The export (``optimum.exporters.onnx.main_export``, task text-generation-with-past)
is checked three ways before anyone quantizes it: its logits match PyTorch's on
real validation text within a stated tolerance, ONNX Runtime generates text
through ``ORTModelForCausalLM.generate`` (the with-past graph, token by token),
and the providers the ONNX Runtime session actually used are recorded, so a
silent CPU fallback can never be reported as GPU. Everything is written into the
output folder atomically, ``export_check.json`` included.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from whylab.errors import InputError
from whylab.files import atomic_path, write_json
from whylab.lm.data import load_tokenizer, token_blocks
from whylab.runtime import resolve_device, set_threads

if TYPE_CHECKING:
    from transformers import GenerationMixin

EXPORT_DEFAULTS: dict[str, Any] = {
    "opset": None,  # None: optimum's default for the architecture
    "atol": 1e-4,  # max |logit difference| allowed on the CPU provider (fp32 both sides)
    "atol_cuda": 2e-2,  # the CUDA provider may use TF32 and other kernels
    "check_blocks": 4,
    "check_block_size": 64,
    "prompt": "The",
    "max_new_tokens": 16,
    "fail_on_mismatch": True,
}
TASK = "text-generation-with-past"


def export_settings(section: Mapping[str, Any] | None) -> dict[str, Any]:
    section = dict(section or {})
    unknown = set(section) - set(EXPORT_DEFAULTS)
    if unknown:
        raise InputError(f"lm.export: unknown key(s) {', '.join(sorted(unknown))}")
    return {**EXPORT_DEFAULTS, **section}


def export_onnx(model_dir: Path, out_dir: Path, opset: int | None = None) -> None:
    """Run optimum's exporter on a saved model folder (offline, CPU, fp32)."""
    from optimum.exporters.onnx import main_export

    main_export(
        str(model_dir),
        output=str(out_dir),
        task=TASK,
        opset=opset,
        device="cpu",
        local_files_only=True,
        do_validation=False,
        library_name="transformers",
    )


def load_ort(onnx_dir: Path, provider: str) -> Any:
    from optimum.onnxruntime import ORTModelForCausalLM

    return ORTModelForCausalLM.from_pretrained(
        str(onnx_dir), provider=provider, use_cache=True, local_files_only=True
    )


def check_blocks(
    model_dir: Path, corpus_files: list[Path], block_size: int, n: int, vocab_size: int
) -> tuple[torch.Tensor, str]:
    """Inputs for the parity check: validation text when given, else seeded random ids."""
    tokenizer = load_tokenizer(model_dir)
    if corpus_files:
        try:
            return token_blocks(corpus_files, tokenizer, block_size, n), "validation text"
        except InputError:
            pass  # too little text for one block: fall back to random ids
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (n, block_size), generator=gen), "random token ids"


def logit_diff(torch_model: torch.nn.Module, ort_model: Any, blocks: torch.Tensor) -> float:
    """max |logit_torch - logit_ort| over every position and vocabulary entry."""
    mask = torch.ones_like(blocks)
    dev = _ort_device(ort_model)  # with the CUDA provider optimum binds inputs on the GPU
    with torch.no_grad():
        ref = torch_model(input_ids=blocks, attention_mask=mask).logits.float()
        got = ort_model(input_ids=blocks.to(dev), attention_mask=mask.to(dev)).logits
    got = torch.as_tensor(np.asarray(got.cpu() if isinstance(got, torch.Tensor) else got))
    return float((ref - got.float()).abs().max())


def _ort_device(ort_model: Any) -> torch.device:
    return torch.device(getattr(ort_model, "device", "cpu"))


def generation_check(
    torch_model: GenerationMixin, ort_model: Any, tokenizer: Any, prompt: str, max_new_tokens: int
) -> dict[str, Any]:
    """Greedy generation through ONNX Runtime (with past key values) next to PyTorch's."""
    ids = tokenizer(prompt, return_tensors="pt")
    kwargs = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "min_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
    }
    dev = _ort_device(ort_model)
    start = time.perf_counter()
    ort_out = ort_model.generate(**{k: v.to(dev) for k, v in ids.items()}, **kwargs).cpu()
    ort_seconds = time.perf_counter() - start
    with torch.no_grad():
        torch_out = torch_model.generate(**ids, **kwargs)
    prompt_len = ids["input_ids"].shape[1]
    new_ort = ort_out[0, prompt_len:].tolist()
    new_torch = torch_out[0, prompt_len:].tolist()
    return {
        "prompt": prompt,
        "new_tokens": len(new_ort),
        "ort_text": tokenizer.decode(ort_out[0], skip_special_tokens=True),
        "torch_text": tokenizer.decode(torch_out[0], skip_special_tokens=True),
        "matches_torch_greedy": new_ort == new_torch,
        "ort_seconds": ort_seconds,
    }


def op_counts(onnx_file: Path) -> dict[str, int]:
    """How many nodes of each op type the graph has (MatMul, not Gemm, is what INT4 needs)."""
    import onnx

    model = onnx.load(str(onnx_file), load_external_data=False)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """``whylab lm_export``: inputs model (+ optional corpus); output onnx (folder)."""
    set_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM

    cfg = export_settings(settings.get("export"))
    model_dir = Path(inputs["model"])
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: not a saved model folder (no config.json)")
    languages = list(settings.get("train_languages", ["en"]))
    corpus_files = []
    if "corpus" in inputs:
        corpus_files = [
            p for lang in languages if (p := Path(inputs["corpus"]) / lang / "valid.txt").is_file()
        ]
    device = resolve_device(settings.get("device", "auto"))

    torch_model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    tokenizer = load_tokenizer(model_dir)
    blocks, source = check_blocks(
        model_dir,
        corpus_files,
        int(cfg["check_block_size"]),
        int(cfg["check_blocks"]),
        torch_model.config.vocab_size,
    )

    out_dir = Path(outputs["onnx"])
    with atomic_path(out_dir) as tmp:
        start = time.perf_counter()
        export_onnx(model_dir, tmp, cfg["opset"])
        export_seconds = time.perf_counter() - start
        tokenizer.save_pretrained(tmp)  # the ORT folder loads like the PyTorch one

        checks: list[dict[str, Any]] = []
        wanted = ["CPUExecutionProvider"]
        available = available_providers()
        skipped: list[str] = []
        if device == "cuda":
            if "CUDAExecutionProvider" in available:
                wanted.append("CUDAExecutionProvider")
            else:
                skipped.append(
                    "CUDA provider check: this onnxruntime build has no "
                    "CUDAExecutionProvider (install onnxruntime-gpu instead of onnxruntime)"
                )
        for provider in wanted:
            ort_model = load_ort(tmp, provider)
            actual = list(ort_model.providers)
            atol = float(cfg["atol"] if provider == "CPUExecutionProvider" else cfg["atol_cuda"])
            diff = logit_diff(torch_model, ort_model, blocks)
            gen = generation_check(
                torch_model, ort_model, tokenizer, str(cfg["prompt"]), int(cfg["max_new_tokens"])
            )
            checks.append(
                {
                    "requested_provider": provider,
                    "session_providers": actual,
                    "ran_on_requested_provider": actual[:1] == [provider],
                    "max_abs_logit_diff": diff,
                    "tolerance": atol,
                    "passed": diff <= atol
                    and gen["new_tokens"] == int(cfg["max_new_tokens"])
                    and actual[:1] == [provider],
                    "generation": gen,
                }
            )
            del ort_model

        files = sorted(p.name for p in tmp.iterdir())
        onnx_bytes = sum(p.stat().st_size for p in tmp.iterdir() if p.name.startswith("model.onnx"))
        cpu = checks[0]
        report = {
            "task": TASK,
            "opset": cfg["opset"],
            "source_model": str(model_dir),
            "check_inputs": {
                "source": source,
                "blocks": int(blocks.shape[0]),
                "block_size": int(blocks.shape[1]),
            },
            "max_abs_logit_diff": cpu["max_abs_logit_diff"],
            "tolerance": cpu["tolerance"],
            "passed": all(c["passed"] for c in checks),
            "providers_available": available,
            "checks": checks,
            "generation_sample": cpu["generation"]["ort_text"],
            "skipped": skipped,
            "files": files,
            "onnx_size_bytes": onnx_bytes,
            "op_counts": op_counts(tmp / "model.onnx"),
            "export_seconds": export_seconds,
        }
        write_json(tmp / "export_check.json", report)
        for c in checks:
            print(
                f"{c['requested_provider']} (session: {', '.join(c['session_providers'])}): "
                f"max |logit diff| {c['max_abs_logit_diff']:.2e} (tolerance {c['tolerance']:.0e}), "
                f"generated {c['generation']['ort_text']!r}",
                file=sys.stderr,
            )
        if not report["passed"] and cfg["fail_on_mismatch"]:
            kept = out_dir.parent / f"{out_dir.name}.failed_check.json"
            shutil.copy(tmp / "export_check.json", kept)
            raise RuntimeError(f"ONNX export check failed (details in {kept})")
