"""Figures: one seaborn style, and a save helper that insists on title, axis labels and caption,
and checks the drawn layout: no legend box over a data point, no two text labels overlapping.

The layout check uses the extents matplotlib's renderer reports for the figure as it will be
saved. With ``WHYLAB_STRICT_FIGURES=1`` (the test suite sets it) a problem raises
:class:`FigureLayoutError`; otherwise it is printed to stderr (the rule's log) and recorded in
the PNG itself (text chunk ``whylab-layout``), where the report shows it under the figure.

A figure is drawn once and saved in each report language: ``figures/<name>.png`` in English,
then ``figures/<lang>/<name>.png`` with every drawn text in ``lang`` (:mod:`whylab.figure_languages`,
from the translation files of :mod:`whylab.drawn_texts`). A text with no translation stays English
with a warning on stderr; with ``WHYLAB_STRICT_TRANSLATIONS=1`` it raises
:class:`MissingTranslationError`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib import font_manager

from whylab.drawn_texts import translate
from whylab.figure_languages import relabel, text_places
from whylab.figure_layout import LEGEND_PLACES as LEGEND_PLACES
from whylab.figure_layout import OVERLAP_SLACK_PX as OVERLAP_SLACK_PX
from whylab.figure_layout import layout_problems as layout_problems
from whylab.figure_layout import tidy_layout as tidy_layout
from whylab.fonts import hangul_font_files
from whylab.messages import DEFAULT, LANGUAGES, Msg, to_record
from whylab.results import FigureRef

STRICT_ENV = "WHYLAB_STRICT_FIGURES"
STRICT_TRANSLATIONS_ENV = "WHYLAB_STRICT_TRANSLATIONS"
LAYOUT_KEY = "whylab-layout"


class FigureLayoutError(ValueError):
    """A figure whose legend covers data or whose labels overlap (strict mode only)."""


class MissingTranslationError(ValueError):
    """A figure text with no translation in a report language (strict translations only)."""


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


def _flag(env: str) -> bool:
    return os.environ.get(env, "").strip() not in ("", "0", "false", "no")


def strict() -> bool:
    return _flag(STRICT_ENV)


def strict_translations() -> bool:
    return _flag(STRICT_TRANSLATIONS_ENV)


def save(
    fig: plt.Figure,
    outdir: Path,
    name: str,
    title: str,
    caption: str,
    *,
    languages: Sequence[str] | None = None,
) -> FigureRef:
    """Save ``fig`` as ``outdir/figures/<name>.png``, and in each of ``languages`` (default: every
    report language but English) as ``outdir/figures/<lang>/<name>.png``; return its reference.

    Every axis that carries data must have both axis labels set (with units
    where the quantity has one); this is checked here so no figure slips out
    unlabelled. The drawn layout is tidied (:func:`tidy_layout`: a legend moved off the data,
    crowded x tick labels turned) and then checked (:func:`layout_problems`), in each language.
    """
    if not title or not caption:
        raise ValueError(f"figure {name!r} needs a title and a caption")
    _check_labels(fig, name)
    figdir = outdir / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    try:
        _draw(fig, name, title, figdir / f"{name}.png")
        others = [lang for lang in LANGUAGES if lang != DEFAULT] if languages is None else languages
        translations = _translated(fig, name, title, figdir, others) if others else {}
    finally:
        plt.close(fig)
    for entry in translations.values():
        entry["path"] = str(Path(entry["path"]).relative_to(outdir))
    return FigureRef(
        path=str((figdir / f"{name}.png").relative_to(outdir)),
        title=title,
        caption=caption,
        translations=translations,
    )


def _draw(fig: plt.Figure, name: str, title: str, path: Path) -> None:
    """Title, tidy, check and save ``fig`` as ``path``."""
    fig.suptitle(title)
    tidy_layout(fig)
    problems = layout_problems(fig)
    where = name if path.parent.name == "figures" else f"{name} ({path.parent.name})"
    if problems and strict():
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise FigureLayoutError(f"figure {where!r}: " + "; ".join(problems[:5]) + more)
    for problem in problems:
        print(f"whylab: figure {where!r}: {problem}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    # kept as catalogue messages, so the report can say them in each language
    fig.savefig(path, metadata={LAYOUT_KEY: json.dumps(to_record(problems), ensure_ascii=False)})


def _translated(
    fig: plt.Figure, name: str, title: str, figdir: Path, languages: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``fig`` drawn and saved in each of ``languages``: per language its path, the texts drawn
    and the English texts left English for want of a translation."""
    places = text_places(fig)
    out: dict[str, dict[str, Any]] = {}
    for lang in languages:
        drawn, missing = relabel(places, lang)
        found = title.in_(lang) if isinstance(title, Msg) else translate(title, lang)
        if found is None:
            missing.insert(0, str(title))
        heading = str(title) if found is None else found
        if missing:
            listed = ", ".join(repr(m) for m in missing)
            if strict_translations():
                raise MissingTranslationError(
                    f"figure {name!r}: no {lang} translation (messages/{lang}/drawn/*.yaml) of {listed}"
                )
            print(
                f"whylab: figure {name!r}: no {lang} translation of {listed}; drawn in English",
                file=sys.stderr,
            )
        path = figdir / lang / f"{name}.png"
        _draw(fig, name, heading, path)
        out[lang] = {"path": str(path), "texts": [heading, *drawn], "missing": missing}
    return out


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
