"""What ONNX Runtime actually ran, from its own profiler: op types and their share of kernel time.

A session opened with ``SessionOptions.enable_profiling`` records one ``Node`` event per kernel
call (``args.op_name``: the op type after ONNX Runtime's graph optimizations, e.g.
``DynamicQuantizeMatMul`` or ``MatMulIntegerToFloat`` where the quantizer wrote
``MatMulInteger``; ``args.provider``: the execution provider) and one ``Session`` event
``model_run`` per inference. :func:`profile` runs a call on such a session, stops the profiler
(``end_profiling``: later runs are not profiled, so timings taken afterwards are not slowed),
reads the JSON file and deletes it; :func:`op_shares` sums the kernel time per op type over the
runs kept (the first ``skip_runs`` are warm-up or, for decode, the untimed prefill). The profile
files go to a temporary folder the caller owns, never to results.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

PROFILE_PREFIX = "ort_profile"
KERNEL_SUFFIX = "_kernel_time"


def enable(options: Any, directory: str | Path) -> None:
    """Ask ``options`` (an ``onnxruntime.SessionOptions``) for a profile written under ``directory``."""
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(directory) / PROFILE_PREFIX)


def _windows(events: Iterable[Mapping[str, Any]], skip_runs: int) -> list[tuple[float, float]]:
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: float(e["ts"]),
    )
    return [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in runs[skip_runs:]]


def op_shares(events: list[Mapping[str, Any]], skip_runs: int = 0) -> dict[str, Any]:
    """Kernel time per (op type, provider) over the ``model_run`` events after the first
    ``skip_runs``: microseconds, calls and share of the kept runs' kernel time (largest first)."""
    windows = _windows(events, skip_runs)
    sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith(KERNEL_SUFFIX):
            continue
        if "op_name" not in args:
            continue
        ts = float(e["ts"])
        if not any(start <= ts <= end for start, end in windows):
            continue
        entry = sums[(str(args["op_name"]), str(args.get("provider", "")))]
        entry[0] += float(e.get("dur", 0.0))
        entry[1] += 1
    total = sum(us for us, _ in sums.values())
    runs = len(windows)
    ops = [
        {
            "op": op,
            "provider": provider,
            "us_per_run": us / runs if runs else 0.0,
            "calls_per_run": calls / runs if runs else 0.0,
            "share_pct": 100.0 * us / total if total else 0.0,
        }
        for (op, provider), (us, calls) in sorted(sums.items(), key=lambda kv: -kv[1][0])
    ]
    return {"runs": runs, "kernel_us_per_run": total / runs if runs else 0.0, "ops": ops}


def profile(session: Any, call: Callable[[], Any], calls: int, skip_runs: int) -> dict[str, Any]:
    """Run ``call`` ``calls`` times on a profiling ``session`` (an ``onnxruntime.InferenceSession``),
    stop its profiler, and return :func:`op_shares` of the file (deleted after reading)."""
    for _ in range(calls):
        call()
    path = Path(session.end_profiling())
    try:
        events = json.loads(path.read_text(encoding="utf-8"))
    finally:
        path.unlink(missing_ok=True)
    return op_shares(list(events), skip_runs)


def top_ops(record: Mapping[str, Any] | None, n: int = 3, min_share: float = 1.0) -> list[Mapping[str, Any]]:
    """The ``n`` op types with the most kernel time (those above ``min_share`` %)."""
    ops = list((record or {}).get("ops") or [])
    return [o for o in ops[:n] if float(o["share_pct"]) >= min_share] or ops[:1]


def share_of(record: Mapping[str, Any] | None, ops: Iterable[str]) -> float:
    """The share (%) of kernel time spent in the op types ``ops``."""
    wanted = set(ops)
    return sum(float(o["share_pct"]) for o in (record or {}).get("ops") or [] if o["op"] in wanted)
