"""ZeRO-Offload as C21 runs it: gradients leave the device during backward; 16-bit weights, FP32 master on the host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from catalogue_checks import assert_in_korean
from whylab.memory import offload, training
from whylab.verdict import Label

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


def test_c21_report_texts_render_in_korean(tmp_path: Path) -> None:
    """C21's run on a CPU (no accelerator), then with a recorded GPU run: method, skipped notes,
    table and figure captions, literature and verdict all come from the catalogue and render in
    Korean."""
    from whylab.concepts import ConceptContext
    from whylab.concepts import c21_offloading as c21
    from whylab.messages import Msg

    settings = {
        "model": CFG,
        "batch_size": 2,
        "seq_len": 8,
        "precision": "mixed_bf16",
        "offload_layers": 1,
        "steps": 1,
        "min_saving": 0.1,
        "repeats": 1,
    }

    def texts(ev: Any) -> list[Any]:
        v = c21.verdict(ev.metrics)
        return [
            ev.method,
            *ev.skipped,
            *(t.caption for t in ev.tables),
            *(x for f in ev.figures for x in (f.title, f.caption)),
            *(x for lit in ev.literature for x in (lit.finding, lit.note)),
            *(x for x in (v.reason, v.takeaway, v.primary, v.correction, *v.limited) if x),
        ]

    def check(found: list[Any]) -> None:
        for text in found:
            assert isinstance(text, Msg), text
            assert_in_korean(text)

    cpu = c21.run(ConceptContext("C21", settings, {}, tmp_path / "cpu", 1, "cpu"))
    assert cpu.skipped and c21.verdict(cpu.metrics).label is Label.INCONCLUSIVE
    check(texts(cpu))

    acc = {
        f"{kind}_{what}_{case}": value
        for kind in ("train", "infer")
        for case in ("plain", "offload")
        for what, value in (("peak", 100 * 2**20 if case == "plain" else 50 * 2**20), ("time", 0))
    }
    acc.update(
        {
            f"{k}_time_{c}_{s}_s": 0.01
            for k in ("train", "infer")
            for c in ("plain", "offload")
            for s in ("mean", "std")
        }
    )
    acc.update(train_saving=0.5, infer_saving=0.5, train_time_ratio=2.0, infer_time_ratio=1.5)
    recorded = tmp_path / "C21_recorded.json"
    recorded.write_text(
        json.dumps(
            {
                "claim_id": "C21",
                "metrics": {"accelerator": acc, "computed": {"estimated_train_saving": 0.45}},
                "config": {"model": CFG, "offload_layers": 1},
                "environment": {"device": "cuda (NVIDIA H100)"},
                "finished_at": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    gpu = c21.run(ConceptContext("C21", settings, {"recorded_gpu_run": recorded}, tmp_path / "gpu", 1, "cpu"))
    v = c21.verdict(gpu.metrics)
    assert v.label is Label.SUPPORTED and "recorded GPU run (cuda (NVIDIA H100)" in v.reason
    assert "기록된 GPU 실행" in v.reason.in_("ko")
    assert any(t.name == "accelerator" for t in gpu.tables) and len(gpu.figures) == 2
    check(texts(gpu))
