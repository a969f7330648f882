"""torch.distributed._tools.MemTracker is private: pin the behaviour whylab relies on, and its failure message."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whylab.memory import measure


def test_memtracker_api_is_what_whylab_uses() -> None:
    cls = measure.check_memtracker()
    tracker = cls()
    assert hasattr(tracker, "memory_tracking") and hasattr(tracker, "_mod_tracker")


def test_memtracker_categories_and_peak_on_a_known_step() -> None:
    torch.manual_seed(0)
    model = nn.Linear(256, 128, bias=False)  # 128 KiB of FP32 weights
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    x = torch.randn(64, 256)

    def step() -> None:
        model(x).pow(2).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # momentum buffer exists
    peak = measure.tracked_peak(step, [model, opt, x], "cpu")
    w = 256 * 128 * 4
    assert peak.breakdown["parameters"] == w
    assert peak.breakdown["optimizer"] == w  # the momentum buffer
    assert peak.breakdown["other"] == x.numel() * 4  # a tracked plain tensor
    assert peak.baseline_bytes == 2 * w + x.numel() * 4
    # the peak is in backward: the output (64 × 128 FP32) saved for pow and four more tensors of its size
    # (pow's result, its gradient, the gradient of the output and the weight gradient being formed, which
    # MemTracker files as a temporary until it lands in .grad), plus the 0-d loss
    y = 64 * 128 * 4
    assert peak.breakdown["temporaries"] == 5 * y and peak.breakdown["gradients"] == 0
    assert peak.peak_bytes == peak.baseline_bytes + 5 * y + 8


def test_a_changed_memtracker_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.distributed._tools import mem_tracker

    monkeypatch.delattr(mem_tracker.MemTracker, "track_external")
    with pytest.raises(measure.MemTrackerChanged, match=r"track_external missing.*pin"):
        measure.tracked_peak(lambda: None, [], "cpu")
