"""Every paper the report cites, as a link: the parts' published numbers carry their own ``url``,
and the literature checks' ``source`` strings ("Vaswani et al. 2017, section 3.2.1") are matched
to their papers by the table :data:`PAPERS`.

A link is a plain ``<a href>``: the page fetches nothing until the reader clicks it (its
Content-Security-Policy still forbids every fetch).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from whylab import claims

ARXIV = "https://arxiv.org/abs/"

# (author and year as the catalogues and results write them, arXiv id)
PAPERS: tuple[tuple[str, str], ...] = (
    ("Vaswani et al. 2017", "1706.03762"),
    ("Xiong et al. 2020", "2002.04745"),
    ("Dettmers et al. 2022", "2208.07339"),
    ("Dettmers et al. 2023", "2305.14314"),
    ("Frantar et al. 2023", "2210.17323"),
    ("Lin et al. 2024", "2306.00978"),
    ("Rajbhandari et al. 2020", "1910.02054"),
    ("Ren et al. 2021", "2101.06840"),
    ("Xiao et al. 2023", "2211.10438"),
    ("Chen et al. 2016", "1604.06174"),
    ("Shen et al. 2020", "2003.07845"),
    ("Sennrich et al. 2016", "1508.07909"),
    ("Kudo 2018", "1804.10959"),
    ("Bahdanau et al. 2015", "1409.0473"),
    ("Brown et al. 2020", "2005.14165"),
    ("Devlin et al. 2019", "1810.04805"),
    ("Korthikanti et al. 2022", "2205.05198"),
    ("Shazeer 2020", "2002.05202"),
    ("Zafrir et al. 2019", "1910.06188"),
    ("Ba et al. 2016", "1607.06450"),
    ("Ioffe & Szegedy 2015", "1502.03167"),
    ("Hu et al. 2021", "2106.09685"),
)


def _pattern(name: str) -> re.Pattern[str]:
    *authors, year = name.split()
    return re.compile(r"\b" + r"\s+".join(map(re.escape, authors)) + r",?\s+" + re.escape(year) + r"\b")


_PATTERNS = tuple((name, _pattern(name), ARXIV + arxiv) for name, arxiv in PAPERS)


def cited(source: str) -> list[dict[str, str]]:
    """The papers ``source`` names, in the order it names them: ``{"name", "url"}`` each."""
    found = [(m.start(), name, url) for name, pat, url in _PATTERNS for m in [pat.search(source)] if m]
    return [{"name": name, "url": url} for _, name, url in sorted(found)]


def linked(source: str) -> list[dict[str, str | None]]:
    """``source`` cut into pieces, each ``{"text", "url"}`` (``url`` None for the text between the
    papers it names), for the template to render with a link on each paper's name."""
    spans = sorted((m.start(), m.end(), url) for _, pat, url in _PATTERNS for m in [pat.search(source)] if m)
    out: list[dict[str, str | None]] = []
    pos = 0
    for start, end, url in spans:
        if start < pos:
            continue
        if start > pos:
            out.append({"text": source[pos:start], "url": None})
        out.append({"text": source[start:end], "url": url})
        pos = end
    if pos < len(source):
        out.append({"text": source[pos:], "url": None})
    return out


def _papers_of(record: Mapping[str, Any]) -> Iterable[dict[str, str]]:
    for lit in record.get("literature") or []:
        yield from cited(str(lit.get("source", "")))
    for part in (record.get("verdict") or {}).get("parts") or []:
        for pub in ((part.get("literature") or {}).get("published")) or []:
            if pub.get("url"):
                known = cited(str(pub.get("source", "")))
                name = known[0]["name"] if known else str(pub.get("source", ""))
                yield {"name": name, "url": str(pub["url"])}


def further_reading(records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The papers the page cites, by topic (the notes' sections): ``{"topic", "papers"}``, each
    paper ``{"name", "url", "claims"}`` (the claims citing it), once per topic."""
    out: list[dict[str, Any]] = []
    for topic, ids in claims.SECTIONS:
        papers: dict[str, dict[str, Any]] = {}
        for cid in ids:
            for paper in _papers_of(records.get(cid) or {}):
                entry = papers.setdefault(paper["url"], {**paper, "claims": []})
                if cid not in entry["claims"]:
                    entry["claims"].append(cid)
        if papers:
            out.append({"topic": topic, "papers": sorted(papers.values(), key=_year_then_name)})
    return out


def _year_then_name(paper: dict[str, Any]) -> tuple[str, str]:
    year = re.findall(r"(?:19|20)\d\d", str(paper["name"]))
    return (year[-1] if year else "9999", str(paper["name"]))
