"""Small figure helpers of the memory stage."""

from __future__ import annotations

from matplotlib import ticker
from matplotlib.axes import Axes


def plain_log_ticks(ax: Axes, axis: str = "y") -> None:
    """Tick labels as plain text (1e-07, 0.01, 1000) on a log axis.

    matplotlib's default log labels are mathtext (10^{-7}); with the project's Hangul-first
    font list, mathtext takes the minus sign from a font that lacks U+2212 and draws a box.
    """
    fmt = ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(fmt)
    target.set_minor_formatter(ticker.NullFormatter())
