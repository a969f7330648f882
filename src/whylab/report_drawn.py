"""What the report shows of a claim's figures and tables in the page's language: the figure drawn in
it (the English one, with a note, where none was), and each table's headers and plain-text cells
from the drawn-text translations (:mod:`whylab.drawn_texts`); catalogue-message cells are rendered
in the language already, and a one-token cell with no entry (``ort-int8-dynamic``) is shown as code.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from whylab.drawn_texts import is_identifier, needs_translation, translate
from whylab.messages import DEFAULT, MSG_TAG, text
from whylab.report_labels import localized

_QUOTED = re.compile(r"'[^']*'")  # a quoted token (a tokenizer's piece, as Python writes it)
_SPACED_TOKEN = re.compile(r" \S+")  # a word-start token as a BPE vocabulary writes it (" the")
_PIECES = re.compile(r"\S \| \S|\S \|  \S")  # "To | ke | n": token pieces joined by " | "


def cell_text(value: Any) -> str:
    """A table cell as the page shows it: numbers to four significant digits, nothing as —."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def figure_view(fig: Mapping[str, Any], folder: Path, lang: str) -> dict[str, Any]:
    """A figure record in ``lang``: its PNG's path (the one drawn in ``lang`` where there is one),
    whether it is the English figure standing in, and the texts drawn in English for want of a
    translation."""
    view = localized(fig, lang)
    drawn = (fig.get("translations") or {}).get(lang) if lang != DEFAULT else None
    png = folder / str(fig["path"])
    english = False
    missing: list[str] = []
    if drawn and (folder / str(drawn["path"])).is_file():
        png = folder / str(drawn["path"])
        missing = [str(m) for m in drawn.get("missing") or [] if translate(str(m), lang) is None]
    elif lang != DEFAULT:
        english = True
    return view | {"png": png, "in_english": english, "untranslated": missing}


def _kept_cells(table: Mapping[str, Any]) -> list[list[bool]] | None:
    """Which cells the table keeps as catalogue messages (None: no cell is one)."""
    kept = (table.get("messages") or {}).get("rows")
    if not isinstance(kept, list):
        return None
    return [[isinstance(c, Mapping) and MSG_TAG in c for c in row] for row in kept]


def _piece(value: str, lang: str, header: bool) -> dict[str, Any]:
    """A header or plain cell text in ``lang``: {"text", "code"} (code: shown as code, as a name or
    an untranslated header), and "missing" where it is English for want of a translation."""
    if lang == DEFAULT:
        return {"text": value, "code": header, "missing": False}
    if not header and (
        _PIECES.search(value) or _QUOTED.fullmatch(value) or _SPACED_TOKEN.fullmatch(value)
    ):  # tokens: data
        return {"text": value, "code": True, "missing": False}
    found = translate(value, lang)
    if found is not None and found != value:
        return {"text": found, "code": False, "missing": False}
    if found is None:  # words with no entry: a name stays as code; prose is English (missing)
        return {"text": value, "code": is_identifier(value), "missing": header or not is_identifier(value)}
    # an identity entry (a name, or data such as a sample sentence: code), or no words (numbers)
    return {"text": value, "code": header or needs_translation(value), "missing": False}


def table_view(table: Mapping[str, Any], lang: str) -> dict[str, Any]:
    """A table record in ``lang``: caption, ``columns`` and ``rows`` as pieces (see :func:`_piece`)."""
    view = localized(table, lang)
    kept = _kept_cells(table)
    rows = []
    for r, row in enumerate(view["rows"]):
        cells = []
        for c, value in enumerate(row):
            shown = cell_text(value)
            is_msg = kept is not None and r < len(kept) and c < len(kept[r]) and kept[r][c]
            if is_msg or not isinstance(value, str):
                cells.append({"text": text(shown, lang), "code": False, "missing": False})
            else:
                cells.append(_piece(shown, lang, header=False))
        rows.append(cells)
    columns = [_piece(str(c), lang, header=True) for c in view["columns"]]
    return view | {"columns": columns, "rows": rows}


def untranslated_cells(table: Mapping[str, Any], lang: str) -> tuple[list[str], list[str]]:
    """The headers and the plain-text cells of ``table`` that the ``lang`` page shows in English for
    want of a translation (identifiers and numbers aside)."""
    view = table_view(table, lang)
    headers = [c["text"] for c in view["columns"] if c["missing"]]
    cells = [c["text"] for row in view["rows"] for c in row if c["missing"]]
    return list(dict.fromkeys(headers)), list(dict.fromkeys(cells))
