"""whylab.lm.model / data / evaluate: the API the quantization helpers build on."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from lm_helpers import TINY_MODEL, write_corpus, write_tokenizer
from whylab.errors import InputError
from whylab.lm.data import load_tokenizer, token_blocks, token_ids
from whylab.lm.evaluate import nll_per_token, perplexity
from whylab.lm.model import build_model, count_parameters

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm")
    paths = write_corpus(root / "corpus", chars=20_000)
    paths["hf"] = write_tokenizer(root / "tok", paths["train"], vocab_size=300)
    return paths


def _model(tok, **overrides):
    torch.manual_seed(0)
    return build_model(
        {**TINY_MODEL, **overrides},
        len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


def test_build_model_is_untied_llama_of_the_asked_size(corpus):
    tok = load_tokenizer(corpus["hf"])
    model = _model(tok)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert model.config.vocab_size == len(tok)
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    assert all(isinstance(layer.mlp.up_proj, torch.nn.Linear) for layer in model.model.layers)
    emb = model.get_input_embeddings().weight.numel()
    assert count_parameters(model) - count_parameters(model, non_embedding=True) == emb


def test_bad_model_config_is_one_line_input_error(corpus):
    tok = load_tokenizer(corpus["hf"])
    with pytest.raises(InputError, match="divisible"):
        _model(tok, hidden_size=30, num_heads=4)
    with pytest.raises(InputError, match="unknown key"):
        _model(tok, n_layer=3)


def test_load_tokenizer_from_hf_dir_or_tokenizer_json(corpus):
    a = load_tokenizer(corpus["hf"])
    b = load_tokenizer(corpus["hf"].parent)  # folder with tokenizer.json only
    c = load_tokenizer(corpus["hf"].parent / "tokenizer.json")
    for tok in (a, b, c):
        assert tok.model_input_names == ["input_ids", "attention_mask"]
        assert (tok.eos_token, tok.bos_token, tok.pad_token) == ("</s>", "<s>", "<pad>")
    text = "def f(x):\n    return x"
    assert a(text)["input_ids"] == b(text)["input_ids"] == c(text)["input_ids"]
    assert "token_type_ids" not in a(text)
    with pytest.raises(InputError, match="no tokenizer"):
        load_tokenizer(corpus["train"].parent / "missing")


def test_tokenizer_without_special_tokens_gets_an_end_of_text_token(corpus, tmp_path):
    hf = write_tokenizer(tmp_path / "plain", corpus["train"], vocab_size=280, special_tokens=[])
    tok = load_tokenizer(hf.parent / "tokenizer.json")
    assert tok.eos_token == "<|endoftext|>" and len(tok) == 281
    assert tok.pad_token_id == tok.bos_token_id == tok.eos_token_id == 280


def test_token_blocks_are_deterministic_and_non_overlapping(corpus):
    tok = load_tokenizer(corpus["hf"])
    first = token_blocks([corpus["train"]], tok, 32)
    again = token_blocks([corpus["train"]], tok, 32)
    assert first.dtype == torch.long and first.shape[1] == 32
    assert torch.equal(first, again)
    stream = token_ids([corpus["train"]], tok)
    assert first.shape[0] == len(stream) // 32
    assert first.flatten().tolist() == stream[: first.numel()]  # consecutive, no overlap
    assert token_blocks([corpus["train"]], tok, 32, max_blocks=5).shape == (5, 32)
    assert torch.equal(token_blocks([corpus["train"]], tok, 32, max_blocks=5), first[:5])
    # each paragraph ends in the end-of-text token
    paragraphs = sum(1 for line in corpus["train"].read_text().splitlines() if line.strip())
    assert stream.count(tok.eos_token_id) == paragraphs
    with pytest.raises(InputError, match="fewer than one block"):
        token_blocks([corpus["train"]], tok, 10**7)


def test_random_model_perplexity_is_about_the_vocabulary_size(corpus):
    tok = load_tokenizer(corpus["hf"])
    model = _model(tok)
    blocks = token_blocks([corpus["valid"]], tok, 32, max_blocks=16)
    ppl = perplexity(model, blocks, batch_size=5)
    assert 0.7 * len(tok) < ppl < 1.3 * len(tok)
    # independent of batch size; equals exp of the mean NLL; train mode restored
    model.train()
    assert math.isclose(ppl, math.exp(nll_per_token(model, blocks, batch_size=16)), rel_tol=1e-5)
    assert model.training


def test_save_pretrained_round_trip_with_auto_classes(corpus, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = load_tokenizer(corpus["hf"])
    model = _model(tok).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    ids = tok2("x = 1", return_tensors="pt")
    assert "token_type_ids" not in ids
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, loaded(**ids).logits)
    assert tok2.eos_token_id == tok.eos_token_id and tok2.pad_token_id == tok.pad_token_id
