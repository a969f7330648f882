"""Progress lines for training loops: a job's log (stderr) says how far it is and how long is left.

One plain line every ``every_s`` seconds (not a redrawn bar: Snakemake writes stderr to a log
file, where carriage-return updates pile up into one unreadable line)::

    [bench x5] step 120/200  loss 4.213  52,310 tok/s  2.6 s left

A loop that finishes within ``every_s`` prints nothing, so short runs (tests) stay quiet; the
check per step is one clock read.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}:{secs:02d} min" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d} h"


class Progress:
    """Call :meth:`update` after every step; it writes a line when ``every_s`` has passed."""

    def __init__(
        self,
        label: str,
        total_steps: int,
        tokens_per_step: int,
        *,
        every_s: float = 5.0,
        start_step: int = 0,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.label, self.total, self.tokens_per_step = label, total_steps, tokens_per_step
        self.every_s, self.enabled = every_s, enabled
        self.stream = stream
        self.start_step = start_step
        self.t0 = self.last = time.perf_counter()
        self.lines = 0

    def update(self, step: int, loss: float | None = None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < self.every_s:
            return
        self.last = now
        self.write(step, loss, now)

    def write(self, step: int, loss: float | None, now: float | None = None) -> None:
        """One progress line now (``update`` calls it when due)."""
        now = time.perf_counter() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        done = step - self.start_step
        rate = done / elapsed  # steps per second since the start
        left = (self.total - step) / rate if rate > 0 else float("inf")
        parts = [f"[{self.label}] step {step}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {loss:.3f}")
        parts.append(f"{rate * self.tokens_per_step:,.0f} tok/s")
        parts.append(f"{_duration(left)} left")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)
        self.lines += 1
