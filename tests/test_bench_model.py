"""The bench transformer's switches do what their names say (claims C03–C11 rest on them)."""

from __future__ import annotations

import math

import pytest
import torch

from whylab.bench.model import (
    BenchConfig,
    BenchTransformer,
    EncoderDecoder,
    MultiHeadAttention,
    TokenBatchNorm,
    attention,
    count_parameters,
    make_mask,
    parameter_breakdown,
)

torch.set_num_threads(1)
V = 37  # vocab


def _ids(b: int = 3, t: int = 9, seed: int = 0, low: int = 1) -> torch.Tensor:
    return torch.randint(low, V, (b, t), generator=torch.Generator().manual_seed(seed))


def _model(seed: int = 0, **kw: object) -> BenchTransformer:
    torch.manual_seed(seed)
    return BenchTransformer(BenchConfig(vocab_size=V, d_model=32, n_heads=4, n_layers=2, **kw)).eval()


SWITCHES: list[dict[str, object]] = [
    {},
    {"qk_proj": False},
    {"v_proj": False},
    {"qk_proj": False, "v_proj": False, "o_proj": False},
    {"scale": "sqrt_dmodel"},
    {"scale": "none"},
    {"norm": "batch"},
    {"norm": "masked_batch", "pad_id": 0},
    {"norm": "rms"},
    {"norm": "none"},
    {"norm_position": "post"},
    {"norm": "batch", "norm_position": "post"},
    {"ffn": False},
    {"activation": "relu"},
    {"activation": "swiglu"},
    {"ffn_mult": 2, "dropout": 0.1},
    {"causal": False},
    {"pad_id": 0},
    {"tie_embeddings": True},
    {"freeze_embedding": True},
    {"use_sdpa": False},
]


@pytest.mark.parametrize(
    "switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default"
)
def test_shapes_for_every_switch(switches: dict[str, object]) -> None:
    model = _model(**switches)
    out = model(_ids(), return_attention=True)
    assert out.logits.shape == (3, 9, V)
    assert out.hidden.shape == (3, 9, 32)
    assert out.attentions is not None and len(out.attentions) == 2
    for w in out.attentions:
        assert w.shape == (3, 4, 9, 9)
        assert torch.allclose(w.sum(-1), torch.ones(3, 4, 9), atol=1e-5)  # rows are distributions
    assert torch.isfinite(out.logits).all()
    assert model(_ids()).attentions is None


def test_attention_four_steps_match_the_formula() -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    out, w = attention(q, k, v, mask=None, scale=1 / math.sqrt(8))
    expected_w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
    assert torch.allclose(w, expected_w, atol=1e-6)
    assert torch.allclose(out, expected_w @ v, atol=1e-6)
    _out_none, w_none = attention(q, k, v, mask=None, scale=None)
    assert torch.allclose(w_none, torch.softmax(q @ k.transpose(-2, -1), dim=-1), atol=1e-6)
    assert not torch.allclose(w_none, w)


def test_fully_masked_query_gets_zero_not_nan() -> None:
    q = k = v = torch.randn(1, 1, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])[None, None]
    out, w = attention(q, k, v, mask=mask, scale=0.5)
    assert torch.isfinite(out).all()
    assert torch.equal(w[0, 0, 1], torch.zeros(3))
    assert w[0, 0, 0, 2] == 0 and w[0, 0, 2, 1] == 0


@pytest.mark.parametrize(
    "switches",
    [{}, {"pad_id": 0}, {"causal": False, "pad_id": 0}, {"norm_position": "post"}, {"activation": "swiglu"}],
)
def test_sdpa_path_equals_explicit_path(switches: dict[str, object]) -> None:
    model = _model(seed=3, **switches)
    ids = _ids(seed=4)
    ids[0, 5:] = 0  # right padding
    ids[1, :] = 0  # an all-PAD row: no query can see any key
    calls = {"n": 0}
    original = torch.nn.functional.scaled_dot_product_attention

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = counting  # type: ignore[assignment]
    try:
        fast = model(ids).logits
    finally:
        torch.nn.functional.scaled_dot_product_attention = original  # type: ignore[assignment]
    assert calls["n"] == 2  # the fast path really ran, once per layer
    model.cfg.use_sdpa = False
    slow = model(ids).logits
    assert torch.isfinite(fast).all()
    assert torch.allclose(fast, slow, atol=1e-5)


def test_sdpa_is_not_used_for_non_standard_switches() -> None:
    for switches in ({"scale": "none"}, {"qk_proj": False}, {"v_proj": False}):
        attn = MultiHeadAttention(BenchConfig(vocab_size=V, d_model=16, n_heads=2, **switches))
        assert not attn._can_use_sdpa(return_weights=False)
    attn = MultiHeadAttention(BenchConfig(vocab_size=V, d_model=16, n_heads=2))
    assert attn._can_use_sdpa(return_weights=False) and not attn._can_use_sdpa(return_weights=True)


def test_scale_factor_uses_head_or_model_width() -> None:
    cfg = BenchConfig(vocab_size=V, d_model=64, n_heads=4)
    assert cfg.scale_factor() == pytest.approx(1 / 4)  # d_k = 16
    cfg = BenchConfig(vocab_size=V, d_model=64, n_heads=4, scale="sqrt_dmodel")
    assert cfg.scale_factor() == pytest.approx(1 / 8)
    assert BenchConfig(vocab_size=V, scale="none").scale_factor() is None


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_causal_mask_leaks_nothing(use_sdpa: bool) -> None:
    model = _model(seed=5, use_sdpa=use_sdpa)
    ids = _ids(b=2, t=10, seed=6)
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] % (V - 1)) + 1  # a different future token at position 6
    a, b = model(ids).logits, model(changed).logits
    assert torch.equal(a[:, :6], b[:, :6])  # earlier positions: bit-for-bit unchanged
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-4  # the position itself and later ones do change
    w = model(ids, return_attention=True).attentions[0]
    assert torch.equal(w.triu(1), torch.zeros_like(w))  # no weight above the diagonal


def test_encoder_sees_the_future() -> None:
    model = _model(seed=5, causal=False)
    ids = _ids(b=2, t=10, seed=6)
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] % (V - 1)) + 1
    a, b = model(ids).logits, model(changed).logits
    assert (a[:, :6] - b[:, :6]).abs().amax(dim=(0, 2)).min() > 1e-5  # every earlier position moved
    w = model(ids, return_attention=True).attentions[0]
    assert w.triu(1).sum() > 0.1


def test_pad_keys_get_no_attention_and_do_not_change_real_tokens() -> None:
    model = _model(seed=7, pad_id=0, causal=False)
    ids = _ids(b=2, t=8, seed=8)
    ids[:, 5:] = 0
    other = ids.clone()
    other[:, 5:] = 3  # same real tokens, different junk after them ...
    mask = ids != 0
    a = model(ids, return_attention=True)
    b = model(other, padding_mask=mask)  # ... hidden by an explicit padding mask
    assert torch.allclose(a.logits[:, :5], b.logits[:, :5], atol=1e-5)
    for w in a.attentions:
        assert torch.equal(w[..., 5:], torch.zeros_like(w[..., 5:]))
    no_mask = _model(seed=7, causal=False)
    assert not torch.allclose(no_mask(ids).logits[:, :5], no_mask(other).logits[:, :5], atol=1e-4)


def test_make_mask_combines_causal_and_padding() -> None:
    pad = torch.tensor([[True, True, False]])
    m = make_mask(1, 3, 3, causal=True, key_padding=pad, device=torch.device("cpu"))
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool)
    assert m.shape == (1, 1, 3, 3) and torch.equal(m[0, 0], expected)
    assert make_mask(1, 3, 3, causal=False, key_padding=None, device=torch.device("cpu")) is None


def test_batchnorm_pools_batch_time_and_pad() -> None:
    torch.manual_seed(0)
    bn = TokenBatchNorm(4).train()
    x = torch.randn(3, 5, 4) * 3 + 2
    y = bn(x)
    flat = x.reshape(15, 4)
    expected = (flat - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + bn.bn.eps)
    assert torch.allclose(y.reshape(15, 4), expected, atol=1e-5)
    # the statistics include PAD positions: changing a padded position's vector changes the
    # normalised output of a real token in another sequence of the batch
    x2 = x.clone()
    x2[2, 4] = 50.0
    assert not torch.allclose(bn(x2)[0, 0], y[0, 0], atol=1e-3)
    bn.eval()  # eval mode: running statistics, so other sequences no longer matter
    assert torch.allclose(bn(x2)[0, 0], bn(x)[0, 0])


def test_layernorm_model_output_is_independent_of_batch_mates_batchnorm_is_not() -> None:
    ids = _ids(b=4, t=6, seed=9)
    other = ids.clone()
    other[1:] = _ids(b=3, t=6, seed=10)
    for norm, independent in (("layer", True), ("batch", False)):
        model = _model(seed=11, norm=norm).train()
        a, b = model(ids).logits[0], model(other).logits[0]
        assert torch.allclose(a, b, atol=1e-5) is independent


def test_freeze_embedding_freezes_only_the_embedding() -> None:
    model = _model(freeze_embedding=True).train()
    before = model.token_embedding.weight.detach().clone()
    pos_before = model.position_embedding.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = _ids()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(ids).logits.reshape(-1, V), ids.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(model.token_embedding.weight, before)
    assert not torch.equal(model.position_embedding.weight, pos_before)
    emb = model.token_embedding.weight.numel()
    assert count_parameters(model) - count_parameters(model, trainable_only=True) == emb


def test_freeze_and_tie_together_is_refused() -> None:
    with pytest.raises(ValueError, match="freeze_embedding"):
        BenchConfig(vocab_size=V, freeze_embedding=True, tie_embeddings=True)
    with pytest.raises(ValueError, match="divisible"):
        BenchConfig(vocab_size=V, d_model=30, n_heads=4)


def test_parameter_breakdown_adds_up() -> None:
    for switches in ({}, {"tie_embeddings": True}, {"ffn": False}, {"activation": "swiglu"}):
        model = _model(**switches)
        parts = parameter_breakdown(model)
        assert set(parts) == {"embedding", "attention", "ffn", "norm", "lm_head", "other"}
        assert sum(parts.values()) == count_parameters(model)
    d, layers = 32, 2
    parts = parameter_breakdown(_model())
    assert parts["attention"] == layers * 4 * (d * d + d)
    assert parts["ffn"] == layers * (2 * 4 * d * d + 4 * d + d)
    assert parameter_breakdown(_model(tie_embeddings=True))["lm_head"] == 0
    assert parameter_breakdown(_model(ffn=False))["ffn"] == 0


def test_qk_and_v_projections_switch_off() -> None:
    attn = MultiHeadAttention(BenchConfig(vocab_size=V, d_model=16, n_heads=2, qk_proj=False))
    assert attn.q_proj is None and attn.k_proj is None and attn.v_proj is not None
    x = torch.randn(1, 4, 16)
    _, w = attn(x, return_weights=True)
    heads = x.view(1, 4, 2, 8).transpose(1, 2)  # Q = K = X cut into heads
    assert torch.allclose(w, torch.softmax(heads @ heads.transpose(-2, -1) / math.sqrt(8), -1), atol=1e-6)
    attn = MultiHeadAttention(BenchConfig(vocab_size=V, d_model=16, n_heads=2, v_proj=False, o_proj=False))
    out, w = attn(x, return_weights=True)
    assert torch.allclose(out, (w @ heads).transpose(1, 2).reshape(1, 4, 16), atol=1e-6)  # V = X


def test_qk_init_std() -> None:
    torch.manual_seed(0)
    model = BenchTransformer(BenchConfig(vocab_size=V, d_model=64, qk_init_std=0.125))
    attn = model.blocks[0].attn
    assert attn.q_proj.weight.std().item() == pytest.approx(0.125, rel=0.05)
    assert attn.v_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)


# --------------------------------------------------------------------------- encoder–decoder


def _encdec(seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    return EncoderDecoder(
        BenchConfig(vocab_size=V, d_model=32, n_heads=4, n_layers=2), tgt_vocab_size=23
    ).eval()


def test_encoder_decoder_shapes() -> None:
    model = _encdec()
    src, tgt = _ids(b=2, t=7), torch.randint(0, 23, (2, 5))
    out = model(src, tgt, return_attention=True)
    assert out.logits.shape == (2, 5, 23)
    assert out.memory is not None and out.memory.shape == (2, 7, 32)
    assert [w.shape for w in out.attentions] == [(2, 4, 5, 5)] * 2
    assert [w.shape for w in out.cross_attentions] == [(2, 4, 5, 7)] * 2  # (target queries, source keys)
    assert torch.allclose(model.decode(tgt, model.encode(src)).logits, out.logits, atol=1e-6)


def test_cross_attention_queries_from_decoder_keys_values_from_encoder() -> None:
    model = _encdec(seed=1)
    src, tgt = _ids(b=2, t=7, seed=2), torch.randint(0, 23, (2, 5))
    seen: dict[str, tuple[int, ...]] = {}
    cross = model.decoder_blocks[0].cross_attn
    hooks = [
        getattr(cross, name).register_forward_hook(
            lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(inp[0].shape))
        )
        for name in ("q_proj", "k_proj", "v_proj")
    ]
    memory = model.encode(src)
    model.decode(tgt, memory)
    for h in hooks:
        h.remove()
    assert seen["q_proj"] == (2, 5, 32)  # target length: the decoder side
    assert seen["k_proj"] == seen["v_proj"] == (2, 7, 32)  # source length: the encoder side

    # intervention: the memory moves the keys (and so the weights), the decoder input the queries
    q_in: list[torch.Tensor] = []
    h = cross.q_proj.register_forward_hook(lambda mod, inp, out: q_in.append(inp[0].detach()))
    base = model.decode(tgt, memory, return_attention=True)
    noisy_memory = memory + 0.5 * torch.randn_like(memory)
    mem_run = model.decode(tgt, noisy_memory, return_attention=True)
    tgt2 = tgt.clone()
    tgt2[:, 0] = (tgt2[:, 0] + 1) % 23
    model.decode(tgt2, memory, return_attention=True)  # the hook records its queries
    h.remove()
    assert torch.equal(q_in[0], q_in[1])  # perturbing the encoder output leaves the queries alone
    assert not torch.allclose(q_in[0], q_in[2])  # perturbing the decoder input changes them
    assert (base.cross_attentions[0] - mem_run.cross_attentions[0]).abs().max() > 1e-4


def test_decoder_self_attention_is_causal_and_memory_padding_hidden() -> None:
    model = _encdec(seed=3)
    src, tgt = _ids(b=1, t=6, seed=4), torch.randint(0, 23, (1, 6))
    tgt2 = tgt.clone()
    tgt2[0, 4] = (tgt2[0, 4] + 1) % 23
    a, b = model(src, tgt).logits, model(src, tgt2).logits
    assert torch.equal(a[:, :4], b[:, :4])
    pad = torch.tensor([[True, True, True, True, False, False]])
    out = model(src, tgt, src_padding_mask=pad, return_attention=True)
    assert torch.equal(out.cross_attentions[0][..., 4:], torch.zeros_like(out.cross_attentions[0][..., 4:]))
    src2 = src.clone()
    src2[0, 4:] = 1
    assert torch.allclose(model(src2, tgt, src_padding_mask=pad).logits, out.logits, atol=1e-5)
