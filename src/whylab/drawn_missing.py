"""``python -m whylab.drawn_texts missing RESULTS_DIR [--lang ko]``: per claim, every figure text,
table header and table cell that the ``lang`` page shows in English for want of an entry in
``messages/<lang>/drawn/*.yaml``, written as YAML lines to fill in (numbers as ``{}``).

A figure's texts are those its decide job recorded (``translations.<lang>.missing`` of the
result), checked again against today's translation files; a figure drawn before they were
recorded is listed as such (re-run its decide job to see its texts).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from whylab.drawn_texts import as_key, lookup, translate, translations
from whylab.report_drawn import table_view, untranslated_cells

_WORD_CELL = re.compile(r"^[a-z]+(?:-[a-z]+)*$")


def figure_gaps(fig: Mapping[str, Any], lang: str) -> list[str] | None:
    """The English texts a figure draws on the ``lang`` page for want of an entry; None where the
    figure was drawn before its texts were recorded."""
    drawn = (fig.get("translations") or {}).get(lang)
    if drawn is None:
        return None
    return [str(m) for m in drawn.get("missing") or [] if translate(str(m), lang) is None]


def word_cells(table: Mapping[str, Any], lang: str) -> list[str]:
    """One-word lowercase cells shown as code for want of an entry (``whole``, ``split``): names or
    words, for a person to tell."""
    view = table_view(table, lang)
    return list(
        dict.fromkeys(
            c["text"]
            for row in view["rows"]
            for c in row
            if c["code"] and _WORD_CELL.match(c["text"]) and lookup(c["text"], translations(lang)) is None
        )
    )


def claim_gaps(record: Mapping[str, Any], lang: str) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """(text -> where it is shown, figures drawn before texts were recorded, word cells as code)."""
    where: dict[str, list[str]] = {}
    unrecorded: list[str] = []
    words: list[str] = []
    for fig in record.get("figures") or []:
        name = Path(str(fig["path"])).stem
        gaps = figure_gaps(fig, lang)
        if gaps is None:
            unrecorded.append(name)
        for text in gaps or []:
            where.setdefault(text, []).append(f"figure {name}")
    for table in record.get("tables") or []:
        headers, cells = untranslated_cells(table, lang)
        for text in headers:
            where.setdefault(text, []).append(f"table {table['name']} header")
        for text in cells:
            where.setdefault(text, []).append(f"table {table['name']} cell")
        words += word_cells(table, lang)
    return where, unrecorded, list(dict.fromkeys(words))


def result_files(root: Path) -> Iterator[Path]:
    for pattern in ("concepts/*/result.json", "*/result.json", "result.json"):
        yield from sorted(root.glob(pattern))


def report(root: Path, lang: str) -> tuple[list[str], int]:
    """The lines to print, and how many texts have no entry."""
    lines: list[str] = []
    total = 0
    for path in result_files(root):
        record = json.loads(path.read_text(encoding="utf-8"))
        claim = str(record.get("claim_id") or path.parent.name)
        where, unrecorded, words = claim_gaps(record, lang)
        if not where and not unrecorded and not words:
            continue
        by_key: dict[str, list[str]] = {}
        for text, places in where.items():  # "d_k=4, no scaling" and "d_k=8, ...": one key
            by_key.setdefault(as_key(text), []).extend(places)
        total += len(by_key)
        lines.append(
            f"# {claim}: {len(by_key)} texts with no {lang} entry (messages/{lang}/drawn/{claim}.yaml)"
        )
        for key, places in by_key.items():
            shown = "; ".join(dict.fromkeys(places))
            lines.append(f'{json.dumps(key, ensure_ascii=False)}: ""  # {shown}')
        if unrecorded:
            lines.append(
                f"# {claim}: drawn before texts were recorded (re-run its decide job): {', '.join(unrecorded)}"
            )
        if words:
            lines.append(
                f"# {claim}: one-word cells shown as code (add an entry if a word): {', '.join(words)}"
            )
        lines.append("")
    return lines, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m whylab.drawn_texts", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    missing = sub.add_parser("missing", help="list the drawn texts with no translation")
    missing.add_argument("results", type=Path, help="the results folder (results/, or results/concepts/)")
    missing.add_argument("--lang", default="ko")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        print(f"whylab: {args.results} is not a folder", file=sys.stderr)
        return 2
    lines, total = report(args.results, args.lang)
    print("\n".join(lines))
    print(f"# {total} texts with no {args.lang} entry")
    return 0
