"""The fixed text of a report page: what a reader reads, without code, data and citations."""

from __future__ import annotations

import os
from html.parser import HTMLParser

# elements whose text is not the page's own words: code and data, citations, the page's machinery
SKIPPED = {"code", "pre", "cite", "style", "script", "title"}


class _Text(HTMLParser):
    def __init__(self, data_tables: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.data_tables = data_tables
        self.stack: list[tuple[str, bool]] = []  # (tag, skips its text)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"meta", "link", "img", "br", "input", "hr"}:
            return
        classes = (dict(attrs).get("class") or "").split()
        skip = tag in SKIPPED or (tag == "table" and "data" in classes and not self.data_tables)
        self.stack.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if not any(skip for _, skip in self.stack):
            self.parts.append(data)


def fixed_text(html: str, data_tables: bool | None = None) -> str:
    """The page's text outside code, preformatted data and citations; data tables' headers and
    cells too where ``data_tables`` (default: where ``WHYLAB_STRICT_TRANSLATIONS`` is on, as the
    tables' texts are translated from messages/<lang>/drawn/, which fill up claim by claim); their
    identifiers are code."""
    if data_tables is None:
        data_tables = os.environ.get("WHYLAB_STRICT_TRANSLATIONS", "").strip() not in ("", "0", "false", "no")
    parser = _Text(data_tables)
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


class _Cells(HTMLParser):
    """The texts of the header and data cells of data tables, outside code."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables = 0
        self.code = 0
        self.cell: list[str] | None = None
        self.cells: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and "data" in (dict(attrs).get("class") or "").split():
            self.tables += 1
        elif self.tables and tag in ("th", "td"):
            self.cell = []
        elif tag == "code":
            self.code += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.tables:
            self.tables -= 1
        elif tag in ("th", "td") and self.cell is not None:
            text = " ".join("".join(self.cell).split())
            if text:
                self.cells.append(text)
            self.cell = None
        elif tag == "code" and self.code:
            self.code -= 1

    def handle_data(self, data: str) -> None:
        if self.cell is not None and not self.code:
            self.cell.append(data)


def data_table_texts(html: str) -> list[str]:
    """Each data table header or cell's text outside its code, in page order."""
    parser = _Cells()
    parser.feed(html)
    return parser.cells
