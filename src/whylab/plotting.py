"""Figures: one seaborn style, and a save helper that insists on title, axis labels and caption,
and checks the drawn layout: no legend box over a data point, no two text labels overlapping.

The layout check uses the extents matplotlib's renderer reports for the figure as it will be
saved. With ``WHYLAB_STRICT_FIGURES=1`` (the test suite sets it) a problem raises
:class:`FigureLayoutError`; otherwise it is printed to stderr (the rule's log) and recorded in
the PNG itself (text chunk ``whylab-layout``), where the report shows it under the figure.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib import font_manager

from whylab.figure_layout import LEGEND_PLACES as LEGEND_PLACES
from whylab.figure_layout import OVERLAP_SLACK_PX as OVERLAP_SLACK_PX
from whylab.figure_layout import layout_problems as layout_problems
from whylab.figure_layout import tidy_layout as tidy_layout
from whylab.fonts import hangul_font_files
from whylab.messages import Msg, to_record
from whylab.results import FigureRef

STRICT_ENV = "WHYLAB_STRICT_FIGURES"
LAYOUT_KEY = "whylab-layout"


class FigureLayoutError(ValueError):
    """A figure whose legend covers data or whose labels overlap (strict mode only)."""


def _hangul_fonts() -> list[str]:
    """Register NanumGothic from koreanize-matplotlib; [] where the package is missing."""
    fonts = hangul_font_files()
    for ttf in fonts:
        font_manager.fontManager.addfont(str(ttf))
    return ["NanumGothic"] if fonts else []


def setup() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    # DejaVu Sans draws Latin, digits and math (log ticks); NanumGothic (shipped by the
    # koreanize-matplotlib package) the Hangul DejaVu lacks: a list falls back glyph by glyph.
    plt.rcParams["font.family"] = ["DejaVu Sans", *_hangul_fonts()]
    plt.rcParams["figure.dpi"] = 110
    plt.rcParams["savefig.bbox"] = "tight"


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip() not in ("", "0", "false", "no")


def save(fig: plt.Figure, outdir: Path, name: str, title: str, caption: str) -> FigureRef:
    """Save ``fig`` as ``outdir/figures/<name>.png`` and return its reference.

    Every axis that carries data must have both axis labels set (with units
    where the quantity has one); this is checked here so no figure slips out
    unlabelled. The drawn layout is tidied (:func:`tidy_layout`: a legend moved off the data,
    crowded x tick labels turned) and then checked (:func:`layout_problems`).
    """
    if not title or not caption:
        raise ValueError(f"figure {name!r} needs a title and a caption")
    _check_labels(fig, name)
    fig.suptitle(title)
    tidy_layout(fig)
    problems = layout_problems(fig)
    if problems and strict():
        plt.close(fig)
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise FigureLayoutError(f"figure {name!r}: " + "; ".join(problems[:5]) + more)
    for problem in problems:
        print(f"whylab: figure {name!r}: {problem}", file=sys.stderr)
    figdir = outdir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    path = figdir / f"{name}.png"
    # kept as catalogue messages, so the report can say them in each language
    fig.savefig(path, metadata={LAYOUT_KEY: json.dumps(to_record(problems), ensure_ascii=False)})
    plt.close(fig)
    return FigureRef(path=str(path.relative_to(outdir)), title=title, caption=caption)


def save_figure(fig: plt.Figure, outdir: Path, key: str, **params: object) -> FigureRef:
    """:func:`save` with the title and caption from the message catalogue, ``<key>.title`` and
    ``<key>.caption`` (both formatted with ``params``); the file is named after the key's last
    part (``C05.figure.variance_vs_dk`` → ``figures/variance_vs_dk.png``)."""
    return save(
        fig, outdir, key.rsplit(".", 1)[-1], Msg(f"{key}.title", **params), Msg(f"{key}.caption", **params)
    )


def recorded_problems(png: Path) -> list[str]:
    """The layout problems :func:`save` recorded in a PNG ([] when none, or none recorded), as
    catalogue messages (plain text in a PNG written before the catalogue)."""
    from PIL import Image

    with Image.open(png) as image:
        text = getattr(image, "text", {}).get(LAYOUT_KEY)
    if not text:
        return []
    value = json.loads(text)
    return [v if isinstance(v, str) else Msg.from_dict(v) for v in value] if isinstance(value, list) else []


def _check_labels(fig: plt.Figure, name: str) -> None:
    """Every axis with data needs an x and a y label, its own or (in a grid of panels)
    one on another panel of the same column (x) or row (y), as seaborn's facet grids do."""
    x_by_col: dict[int, bool] = {}
    y_by_row: dict[int, bool] = {}
    axes = [ax for ax in fig.axes if ax.has_data() and ax.get_label() != "<colorbar>"]
    for ax in axes:
        spec = ax.get_subplotspec()
        row, col = (spec.rowspan.start, spec.colspan.start) if spec else (id(ax), id(ax))
        x_by_col[col] = x_by_col.get(col, False) or bool(ax.get_xlabel())
        y_by_row[row] = y_by_row.get(row, False) or bool(ax.get_ylabel())
    if not axes or not all(x_by_col.values()) or not all(y_by_row.values()):
        raise ValueError(f"figure {name!r}: every panel needs x and y axis labels (with units)")


setup()
