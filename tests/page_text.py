"""The fixed text of a report page: what a reader reads, without code, data and citations."""

from __future__ import annotations

from html.parser import HTMLParser

# elements whose text is not the page's own words: code and data, citations, the page's machinery
SKIPPED = {"code", "pre", "cite", "style", "script", "title"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, skips its text)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"meta", "link", "img", "br", "input", "hr"}:
            return
        classes = (dict(attrs).get("class") or "").split()
        skip = tag in SKIPPED or (tag == "table" and "data" in classes)
        self.stack.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if not any(skip for _, skip in self.stack):
            self.parts.append(data)


def fixed_text(html: str) -> str:
    """The page's text outside code, preformatted data, data tables (their header row names the
    columns as code), and citations."""
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())
