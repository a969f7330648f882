"""ZeRO-Offload as C21 runs it: gradients leave the device during backward; 16-bit weights, FP32 master on the host."""

from __future__ import annotations

import torch

from whylab.memory import offload, training

CFG = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}


def test_gradients_are_streamed_off_the_model_during_backward() -> None:
    model = training.build_llama(CFG, 0, "mixed_bf16")
    opt = offload.CPUOffloadAdamW(model.parameters(), lr=1e-3)
    ids = training.random_ids(64, 2, 8, 0)
    seen: list[int] = []
    # after each parameter's gradient is formed, no earlier gradient is still held by the model
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(
            lambda _p: seen.append(sum(q.grad is not None for q in model.parameters()))
        )
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(m.grad is not None and m.grad.dtype == torch.float32 for m in opt.master)
    assert max(seen) <= 1  # at most the one being moved
    opt.step()
    assert opt.bytes_to_host == opt.bytes_to_device == 2 * training.n_params(model)


def test_bf16_offload_makes_the_mixed_precision_update() -> None:
    a = training.build_llama(CFG, 0, "mixed_bf16")
    b = training.build_llama(CFG, 0, "mixed_bf16")
    start = [p.detach().float().clone() for p in a.parameters()]
    opt_a = training.make_optimizer(a, "mixed_adamw")
    opt_b = offload.CPUOffloadAdamW(b.parameters(), lr=1e-3)
    for step in range(3):
        ids = training.random_ids(64, 2, 8, step)
        training.train_step(a, opt_a, ids)
        training.train_step(b, opt_b, ids)
    moved = (
        sum(float((p.detach().float() - s).pow(2).sum()) for p, s in zip(a.parameters(), start, strict=True))
        ** 0.5
    )
    diff = (
        sum(
            float((p.detach().float() - q.detach().float()).pow(2).sum())
            for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )
        ** 0.5
    )
    assert moved > 0 and diff / moved < 1e-2
