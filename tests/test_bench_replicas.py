"""Training R replicas together gives each the numbers train_lm gives it alone, or refuses."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
import torch

from whylab.bench.model import BenchConfig, BenchTransformer, EncoderDecoder
from whylab.bench.replicas import train_replicas, train_seeds
from whylab.bench.train import TrainHistory, TrainSettings, train_lm
from whylab.progress import Progress

torch.set_num_threads(1)

# Weights after 20 AdamW steps: the batched kernels (bmm, a chunked softmax) round in another
# order than one model's mm, ~1e-7 relative on a gradient; AdamW divides each gradient by its
# own running RMS, so on entries whose gradient is near zero that becomes up to ~1e-5 of
# weight after 20 steps at lr 3e-3. Losses and gradient norms agree to ~5e-7.
# (scale='none' is left out: its near one-hot softmax lets single near-zero-gradient entries
# drift by ~1e-4 after 20 steps.)
WEIGHT_ATOL = 2e-5
LOSS_ATOL = 2e-6
SEEDS = (0, 1, 2)
CFG = BenchConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=2, max_len=16)
SETTINGS = TrainSettings(
    steps=20, batch_size=4, seq_len=16, lr=3e-3, warmup_steps=3, weight_decay=0.1, eval_every=5
)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 50, (2000,), generator=g), torch.randint(0, 50, (300,), generator=g)


def _one_at_a_time(cfg: BenchConfig, **kw: Any) -> list[tuple[BenchTransformer, TrainHistory]]:
    out = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = BenchTransformer(cfg)
        out.append((model, train_lm(model, settings=dataclasses.replace(SETTINGS, seed=seed), **kw)))
    return out


def _assert_same(ref: list[tuple[Any, TrainHistory]], got: list[tuple[Any, TrainHistory]]) -> None:
    for (m_ref, h_ref), (m_got, h_got) in zip(ref, got, strict=True):
        assert h_got.steps == h_ref.steps
        assert h_got.eval_steps == h_ref.eval_steps
        assert h_got.lr == h_ref.lr
        assert h_got.diverged == h_ref.diverged
        for field in ("train_loss", "eval_loss", "grad_norm"):
            torch.testing.assert_close(
                torch.tensor(getattr(h_got, field)),
                torch.tensor(getattr(h_ref, field)),
                atol=LOSS_ATOL,
                rtol=1e-6,
                msg=lambda m, field=field: f"{field}: {m}",
            )
        for (name, a), (_, b) in zip(m_got.named_parameters(), m_ref.named_parameters(), strict=True):
            torch.testing.assert_close(
                a, b, atol=WEIGHT_ATOL, rtol=0, msg=lambda m, name=name: f"{name}: {m}"
            )


def test_replicas_match_one_at_a_time_lm() -> None:
    train, valid = _data()
    ref = _one_at_a_time(CFG, train_ids=train, valid_ids=valid)
    got = train_seeds(CFG, SEEDS, train, valid, SETTINGS)
    _assert_same(ref, got)
    # the replicas really differ (own init, own batches): pairing by seed is not trivial
    assert got[0][1].train_loss != got[1][1].train_loss


@pytest.mark.parametrize(
    "over",
    [
        {"norm": "rms", "norm_position": "post", "activation": "swiglu", "tie_embeddings": True},
        {"qk_proj": False, "v_proj": False, "o_proj": False, "scale": "sqrt_dmodel", "ffn": False},
    ],
)
def test_replicas_match_with_switches(over: dict[str, Any]) -> None:
    cfg = dataclasses.replace(CFG, **over)
    train, valid = _data()
    _assert_same(
        _one_at_a_time(cfg, train_ids=train, valid_ids=valid), train_seeds(cfg, SEEDS, train, valid, SETTINGS)
    )


def test_replicas_match_with_batch_fn_and_last_position_loss() -> None:
    def batch_fn(step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 50, (4, 8), generator=gen)
        return x, x[:, 0]  # answer: the first token

    def last_position_loss(model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(x).logits[:, -1, :], y)

    ref = _one_at_a_time(CFG, train_ids=None, valid_ids=None, loss_fn=last_position_loss, batch_fn=batch_fn)
    got = train_seeds(CFG, SEEDS, None, None, SETTINGS, loss="last_position", batch_fn=batch_fn)
    _assert_same(ref, got)


def _models(*cfgs: BenchConfig) -> list[BenchTransformer]:
    return [BenchTransformer(c) for c in cfgs]


@pytest.mark.parametrize(
    ("models", "settings", "match"),
    [
        (_models(CFG, dataclasses.replace(CFG, d_model=32)), [SETTINGS] * 2, "one architecture"),
        (_models(*[dataclasses.replace(CFG, dropout=0.1)] * 2), [SETTINGS] * 2, "dropout"),
        (_models(*[dataclasses.replace(CFG, norm="batch")] * 2), [SETTINGS] * 2, "batch statistics"),
        (_models(CFG, CFG), [SETTINGS, dataclasses.replace(SETTINGS, lr=1e-2)], "only in seed"),
        (_models(CFG), [SETTINGS] * 2, "TrainSettings"),
        ([EncoderDecoder(CFG)], [SETTINGS], "BenchTransformer only"),
    ],
)
def test_unbatchable_replicas_are_refused(
    models: list[Any], settings: list[TrainSettings], match: str
) -> None:
    train, _ = _data()
    with pytest.raises(ValueError, match=match):
        train_replicas(models, train, None, settings)


def test_batches_of_different_shapes_are_refused() -> None:
    def ragged(step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        t = int(torch.randint(4, 9, (1,), generator=gen))
        x = torch.randint(0, 50, (4, t), generator=gen)
        return x, x

    with pytest.raises(ValueError, match="differ in shape"):
        train_seeds(CFG, (0, 1, 2, 3), None, None, SETTINGS, batch_fn=ragged)


def test_progress_lines_say_step_loss_rate_and_time_left() -> None:
    out = io.StringIO()
    progress = Progress("bench", 100, 1000, every_s=0.0, stream=out)
    progress.update(25, 3.14159)
    line = out.getvalue()
    assert line.startswith("[bench] step 25/100  loss 3.142  ")
    assert "tok/s" in line
    assert line.rstrip().endswith("left")
    quiet = io.StringIO()
    Progress("bench", 100, 1000, stream=quiet).update(1, 1.0)  # within every_s: nothing
    assert quiet.getvalue() == ""
