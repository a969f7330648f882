"""Timing of ONNX sessions for ``quant_real_scale``: batch-1 prefill and KV-cache decode runners,
wall and thread-CPU clocks, variants run interleaved round by round, and the speed summary."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def bert_feeds(session: Any, tokens: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(1, tokens), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    names = {i.name for i in session.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}


def decoder(sess: Any, prompt: np.ndarray, new_tokens: int) -> Callable[[], tuple[float, float]]:
    """A function that prefills ``prompt`` untimed, decodes ``new_tokens`` greedily with the KV cache,
    and returns the decode's (wall, thread CPU) seconds."""
    past_names = [i.name for i in sess.session.get_inputs() if i.name.startswith("past_key_values")]
    out_names = [o.name for o in sess.session.get_outputs()]
    present = {
        n.replace("present", "past_key_values"): i for i, n in enumerate(out_names) if n.startswith("present")
    }
    if set(present) != set(past_names):
        raise RuntimeError(
            "the exported decoder's present.* outputs do not match its past_key_values.* inputs"
        )
    logits_index = out_names.index("logits")
    names = {i.name for i in sess.session.get_inputs()}

    def step(
        ids: np.ndarray, past: dict[str, np.ndarray] | None, position: int
    ) -> tuple[int, dict[str, np.ndarray]]:
        if past is None:
            feeds = sess.feeds(ids)
        else:
            total = position + ids.shape[1]
            feeds = {"input_ids": ids, **past}
            if "attention_mask" in names:
                feeds["attention_mask"] = np.ones((1, total), dtype=np.int64)
            if "position_ids" in names:
                feeds["position_ids"] = np.arange(position, total, dtype=np.int64)[None, :]
        outs = sess.session.run(None, feeds)
        nxt = int(np.argmax(outs[logits_index][0, -1]))
        return nxt, {name: outs[i] for name, i in present.items()}

    def run() -> tuple[float, float]:
        token, past = step(prompt, None, 0)
        position = prompt.shape[1]
        wall0, cpu0 = _clock()
        for _ in range(new_tokens):
            token, past = step(np.array([[token]], dtype=np.int64), past, position)
            position += 1
        wall1, cpu1 = _clock()
        return wall1 - wall0, cpu1 - cpu0

    return run


def interleaved(
    runners: Mapping[str, Callable[[], tuple[float, float]]], warmup: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Seconds (wall, thread CPU) of each runner, run in turn within every round, after warm-up rounds."""
    out: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in runners}
    for r in range(warmup + rounds):
        for name, fn in runners.items():
            wall, cpu = fn()
            if r >= warmup:
                out[name]["wall"].append(wall)
                out[name]["cpu"].append(cpu)
    return out


def prefill(sess: Any, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
    """One batch-1 forward pass of ``feeds`` through the session."""
    return lambda: sess.session.run(None, dict(feeds))


def timed(fn: Callable[[], Any]) -> Callable[[], tuple[float, float]]:
    def run() -> tuple[float, float]:
        wall0, cpu0 = _clock()
        fn()
        wall1, cpu1 = _clock()
        return wall1 - wall0, cpu1 - cpu0

    return run


def speed_summary(
    times: Mapping[str, Mapping[str, list[float]]], clock: str, work: float, unit: str
) -> dict[str, dict[str, Any]]:
    """Per format: median time, rate (work / time), and per-round speed-ups over fp32 on ``clock``."""
    ref = times["fp32"][clock]
    out: dict[str, dict[str, Any]] = {}
    for fmt, t in times.items():
        vals = t[clock]
        rounds = [r / v for r, v in zip(ref, vals, strict=True)]
        q = np.percentile(np.asarray(rounds), [25, 50, 75])
        out[fmt] = {
            "median_s": statistics.median(vals),
            "median_wall_s": statistics.median(t["wall"]),
            unit: work / statistics.median(vals),
            "speedup_rounds": rounds,
            "speedup_q25": float(q[0]),
            "speedup_median": float(q[1]),
            "speedup_q75": float(q[2]),
            "speedup_n": len(rounds),
        }
    return out
