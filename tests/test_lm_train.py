"""whylab.lm.train: schedule, data order, exact resume after a kill, and the pipeline step."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
import torch

from lm_helpers import TINY_MODEL, write_corpus, write_tokenizer
from whylab.errors import InputError
from whylab.lm.data import load_tokenizer, token_blocks
from whylab.lm.model import build_model
from whylab.lm.train import (
    TrainConfig,
    batch_indices,
    latest_checkpoint,
    lr_factor,
    peak_flops,
    run_step,
    train_model,
)
from whylab.runtime import set_seed

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lmtrain")
    paths = write_corpus(root / "corpus" / "en", chars=20_000)
    paths["root"] = root / "corpus"
    paths["hf"] = write_tokenizer(root / "tok" / "bpe-300", paths["train"], vocab_size=300)
    return paths


def _cfg(**kw) -> TrainConfig:
    base = {
        "block_size": 32,
        "batch_size": 4,
        "max_steps": 12,
        "warmup_steps": 3,
        "eval_every": 4,
        "eval_blocks": 4,
        "checkpoint_every": 4,
        "log_every": 2,
        "learning_rate": 3e-3,
        "keep_checkpoints": 2,
    }
    return TrainConfig.from_settings({**base, **kw})


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = _cfg(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(factors[:10]))
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(55, cfg) == pytest.approx(0.1 + 0.9 * 0.5)


def test_batch_order_is_a_seeded_permutation_per_epoch():
    seen = torch.cat([batch_indices(s, 10, 5, seed=3) for s in range(2)])
    assert sorted(seen.tolist()) == list(range(10))  # one epoch: each block once
    assert torch.equal(batch_indices(7, 10, 4, seed=3), batch_indices(7, 10, 4, seed=3))
    assert not torch.equal(
        torch.cat([batch_indices(s, 10, 5, seed=3) for s in range(2)]),
        torch.cat([batch_indices(s, 10, 5, seed=4) for s in range(2)]),
    )
    straddle = batch_indices(2, 10, 4, seed=0)  # positions 8..11 cross into epoch 1
    assert straddle.shape == (4,)


def test_bad_training_settings_are_input_errors():
    with pytest.raises(InputError, match="unknown key"):
        TrainConfig.from_settings({"epochs": 3})
    with pytest.raises(InputError, match="precision"):
        TrainConfig.from_settings({"precision": "fp8"})
    with pytest.raises(InputError, match="batch_size"):
        TrainConfig.from_settings({"batch_size": 0})


def _fresh(tok, dropout: float = 0.0):
    set_seed(0)
    return build_model(
        {**TINY_MODEL, "dropout": dropout},
        len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


class Killed(Exception):
    pass


def test_killed_run_resumes_to_exactly_the_uninterrupted_weights(corpus, tmp_path):
    tok = load_tokenizer(corpus["hf"])
    train = token_blocks([corpus["train"]], tok, 32, max_blocks=24)
    valid = token_blocks([corpus["valid"]], tok, 32, max_blocks=4)
    cfg = _cfg()

    # attention dropout draws from torch's RNG, so its state must be restored too
    straight = _fresh(tok, dropout=0.1)
    ref = train_model(straight, train, valid, cfg, seed=0, device="cpu", precision="fp32", progress=False)

    ckpt = tmp_path / "ckpt"

    def kill_at_6(step: int) -> None:
        if step == 6:
            raise Killed

    first = _fresh(tok, dropout=0.1)
    with pytest.raises(Killed):
        train_model(
            first,
            train,
            valid,
            cfg,
            seed=0,
            device="cpu",
            precision="fp32",
            checkpoint_dir=ckpt,
            fp="abc",
            on_step=kill_at_6,
            progress=False,
        )
    assert latest_checkpoint(ckpt, "abc").name == "ckpt-0000004.pt"
    # a fresh process: different RNG state, freshly initialised (different) weights
    torch.manual_seed(1234)
    resumed_model = _fresh(tok, dropout=0.1)
    torch.nn.init.normal_(resumed_model.lm_head.weight)
    resumed = train_model(
        resumed_model,
        train,
        valid,
        cfg,
        seed=0,
        device="cpu",
        precision="fp32",
        checkpoint_dir=ckpt,
        fp="abc",
        progress=False,
    )

    assert resumed.resumed_from_step == 4
    assert resumed.losses == ref.losses and resumed.steps == list(range(1, 13))
    assert [e["valid_nll"] for e in resumed.evals] == [e["valid_nll"] for e in ref.evals]
    a, b = straight.state_dict(), resumed_model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # and training did move the weights
    assert not torch.equal(a["lm_head.weight"], _fresh(tok).state_dict()["lm_head.weight"])


def test_checkpoint_of_other_settings_is_not_resumed(corpus, tmp_path):
    tok = load_tokenizer(corpus["hf"])
    train = token_blocks([corpus["train"]], tok, 32, max_blocks=24)
    valid = token_blocks([corpus["valid"]], tok, 32, max_blocks=4)
    cfg = _cfg(max_steps=4)
    train_model(
        _fresh(tok),
        train,
        valid,
        cfg,
        seed=0,
        device="cpu",
        precision="fp32",
        checkpoint_dir=tmp_path,
        fp="one",
        progress=False,
    )
    assert latest_checkpoint(tmp_path, "one") is not None
    assert latest_checkpoint(tmp_path, "two") is None
    again = train_model(
        _fresh(tok),
        train,
        valid,
        cfg,
        seed=0,
        device="cpu",
        precision="fp32",
        checkpoint_dir=tmp_path,
        fp="two",
        progress=False,
    )
    assert again.resumed_from_step is None


def test_peak_flops_is_only_claimed_on_gpu():
    value, note = peak_flops("cpu", "fp32")
    assert value is None and "GPU" in note


def test_train_step_writes_a_loadable_model_metrics_and_curve(corpus, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = {
        "seeds": [0],
        "device": "cpu",
        "train_languages": ["en"],
        "model": TINY_MODEL,
        "training": {
            "block_size": 32,
            "batch_size": 8,
            "max_steps": 30,
            "warmup_steps": 5,
            "eval_every": 10,
            "eval_blocks": 8,
            "checkpoint_every": 10,
            "learning_rate": 1e-2,
        },
    }
    out = {
        "model": tmp_path / "model",
        "metrics": tmp_path / "train_metrics.json",
        "curve": tmp_path / "curve.csv",
        "checkpoints": tmp_path / "checkpoints",
    }
    run_step(
        settings,
        {"tokenizer": corpus["hf"].parent / "tokenizer.json", "corpus": corpus["root"]},
        out,
        threads=1,
    )
    metrics = json.loads(out["metrics"].read_text())
    assert metrics["device"] == "cpu" and metrics["mfu"] is None
    assert metrics["tokens_trained"] == 30 * 8 * 32 and metrics["tokens_per_s"] > 0
    assert metrics["final_valid_ppl"] < 0.5 * metrics["initial_valid_ppl"]  # it learned
    assert [e["step"] for e in metrics["evals"]] == [0, 10, 20, 30]
    assert not out["checkpoints"].exists()  # removed once the model is saved
    rows = list(csv.DictReader(out["curve"].open()))
    assert len(rows) == 31 and rows[-1]["valid_ppl"] != ""
    model = AutoModelForCausalLM.from_pretrained(out["model"])
    tok = AutoTokenizer.from_pretrained(out["model"])
    assert (out["model"] / "model.safetensors").is_file()
    assert model.config.tie_word_embeddings is False and model.config.vocab_size == len(tok)
    ids = tok("The", return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 5
