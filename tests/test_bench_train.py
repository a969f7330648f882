"""The bench's data windows and training loop: they learn, they are deterministic, they report honestly."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from whylab.bench.data import encode_file, encode_inputs, eval_windows, lm_batches, lm_data, load_tokenizer
from whylab.bench.model import BenchConfig, BenchTransformer, EncoderDecoder
from whylab.bench.train import (
    TrainSettings,
    _lr_factor,
    bench_config,
    evaluate_lm,
    per_layer_grad_norms,
    train_lm,
    train_settings,
)
from whylab.errors import InputError

torch.set_num_threads(1)


def _pattern_stream(n: int = 3000, period: int = 7) -> torch.Tensor:
    """A stream a tiny model can learn: a repeating pattern (next token is predictable)."""
    return (torch.arange(n) % period) + 1


def _tiny(seed: int = 0, **kw: object) -> BenchTransformer:
    torch.manual_seed(seed)
    return BenchTransformer(BenchConfig(vocab_size=10, d_model=16, n_heads=2, n_layers=1, max_len=32, **kw))


FAST = TrainSettings(steps=40, batch_size=8, seq_len=16, lr=1e-2, eval_every=20, seed=0)


def test_training_reduces_loss_on_a_tiny_task() -> None:
    ids = _pattern_stream()
    hist = train_lm(_tiny(), ids, ids[:500], FAST)
    assert hist.eval_steps == [0, 20, 40]
    assert hist.steps == list(range(1, 41))
    assert len(hist.train_loss) == len(hist.grad_norm) == len(hist.lr) == 40
    assert hist.eval_loss[-1] < 0.5 * hist.eval_loss[0]
    assert hist.final_eval_loss == hist.eval_loss[-1]
    assert not hist.diverged


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    ids = _pattern_stream()
    a = train_lm(_tiny(seed=1), ids, ids[:500], FAST)
    b = train_lm(_tiny(seed=1), ids, ids[:500], FAST)
    assert a.train_loss == b.train_loss and a.eval_loss == b.eval_loss and a.grad_norm == b.grad_norm
    c = train_lm(_tiny(seed=1), ids, ids[:500], TrainSettings(**{**FAST.__dict__, "seed": 2}))
    assert c.train_loss != a.train_loss  # other batches


def test_divergence_is_flagged() -> None:
    ids = _pattern_stream()
    hist = train_lm(
        _tiny(scale="none", norm="none"),
        ids,
        ids[:500],
        TrainSettings(steps=30, batch_size=8, seq_len=16, lr=1e6, grad_clip=None, eval_every=10),
    )
    assert hist.diverged
    bad = train_lm(_tiny(), ids, None, FAST, loss_fn=lambda m, x, y: m(x).logits.sum() * math.inf)
    assert bad.diverged and len(bad.train_loss) == 1 and math.isnan(bad.final_eval_loss)


def test_lr_schedule_warms_up_then_decays() -> None:
    s = TrainSettings(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    factors = [_lr_factor(i, s) for i in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in itertools.pairwise(factors[:10]))
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)


def test_batch_fn_and_loss_fn_override_the_lm_task() -> None:
    """A synthetic copy task through an encoder–decoder, as C11 trains it."""
    torch.manual_seed(0)
    model = EncoderDecoder(BenchConfig(vocab_size=8, d_model=32, n_heads=2, n_layers=1, max_len=16))

    def batch(step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(1, 8, (16, 5), generator=gen)
        return x, x

    def copy_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bos = torch.zeros_like(x[:, :1])
        logits = m(x, torch.cat([bos, y[:, :-1]], dim=1)).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 8), y.reshape(-1))

    valid = batch(0, torch.Generator().manual_seed(99))
    hist = train_lm(
        model,
        None,
        valid,
        TrainSettings(steps=200, lr=3e-3, eval_every=100),
        loss_fn=copy_loss,
        batch_fn=batch,
    )
    assert hist.eval_loss[-1] < 0.3 * hist.eval_loss[0]
    with pytest.raises(ValueError, match="batch_fn"):
        train_lm(model, None, None, FAST)


def test_freeze_embedding_survives_training() -> None:
    ids = _pattern_stream()
    model = _tiny(freeze_embedding=True)
    before = model.token_embedding.weight.detach().clone()
    train_lm(model, ids, None, FAST)
    assert torch.equal(model.token_embedding.weight, before)


def test_evaluate_lm_is_mean_cross_entropy_and_keeps_mode() -> None:
    model = _tiny().train()
    x, y = eval_windows(_pattern_stream(), seq_len=16, max_windows=5)
    loss = evaluate_lm(model, (x, y))
    logits = model.eval()(x).logits
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1)).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    model.train()
    evaluate_lm(model, (x, y))
    assert model.training


def test_per_layer_grad_norms() -> None:
    torch.manual_seed(0)
    model = BenchTransformer(BenchConfig(vocab_size=10, d_model=16, n_heads=2, n_layers=3, max_len=32))
    x, y = eval_windows(_pattern_stream(), seq_len=16, max_windows=4)
    norms = per_layer_grad_norms(model, x, y)
    assert len(norms) == 3 and all(n > 0 for n in norms)
    assert all(p.grad is None for p in model.parameters())


def test_lm_batches_and_eval_windows() -> None:
    ids = torch.arange(100)
    gen = torch.Generator().manual_seed(0)
    x, y = next(lm_batches(ids, batch_size=4, seq_len=10, generator=gen))
    assert x.shape == y.shape == (4, 10)
    assert torch.equal(y, x + 1)  # target = input shifted by one
    gen2 = torch.Generator().manual_seed(0)
    assert torch.equal(next(lm_batches(ids, batch_size=4, seq_len=10, generator=gen2))[0], x)
    wx, wy = eval_windows(ids, seq_len=10, max_windows=50)
    assert wx.shape == (9, 10) and torch.equal(wx[1], torch.arange(10, 20)) and torch.equal(wy, wx + 1)
    assert eval_windows(ids, seq_len=10, max_windows=3)[0].shape == (3, 10)
    with pytest.raises(InputError):
        eval_windows(ids[:5], seq_len=10, max_windows=3)
    with pytest.raises(InputError):
        next(lm_batches(ids[:5], batch_size=2, seq_len=10, generator=gen))


def _tokenizer(tmp_path: Path) -> Path:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["the cat sat on the mat\n", "우리 가족은 밥을 먹었다\n"] * 20,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_encode_file_and_lm_data(tmp_path: Path) -> None:
    tok_path = _tokenizer(tmp_path)
    (tmp_path / "en.txt").write_text("the cat sat\non the mat\n", encoding="utf-8")
    (tmp_path / "ko.txt").write_text("우리 가족\n", encoding="utf-8")
    tok = load_tokenizer(tok_path)
    ids = encode_file(tmp_path / "en.txt", tok)
    assert ids.dtype == torch.long and ids.ndim == 1
    assert tok.decode(ids.tolist()) == "the cat sat\non the mat\n"  # newlines kept
    inputs = {
        "tokenizer": tok_path,
        "train_ko": tmp_path / "ko.txt",
        "train_en": tmp_path / "en.txt",
        "valid_en": tmp_path / "en.txt",
    }
    _, train, valid = lm_data(inputs)
    assert torch.equal(train, torch.cat([ids, encode_file(tmp_path / "ko.txt", tok)]))  # name order
    assert torch.equal(valid, ids)
    with pytest.raises(InputError, match="valid"):
        encode_inputs({"train_en": tmp_path / "en.txt"}, "valid", tok)
    with pytest.raises(InputError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")


def test_settings_from_config_sections() -> None:
    cfg = bench_config({"d_model": 32, "n_heads": 2}, vocab_size=50, scale="none")
    assert cfg.d_model == 32 and cfg.scale == "none" and cfg.vocab_size == 50
    assert train_settings({"steps": 7}, seed=3) == TrainSettings(steps=7, seed=3)
    with pytest.raises(InputError, match="unknown key 'width'"):
        bench_config({"width": 3}, vocab_size=5)
    with pytest.raises(InputError, match="divisible"):
        bench_config({"d_model": 30, "n_heads": 4}, vocab_size=5)
    with pytest.raises(InputError, match=r"mechanisms\.train"):
        train_settings({"step": 3})
