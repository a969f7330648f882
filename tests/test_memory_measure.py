"""Measurement sanity (C17-C21): each method reads known allocations correctly, and the
mechanisms measured (formats, checkpointing, accumulation, offloading) compute what they claim."""

from __future__ import annotations

import pytest
import torch

from whylab.memory import accumulation as acc
from whylab.memory import formats, measure, offload, training
from whylab.memory.checkpointing import apply_checkpointing

CFG = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}


def test_tensor_bytes_counts_storages_once() -> None:
    lin = torch.nn.Linear(4, 3)
    assert measure.tensor_bytes(lin) == (12 + 3) * 4
    tied = torch.nn.Module()
    tied.a = torch.nn.Embedding(10, 4)
    tied.b = torch.nn.Linear(4, 10, bias=False)
    tied.b.weight = tied.a.weight
    assert measure.tensor_bytes(tied) == 40 * 4


def test_tracked_peak_of_known_allocations() -> None:
    def work() -> None:
        a = torch.ones(1000)  # 4000 B
        b = torch.ones(2000)  # 8000 B: peak 12000 here
        del a
        c = torch.ones(500)  # 2000 B after a is freed
        del b, c

    peak = measure.tracked_peak(work, [], "cpu")
    assert peak.peak_bytes == 12000


def test_tracked_peak_allows_several_forwards() -> None:
    model = training.build_llama(CFG, 0)
    ids = training.random_ids(64, 2, 8, 0)

    def two() -> None:
        for _ in range(2):
            model(input_ids=ids, labels=ids).loss.backward()

    peak = measure.tracked_peak(two, [model, ids], "cpu")
    assert peak.breakdown["parameters"] + peak.breakdown["buffers"] == measure.tensor_bytes(model)


def test_rss_of_a_fresh_process() -> None:
    null = measure.rss_peak("whylab.memory.measure:null_work")
    assert 0 <= null["peak_delta_bytes"] < 2**20
    model_cfg = {**CFG, "vocab_size": 8192, "hidden_size": 256}  # ~4.5M parameters, ~17 MiB in FP32
    r = measure.rss_peak(
        "whylab.memory.formats:load_work", {"model_cfg": model_cfg, "fmt": "fp32", "seed": 0}
    )
    assert 0.9 < r["resident_delta_bytes"] / r["result"] < 1.2


def test_float_formats_are_params_times_bytes() -> None:
    for name, per in (("fp32", 4), ("bf16", 2), ("fp16", 2)):
        model = formats.FORMATS[name].apply(training.build_llama(CFG, 0))
        # the rotary inv_freq buffer is the only tensor that is not a parameter
        extra = sum(b.numel() * b.element_size() for b in model.buffers())
        assert measure.tensor_bytes(model) == training.n_params(model) * per + extra


def test_quantized_format_carries_scales() -> None:
    model = formats.FORMATS["torchao_int8"].apply(training.build_llama(CFG, 0))
    ref = training.build_llama(CFG, 0)
    lin = formats.linear_weight_params(ref)
    per_value = formats.quantized_layer_bytes(model) / lin
    assert 1.0 < per_value < 1.2  # one int8 byte per value plus per-row scales


def test_checkpointing_keeps_gradients_and_saves_memory() -> None:
    cfg = {**CFG, "num_layers": 4}
    ids = training.random_ids(64, 2, 32, 0)
    grads, peaks = {}, {}
    for mode in ("none", "per_layer", "sqrt"):
        model = training.build_llama(cfg, 0)
        seg = apply_checkpointing(model, mode)
        assert seg == {"none": 0, "per_layer": 1, "sqrt": 2}[mode]
        peaks[mode] = measure.tracked_peak(
            lambda m=model: m(input_ids=ids, labels=ids).loss.backward(), [model, ids], "cpu"
        ).peak_bytes
        grads[mode] = [p.grad.clone() for p in model.parameters()]
    for mode in ("per_layer", "sqrt"):
        assert all(torch.equal(a, b) for a, b in zip(grads[mode], grads["none"], strict=True))
        assert peaks[mode] < peaks["none"]


def test_token_sum_accumulation_equals_large_batch_and_mean_of_means_does_not() -> None:
    model = training.build_llama(CFG, 0)
    batch = acc.make_batch(64, 4, 16, 2, 0, variable=True)
    ref, _ = acc.gradients(model, lambda: acc.full_batch_backward(model, batch))
    fixed, _ = acc.gradients(model, lambda: acc.accumulate_backward(model, batch, 1, "token_sum"))
    naive, _ = acc.gradients(model, lambda: acc.accumulate_backward(model, batch, 1, "mean_of_means"))
    assert acc.relative_difference(fixed, ref)[0] < 1e-5
    assert acc.relative_difference(naive, ref)[0] > 1e-3
    equal = acc.make_batch(64, 4, 16, 2, 0, variable=False)
    ref, _ = acc.gradients(model, lambda: acc.full_batch_backward(model, equal))
    naive, _ = acc.gradients(model, lambda: acc.accumulate_backward(model, equal, 2, "mean_of_means"))
    assert acc.relative_difference(naive, ref)[0] < 1e-5


def test_offloaded_adamw_equals_adamw_and_counts_transfers() -> None:
    a, b = training.build_llama(CFG, 0), training.build_llama(CFG, 0)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-3, foreach=False)
    opt_b = offload.CPUOffloadAdamW(b.parameters(), lr=1e-3)
    for step in range(2):
        ids = training.random_ids(64, 2, 8, step)
        training.train_step(a, opt_a, ids)
        training.train_step(b, opt_b, ids)
    with torch.no_grad():
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert (
        opt_b.bytes_to_host
        == opt_b.bytes_to_device
        == 2 * measure.tensor_bytes(b) - 2 * sum(x.numel() * x.element_size() for x in b.buffers())
    )
    assert opt_b.state_bytes() > 2 * training.n_params(b) * 4


def test_layer_offload_keeps_logits() -> None:
    model = training.build_llama(CFG, 0)
    model.eval()
    ids = training.random_ids(64, 1, 8, 0)
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        moved = offload.offload_layers(model, 1, "cpu")
        got = model(input_ids=ids).logits
    assert moved == offload.layer_weight_bytes(training.build_llama(CFG, 0), 1)
    assert torch.allclose(ref, got, atol=0, rtol=0)


@pytest.mark.parametrize("bad", [3])
def test_micro_batch_must_divide(bad: int) -> None:
    from whylab.errors import InputError

    model = training.build_llama(CFG, 0)
    with pytest.raises(InputError, match="micro_batch_sizes"):
        acc.accumulate_backward(model, acc.make_batch(64, 4, 8, 2, 0, False), bad, "token_sum")
