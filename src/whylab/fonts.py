"""The Hangul font: NanumGothic as koreanize-matplotlib ships it, for figures and the report.

A browser without a Korean font draws Hangul as empty boxes ("tofu"), so the report embeds the
font, cut down to the characters the page uses (:func:`subset_woff`): the page stays small and
renders on any machine, offline.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from collections.abc import Iterable
from pathlib import Path

FAMILY = "WhylabHangul"  # the embedded face's name in the report's CSS


def hangul_font_files() -> list[Path]:
    """NanumGothic's files from the koreanize-matplotlib package; [] where it is missing."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(next(iter(spec.submodule_search_locations)), "fonts").glob("NanumGothic*.ttf"))


def hangul_font() -> Path | None:
    """The regular NanumGothic file, or None."""
    return next((p for p in hangul_font_files() if p.name == "NanumGothic.ttf"), None)


def covered(chars: Iterable[str], font: Path) -> set[str]:
    """The characters of ``chars`` that ``font`` has a glyph for."""
    from fontTools.ttLib import TTFont

    with TTFont(str(font), lazy=True) as tt:
        cmap = tt.getBestCmap()
    return {c for c in chars if ord(c) in cmap}


def subset_woff(chars: str, font: Path) -> bytes:
    """``font`` cut down to the glyphs of ``chars`` (those it has), as WOFF."""
    from fontTools import subset

    options = subset.Options()
    options.flavor = "woff"
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.drop_tables += ["TSI0", "TSI1", "TSI2", "TSI3", "TSI5"]  # VTT hinting sources
    loaded = subset.load_font(str(font), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(set(chars))))
    subsetter.subset(loaded)
    buf = io.BytesIO()
    subset.save_font(loaded, buf, options)
    return buf.getvalue()


def font_face_css(chars: str) -> str:
    """An ``@font-face`` rule embedding NanumGothic for the non-ASCII characters of ``chars`` it
    has (a data URI: the page's CSP allows ``font-src data:``); "" when the font is missing."""
    font = hangul_font()
    if font is None:
        return ""
    wanted = "".join(sorted(covered({c for c in chars if ord(c) > 0x7F}, font)))
    if not wanted:
        return ""
    data = base64.b64encode(subset_woff(wanted, font)).decode("ascii")
    ranges = ",".join(f"U+{ord(c):04X}" for c in wanted)
    return (
        f'@font-face {{ font-family: "{FAMILY}"; font-style: normal; font-weight: 400; '
        f'src: url(data:font/woff;base64,{data}) format("woff"); unicode-range: {ranges}; }}'
    )
