"""``lm.pretrained``: a local Hugging Face causal-LM folder that C12–C16 use instead of the trained LM.

A small randomly initialised Llama is saved with ``save_pretrained`` (safetensors) next to its
tokenizer in a temp folder; the config check, the offline loading, a C16 run on it, and a dry run
of the DAG (lm_train not scheduled, lm_export and the C12–C16 jobs reading that folder) are tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm_helpers import write_corpus, write_tokenizer
from whylab.config import check_config
from whylab.errors import InputError
from whylab.lm.pretrained import check_folder, load_causal_lm
from workflow_copy import REPO, workflow_copy

torch.set_num_threads(1)


def save_random_llama(folder: Path, corpus: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from whylab.lm.data import load_tokenizer

    tok_dir = write_tokenizer(folder.parent / "tok", corpus / "train.txt", vocab_size=300)
    tokenizer = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrained")
    corpus = write_corpus(root / "corpus" / "en", chars=20_000)["train"].parent
    return save_random_llama(root / "my-llama", corpus)


def test_a_saved_folder_passes_the_check_and_loads_offline(pretrained, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert check_folder(pretrained) == pretrained.resolve()
    model = load_causal_lm(pretrained)
    assert model.config.hidden_size == 32 and not model.training
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("model.safetensors", "no \\*.safetensors"),
        ("config.json", "no config.json"),
        ("tokenizer.json", "no tokenizer"),
    ],
)
def test_an_incomplete_folder_is_a_one_line_config_error(pretrained, tmp_path, remove, message):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(pretrained, broken)
    (broken / remove).unlink()
    if remove == "tokenizer.json":
        (broken / "tokenizer_config.json").unlink()
    with pytest.raises(InputError, match=rf"lm\.pretrained.*{message}"):
        check_folder(broken)


def test_the_config_check_resolves_the_folder_and_rejects_a_missing_one(pretrained, tmp_path):
    import yaml

    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    base["lm"]["pretrained"] = str(pretrained)
    assert check_config(base)["lm"]["pretrained"] == str(pretrained.resolve())
    base["lm"]["pretrained"] = str(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"lm\.pretrained.*not a folder"):
        check_config(base)


def test_dry_run_uses_the_folder_and_does_not_schedule_lm_train(pretrained, tmp_path):
    work = workflow_copy(tmp_path / "wf")
    extra = work / "pretrained.yaml"
    extra.write_text(json.dumps({"lm": {"pretrained": str(pretrained)}}))
    targets = [f"results/concepts/{c}/result.json" for c in ("C12", "C13", "C14", "C15", "C16")]
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "1", "--dry-run", "--quiet", "rules"]
    cmd += ["--configfile", "config/test.yaml", str(extra)]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = proc.stdout + proc.stderr
    assert "lm_train" not in jobs
    assert "lm_export" in jobs and "concept_C16" in jobs and "concept_C14" in jobs
    # every rule that reads the model reads the user's folder
    detail = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            targets[0],
            targets[-1],
            "--cores",
            "1",
            "--dry-run",
            "--printshellcmds",
            "--configfile",
            "config/test.yaml",
            str(extra),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"--input model={pretrained.resolve()}" in detail.stdout
    # C12's measure job records that the model is a pretrained checkpoint (claim.yaml's regime)
    assert '"lm_pretrained": true' in detail.stdout


def test_c16_runs_on_the_pretrained_folder(pretrained, tmp_path):
    """The concept reads the user's model and tokenizer (no trained LM exists); with the outlier
    condition off, the model as given decides."""
    import copy

    from whylab.concepts import run_concept
    from whylab.concepts.c16_smoothquant import experiment as c16

    settings = {
        "seeds": [0, 1],
        "device": "cpu",
        "languages": ["en"],
        "measure": {"block_size": 16, "eval_blocks": 4, "eval_batch_size": 4},
        "calibration": {"blocks": 2},
        **copy.deepcopy(c16.DEFAULTS),
    }
    settings.update(
        alphas=[0.0, 0.5], act_schemes=["per_tensor_static"], calibration_pool_blocks=6, outlier_channels=0
    )
    record = run_concept(
        "C16",
        settings,
        {"model": pretrained, "corpus": pretrained.parent / "corpus"},
        tmp_path / "C16" / "result.json",
    )
    m = record["metrics"]
    assert m["primary_condition"] == "trained" and set(m["conditions"]) == {"trained"}
    assert m["model_parameters"] == sum(p.numel() for p in load_causal_lm(pretrained).parameters())
    assert "model as given" in record["verdict"]["primary"]


def test_config_pretrained_is_the_default_run_on_a_checkpoint(pretrained):
    """`make run CONFIG=config/pretrained.yaml`: the shipped overlay sets only lm.pretrained, and
    with its folder present the config check accepts it over the defaults."""
    import yaml

    overlay = yaml.safe_load((REPO / "config/pretrained.yaml").read_text())
    assert set(overlay) == {"lm"} and set(overlay["lm"]) == {"pretrained"}
    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    base["lm"]["pretrained"] = str(pretrained)  # the overlay's folder, here the tiny checkpoint
    assert check_config(base)["lm"]["pretrained"] == str(pretrained.resolve())
    readme = (REPO / "README.md").read_text()
    assert "make run CONFIG=config/pretrained.yaml" in readme


def test_c12_judges_the_loss_part_on_the_pretrained_folder(pretrained, tmp_path):
    """C12's variant, measure and decide steps on a checkpoint named by lm.pretrained (as the DAG
    runs them with `lm_pretrained: true`). This tiny checkpoint is far below claim.yaml's size
    threshold, so the loss part says so and stays limited; where the threshold is met, the same
    measured numbers decide it (claim.yaml's regime: a pretrained checkpoint of real size)."""
    from quant_support import TINY_QUANT_SETTINGS, run_variant
    from whylab.concepts.c12_int8 import verdict as c12
    from whylab.concepts.context import Measured
    from whylab.lm.export import export_onnx
    from whylab.verdict import Label

    export_onnx(pretrained, tmp_path / "onnx" / "fp32")
    tree = {"model": pretrained, "onnx": tmp_path / "onnx" / "fp32", "corpus": pretrained.parent / "corpus"}
    names = ["ort-fp32", "torch-fp32", "ort-int8-dynamic"]
    rows = [run_variant(tree, name, tmp_path / "variants") for name in names]
    settings = {"quantization": TINY_QUANT_SETTINGS, "variants": names, "lm_pretrained": True}
    whole = {"rows": rows, "real_scale": None, "model_source": str(pretrained), "device": "cpu"}
    metrics = c12.summarize(Measured("C12", settings, [0], whole))
    params = sum(p.numel() for p in load_causal_lm(pretrained).parameters())
    # the torch-fp32 variant's FP32 bytes / 4: the parameters plus the rotary buffers
    assert metrics["model"]["pretrained"] is True and metrics["model"]["source"] == str(pretrained)
    assert params <= metrics["model"]["parameters"] <= 1.01 * params
    assert metrics["regime_pretrained"] is True and metrics["regime_min_parameters"] == 1.1e8
    small = next(p for p in c12.verdict(metrics).parts if p.id == "loss")
    assert small.run is Label.INCONCLUSIVE and "far below the 110M" in str(small.reason)
    real = next(p for p in c12.verdict({**metrics, "regime_min_parameters": params}).parts if p.id == "loss")
    assert real.run in (Label.SUPPORTED, Label.NOT_SUPPORTED)  # decided by this run, not limited
    trained = {**metrics, "regime_min_parameters": params, "model": {**metrics["model"], "pretrained": False}}
    assert next(p for p in c12.verdict(trained).parts if p.id == "loss").run is Label.INCONCLUSIVE
