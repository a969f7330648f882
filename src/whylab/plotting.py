"""Figures: one seaborn style, and a save helper that insists on title, axis labels and caption."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib import font_manager

from whylab.results import FigureRef


def _hangul_fonts() -> list[str]:
    """Register NanumGothic from koreanize-matplotlib; [] where the package is missing."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    fonts = sorted(Path(next(iter(spec.submodule_search_locations)), "fonts").glob("NanumGothic*.ttf"))
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


def save(fig: plt.Figure, outdir: Path, name: str, title: str, caption: str) -> FigureRef:
    """Save ``fig`` as ``outdir/figures/<name>.png`` and return its reference.

    Every axis that carries data must have both axis labels set (with units
    where the quantity has one); this is checked here so no figure slips out
    unlabelled.
    """
    if not title or not caption:
        raise ValueError(f"figure {name!r} needs a title and a caption")
    _check_labels(fig, name)
    fig.suptitle(title)
    figdir = outdir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    path = figdir / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return FigureRef(path=str(path.relative_to(outdir)), title=title, caption=caption)


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
