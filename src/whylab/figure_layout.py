"""The layout check of a drawn figure: no legend box over a data point, no two text labels
overlapping, and the tidying that fixes what it can before the check (a legend moved off the
data, crowded x tick labels turned). :func:`whylab.plotting.save` runs both on every figure.

The check uses the extents matplotlib's renderer reports for the figure as it will be saved.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.container import BarContainer
from matplotlib.image import AxesImage
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from whylab.messages import Msg

# pixels two boxes must share, in each direction, to count as overlapping (anti-aliasing slack)
OVERLAP_SLACK_PX = 1.0


@dataclass(frozen=True)
class _Label:
    """A drawn text as an oriented rectangle in display pixels."""

    what: str
    center: tuple[float, float]
    half: tuple[float, float]  # half width, half height before rotation
    angle: float  # radians

    def corners(self) -> np.ndarray:
        hw, hh = self.half
        c, s = math.cos(self.angle), math.sin(self.angle)
        local = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        rot = np.array([[c, -s], [s, c]])
        return local @ rot.T + np.array(self.center)

    def overlaps(self, other: _Label) -> bool:
        """Separating-axis test of two oriented rectangles, each shrunk by the slack."""
        a, b = self._shrunk().corners(), other._shrunk().corners()
        for rect in (a, b):
            for i in range(2):
                edge = rect[i + 1] - rect[i]
                axis = np.array([-edge[1], edge[0]])
                norm = float(np.hypot(*axis))
                if norm == 0.0:
                    return False
                pa, pb = a @ axis / norm, b @ axis / norm
                if pa.max() <= pb.min() or pb.max() <= pa.min():
                    return False
        return True

    def _shrunk(self) -> _Label:
        slack = OVERLAP_SLACK_PX / 2
        hw, hh = self.half
        return _Label(self.what, self.center, (max(hw - slack, 0.0), max(hh - slack, 0.0)), self.angle)


def _text_label(text: Text, what: str, renderer: RendererBase) -> _Label | None:
    if not text.get_visible() or not text.get_text().strip():
        return None
    box = text.get_window_extent(renderer)
    if box.width <= 0 or box.height <= 0:
        return None
    angle = text.get_rotation()
    if angle % 180 == 0:
        half = (box.width / 2, box.height / 2)
    else:
        # the extent is the upright box around the rotated text; measure the text unrotated
        text.set_rotation(0)
        flat = text.get_window_extent(renderer)
        text.set_rotation(angle)
        half = (flat.width / 2, flat.height / 2)
    return _Label(
        what, (float(box.x0 + box.width / 2), float(box.y0 + box.height / 2)), half, math.radians(angle)
    )


def _panel(ax: Axes) -> Msg:
    if ax.get_title():
        return Msg("plotting.panel.titled", title=repr(ax.get_title()))
    fig = ax.get_figure(root=True)
    return (
        Msg("plotting.panel.number", n=fig.axes.index(ax) + 1)
        if fig is not None
        else Msg("plotting.panel.any")
    )


def _tick_labels(ax: Axes) -> Iterator[tuple[Text, str]]:
    """The tick labels drawn: ticks whose location lies within the view interval."""
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        low, high = sorted(axis.get_view_interval())
        transform = axis.get_transform()
        t_low, t_high = sorted(float(v) for v in transform.transform([low, high]))
        tol = 1e-9 * max(1.0, abs(t_high - t_low))
        for label in [*axis.get_majorticklabels(), *axis.get_minorticklabels()]:
            pos = label.get_position()[0 if name == "x" else 1]
            try:
                loc = float(transform.transform([pos])[0])
            except (ValueError, AssertionError):
                continue
            if t_low - tol <= loc <= t_high + tol:
                yield (
                    label,
                    Msg("plotting.tick_label", axis=name, text=repr(label.get_text()), panel=_panel(ax)),
                )


def _texts(fig: plt.Figure, renderer: RendererBase) -> list[_Label]:
    out: list[_Label] = []
    for ax in fig.axes:
        candidates: list[tuple[Text, str]] = list(_tick_labels(ax))
        candidates += [
            (t, Msg("plotting.annotation", text=repr(t.get_text()), panel=_panel(ax))) for t in ax.texts
        ]
        for text, what in candidates:
            label = _text_label(text, what, renderer)
            if label is not None:
                out.append(label)
    return out


def _legends(fig: plt.Figure) -> Iterator[tuple[Legend, list[Axes]]]:
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            yield legend, [ax]
    for legend in fig.legends:
        if legend.get_visible():
            yield legend, list(fig.axes)


def _inside(box: Bbox, points: np.ndarray) -> int:
    if points.size == 0:
        return 0
    pts = points[np.isfinite(points).all(axis=1)]
    return int(
        ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)).sum()
    )


def _intersects(a: Bbox, b: Bbox) -> bool:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > OVERLAP_SLACK_PX and h > OVERLAP_SLACK_PX


def _covered(legend_box: Bbox, ax: Axes, renderer: RendererBase) -> int:
    """How many data points (line vertices, scatter points, bars, images) of ``ax`` the box covers."""
    area = ax.get_window_extent(renderer)
    box = Bbox.intersection(legend_box, area)
    if box is None:
        return 0
    n = 0
    for line in ax.get_lines():
        if line.get_visible():
            n += _inside(box, line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float)))
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        if isinstance(coll, PathCollection):
            offsets = np.asarray(coll.get_offsets(), dtype=float)
            if offsets.size:
                n += _inside(box, coll.get_offset_transform().transform(offsets))
        elif isinstance(coll, QuadMesh):
            n += int(_intersects(box, coll.get_window_extent(renderer)))
    for image in ax.images:
        if isinstance(image, AxesImage) and image.get_visible():
            n += int(_intersects(box, image.get_window_extent(renderer)))
    for container in ax.containers:
        if isinstance(container, BarContainer):
            for patch in container.patches:
                if patch.get_visible() and patch.get_height() and patch.get_width():
                    n += int(_intersects(box, patch.get_window_extent(renderer)))
    return n


def _draw(fig: plt.Figure) -> RendererBase:
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legend_cover(fig: plt.Figure, legend: Legend, renderer: RendererBase) -> list[Msg]:
    """What ``legend`` covers: data of any panel (a panel's legend may sit over its neighbour)."""
    box = legend.get_window_extent(renderer)
    out = []
    for ax in fig.axes:
        n = _covered(box, ax, renderer)
        if n:
            out.append(Msg("plotting.legend_covers", n=n, panel=_panel(ax)))
    return out


def _covered_count(fig: plt.Figure, legend: Legend, renderer: RendererBase) -> int:
    box = legend.get_window_extent(renderer)
    return sum(_covered(box, ax, renderer) for ax in fig.axes)


def layout_problems(fig: plt.Figure) -> list[Msg]:
    """What a reader would misread in ``fig`` as drawn: one line per problem ([] when none).

    - a legend box (of a panel, or of the figure) covering a data point of any panel: a line's
      vertex, a scatter point, a bar or an image inside the legend's frame;
    - two labels overlapping: tick labels (only the ticks drawn) and annotations (``ax.text``,
      ``ax.annotate``), compared as rotated rectangles across the whole figure.
    """
    renderer = _draw(fig)
    problems: list[Msg] = []
    for legend, _ in _legends(fig):
        problems += _legend_cover(fig, legend, renderer)
    labels = _texts(fig, renderer)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if a.overlaps(b):
                problems.append(Msg("plotting.overlap", a=a.what, b=b.what))
    return problems


# the places a panel's legend is tried in, inside the panel, before outside to its right
LEGEND_PLACES = (
    "upper right",
    "upper left",
    "lower right",
    "lower left",
    "center right",
    "center left",
    "upper center",
    "lower center",
)


def tidy_layout(fig: plt.Figure) -> None:
    """Fix what can be fixed without changing what a figure shows, before it is checked:

    - a panel's legend that covers data moves to the first of :data:`LEGEND_PLACES` where it
      covers none, else (for a panel with no neighbour on its right) outside, right of the panel;
    - a panel's x tick labels that overlap are turned 30°, then 90°.

    Whatever still overlaps is left for :func:`layout_problems` to report.
    """
    renderer = _draw(fig)
    right_edge = max((ax.get_position().x1 for ax in fig.axes), default=1.0)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible() or not _legend_cover(fig, legend, renderer):
            continue
        places: list[tuple[str, dict[str, object]]] = [(loc, {}) for loc in LEGEND_PLACES]
        if ax.get_position().x1 >= right_edge - 1e-6:
            places.append(("upper left", {"bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}))
        places += [(loc, {"fontsize": "small", "title_fontsize": "small"}) for loc in LEGEND_PLACES]
        best: tuple[int, str, dict[str, object]] | None = None
        for loc, extra in places:
            sns.move_legend(ax, loc, **extra)
            renderer = _draw(fig)
            moved = ax.get_legend()
            covered = _covered_count(fig, moved, renderer) if moved is not None else 0
            if best is None or covered < best[0]:
                best = (covered, loc, extra)
            if covered == 0:
                break
        else:
            # nowhere free: the place that covers least (the check still reports it)
            if best is not None:
                sns.move_legend(ax, best[1], **best[2])
                renderer = _draw(fig)
    for ax in fig.axes:
        for rotation in (30, 90):
            labels = [
                lab
                for text, what in _tick_labels(ax)
                if what.startswith("x ") and (lab := _text_label(text, what, renderer)) is not None
            ]
            if not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1 :]):
                break
            for text in ax.get_xticklabels():
                text.set_rotation(rotation)
                text.set_horizontalalignment("right" if rotation < 90 else "center")
                text.set_rotation_mode("anchor" if rotation < 90 else "default")
            renderer = _draw(fig)
