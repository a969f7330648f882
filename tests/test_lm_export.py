"""whylab.lm.export: optimum ONNX export of a tiny Llama, logit parity, ORT generation, providers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lm_helpers import TINY_MODEL, write_corpus, write_tokenizer
from whylab.lm import export
from whylab.lm.data import load_tokenizer
from whylab.lm.model import build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lmexport")
    paths = write_corpus(root / "corpus" / "en", chars=12_000)
    tok = load_tokenizer(write_tokenizer(root / "tok", paths["train"], vocab_size=300))
    torch.manual_seed(0)
    model = build_model(
        TINY_MODEL,
        len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return {"model": root / "model", "corpus": root / "corpus", "root": root}


@pytest.fixture(scope="module")
def exported(saved: dict[str, Path]) -> Path:
    settings = {
        "device": "cpu",
        "train_languages": ["en"],
        "export": {"check_blocks": 2, "check_block_size": 32, "max_new_tokens": 6},
    }
    out = saved["root"] / "onnx" / "fp32"
    export.run_step(settings, {"model": saved["model"], "corpus": saved["corpus"]}, {"onnx": out}, threads=1)
    return out


def test_export_matches_pytorch_logits_within_tolerance(exported):
    check = json.loads((exported / "export_check.json").read_text())
    assert (exported / "model.onnx").is_file() and check["passed"] is True
    assert check["max_abs_logit_diff"] <= check["tolerance"] == 1e-4
    assert check["check_inputs"]["source"] == "validation text"
    cpu = check["checks"][0]
    assert cpu["session_providers"][0] == "CPUExecutionProvider"
    assert check["skipped"] == []  # device cpu asks for no CUDA check


def test_linear_layers_export_as_matmul_not_gemm(exported):
    ops = json.loads((exported / "export_check.json").read_text())["op_counts"]
    # 4 attention + 3 MLP projections per layer, and the output head
    assert ops.get("MatMul", 0) >= 7 * TINY_MODEL["num_layers"] + 1
    assert ops.get("Gemm", 0) == 0


def test_ort_generation_runs_and_follows_pytorch_greedy(exported, saved):
    from transformers import AutoModelForCausalLM

    ort_model = export.load_ort(exported, "CPUExecutionProvider")
    tok = load_tokenizer(exported)
    torch_model = AutoModelForCausalLM.from_pretrained(saved["model"]).eval()
    gen = export.generation_check(torch_model, ort_model, tok, "def", 8)
    assert gen["new_tokens"] == 8 and gen["matches_torch_greedy"] is True
    assert gen["ort_text"].startswith("def")
    diff = export.logit_diff(torch_model, ort_model, torch.randint(0, len(tok), (2, 16)))
    assert diff < 1e-4


def test_failed_parity_check_stops_the_step_and_leaves_no_output(saved, tmp_path):
    settings = {
        "device": "cpu",
        "export": {"atol": -1.0, "check_blocks": 1, "check_block_size": 16, "max_new_tokens": 2},
    }
    out = tmp_path / "onnx"
    with pytest.raises(RuntimeError, match="export check failed"):
        export.run_step(settings, {"model": saved["model"]}, {"onnx": out}, threads=1)
    assert not out.exists()
    kept = json.loads((tmp_path / "onnx.failed_check.json").read_text())
    assert kept["passed"] is False and kept["check_inputs"]["source"] == "random token ids"
