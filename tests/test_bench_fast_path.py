"""The bench's fast training path against the path it replaced, where the math is the same.

The fast path (issue 19): the fused kernel's own causal masking (``is_causal``) instead of an
additive mask, a cross-entropy with a one-pass backward, AdamW's fused CPU kernel, and one
gradient-norm pass shared by the log and the clipping. The reference is the old loop
(``whylab.bench.reference``): additive-mask attention, ``F.cross_entropy``, foreach AdamW, the
norm computed twice (once for the history, once inside ``clip_grad_norm_``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from whylab.bench import attention
from whylab.bench.loss import cross_entropy
from whylab.bench.model import BenchConfig, BenchTransformer
from whylab.bench.reference import additive_causal_mask, train_reference
from whylab.bench.train import TrainSettings, make_adamw, train_lm

torch.set_num_threads(1)

SMALL = {"vocab_size": 50, "d_model": 32, "n_heads": 4, "n_layers": 2, "max_len": 32}


def _model(seed: int = 0, **kw: object) -> BenchTransformer:
    torch.manual_seed(seed)
    return BenchTransformer(BenchConfig(**{**SMALL, **kw}))  # type: ignore[arg-type]


@pytest.mark.parametrize("pad_id", [None, 0])
def test_is_causal_equals_the_additive_mask_and_the_four_steps(pad_id: int | None) -> None:
    ids = torch.randint(1, 50, (3, 20), generator=torch.Generator().manual_seed(1))
    ids[1, 15:] = 0  # PAD at the end of one row (masked only when pad_id is set)
    fast = _model(pad_id=pad_id)(ids).logits
    explicit = _model(pad_id=pad_id, use_sdpa=False)(ids).logits
    with additive_causal_mask():
        additive = _model(pad_id=pad_id)(ids).logits
    torch.testing.assert_close(fast, additive, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5)


def test_is_causal_is_used_only_for_the_plain_causal_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = attention._sdpa

    def spy(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, mask: torch.Tensor | None, causal: bool = False
    ) -> torch.Tensor:
        seen.append(causal)
        return real(q, k, v, mask=mask, causal=causal)

    monkeypatch.setattr(attention, "_sdpa", spy)
    ids = torch.randint(1, 50, (2, 12))
    _model()(ids)
    _model(pad_id=0)(ids)  # padding: the mask is not the plain causal one
    _model(causal=False)(ids)  # an encoder has no causal mask
    assert seen == [True, True, False, False, False, False]


@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_equals_the_library_one(ignore: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    logits = (3 * torch.randn(300, 97, generator=gen)).requires_grad_()
    target = torch.randint(0, 97, (300,), generator=gen)
    if ignore:
        target[::5] = -100
    ours, theirs = cross_entropy(logits, target), F.cross_entropy(logits, target, ignore_index=-100)
    assert ours.item() == theirs.item()  # the same forward ops: the same float
    for weight in (1.0, 2.5):  # a loss used inside a larger expression
        (g_ours,) = torch.autograd.grad(weight * cross_entropy(logits, target), logits)
        (g_theirs,) = torch.autograd.grad(weight * F.cross_entropy(logits, target), logits)
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-6, atol=1e-9)
    if ignore:
        (g,) = torch.autograd.grad(cross_entropy(logits, target), logits)
        assert g[::5].abs().max() == 0  # ignored rows pass no gradient
    with torch.no_grad():  # evaluation goes through the library's op, unchanged
        assert cross_entropy(logits, target).item() == theirs.item()


def test_fast_training_path_follows_the_old_one() -> None:
    ids = torch.randint(0, 50, (4000,), generator=torch.Generator().manual_seed(3))
    s = TrainSettings(steps=25, batch_size=4, seq_len=16, lr=3e-3, weight_decay=0.01, grad_clip=0.5, seed=4)
    new_model, old_model = _model(seed=5), _model(seed=5)
    hist = train_lm(new_model, ids, None, s)
    old_losses, old_norms = train_reference(old_model, ids, s)
    assert hist.train_loss[0] == old_losses[0]  # the first forward is the same float
    torch.testing.assert_close(hist.train_loss, old_losses, rtol=2e-5, atol=0)
    torch.testing.assert_close(hist.grad_norm, old_norms, rtol=1e-3, atol=0)
    assert min(hist.grad_norm) > 0.5  # the clipping (grad_clip 0.5) was exercised
    for a, b in zip(new_model.parameters(), old_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)


def test_fused_adamw_where_the_kernel_exists() -> None:
    s = TrainSettings()
    assert make_adamw(list(_model().parameters()), s).defaults["fused"] is True
    elsewhere = torch.nn.Parameter(torch.zeros(3, device="meta"))  # a device without the fused kernel
    assert make_adamw([elsewhere], s).defaults["foreach"] is True
