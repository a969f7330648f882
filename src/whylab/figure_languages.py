"""A drawn figure relabelled in another language, from the translations of its drawn texts
(:mod:`whylab.drawn_texts`): every text artist (axis labels, axes titles, legend texts and titles,
annotations and figure texts, colorbar labels) and the tick labels that are words.

Tick labels are made again at each draw from the axis's formatter (a categorical axis keeps its
English categories), so a word tick label is fixed with ``set_ticks(locs, labels=...)`` after a
canvas draw. The English of each place is kept (:func:`text_places`), so a figure can be drawn in
each language in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.axis import Axis, Tick
from matplotlib.text import Text

from whylab.drawn_texts import looks_like_code, needs_translation, translate


@dataclass
class TextPlace:
    """Where a figure draws texts: their English, and how to draw them in another language."""

    english: list[str]
    drawn: list[bool]  # which of them are drawn (a tick label outside the view is not)
    apply: Callable[[list[str]], None]


def text_places(fig: plt.Figure) -> list[TextPlace]:
    """Every place of ``fig`` that draws a text (the suptitle aside), with its English now."""
    fig.canvas.draw()  # the tick labels as they are drawn
    places: list[TextPlace] = []
    tick_texts: set[int] = set()
    for tick in fig.findobj(Tick):
        tick_texts.update((id(tick.label1), id(tick.label2)))
    seen_axes: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for minor in (False, True):
                place = _tick_place(axis, minor, seen_axes)
                if place is not None:
                    places.append(place)
    suptitle = getattr(fig, "_suptitle", None)
    for artist in fig.findobj(Text):
        if id(artist) in tick_texts or artist is suptitle or not artist.get_text():
            continue
        places.append(TextPlace([artist.get_text()], [bool(artist.get_visible())], _setter(artist)))
    return places


def _setter(artist: Text) -> Callable[[list[str]], None]:
    return lambda texts: artist.set_text(texts[0])


def _tick_place(axis: Axis, minor: bool, seen: set[int]) -> TextPlace | None:
    """The tick labels of one axis where one of them is a word; None where none is (numbers,
    math: their formatter keeps drawing them)."""
    ticker = axis.minor if minor else axis.major
    if id(ticker) in seen:  # shared axes share their ticker: one place
        return None
    seen.add(id(ticker))
    locs = list(axis.get_minorticklocs() if minor else axis.get_majorticklocs())
    if not locs:
        return None
    formatter = axis.get_minor_formatter() if minor else axis.get_major_formatter()
    labels = [str(s) for s in formatter.format_ticks(locs)]
    if not any(needs_translation(s) for s in labels):
        return None
    low, high = sorted(axis.get_view_interval())
    drawn = [bool(low <= loc <= high) for loc in locs]

    def apply(texts: list[str]) -> None:
        axis.set_ticks(locs, labels=texts, minor=minor)

    return TextPlace(labels, drawn, apply)


def relabel(places: list[TextPlace], lang: str) -> tuple[list[str], list[str]]:
    """Draw every place in ``lang``; returns the texts drawn and the English ones left English
    for want of a translation (a name that looks like code may stay as it is)."""
    drawn: list[str] = []
    missing: list[str] = []
    for place in places:
        texts = []
        for english, shown in zip(place.english, place.drawn, strict=True):
            found = translate(english, lang)
            if found is None:
                if shown and not looks_like_code(english):
                    missing.append(english)
                found = english
            texts.append(found)
            if shown:
                drawn.append(found)
        place.apply(texts)
    return _unique(drawn), _unique(missing)


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t.strip()))
