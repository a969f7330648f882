"""Checks that the report's texts come from the message catalogues and render in Korean.

Shared by the claim tests (each used to carry its own copy): what a result record keeps as
catalogue messages, rendered in a language and named by where they sit (``method``,
``verdict.reason``, ``tables.0.caption``, ``tables.0.rows.1.2``, ``skipped.0``), and the checks
that a record or a verdict is in Korean without English prose.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any

from whylab.messages import MSG_TAG, Msg, catalogue, english_runs, placeholders
from whylab.verdict import Label, Verdict


def record_messages(record: Any) -> Iterator[Msg]:
    """Every catalogue message kept anywhere in a result record (or part of one), as a message."""
    if isinstance(record, dict):
        if MSG_TAG in record:
            yield Msg.from_dict(record)
            return
        for value in record.values():
            yield from record_messages(value)
    elif isinstance(record, list):
        for value in record:
            yield from record_messages(value)


def record_texts(record: Any, lang: str, where: str = "") -> dict[str, str]:
    """Every catalogue message a result record (or part of one) keeps under its ``messages``,
    rendered in ``lang``, by where it sits. A kept list (skipped notes, table rows) counts item by
    item; its items that are not messages (numbers, names, plain cells) are not texts of the
    catalogue and are left out."""
    out: dict[str, str] = {}
    if isinstance(record, dict):
        for name, kept in record.get("messages", {}).items():
            out.update(_kept_texts(kept, lang, f"{where}{name}"))
        for key, value in record.items():
            if key != "messages":
                out.update(record_texts(value, lang, f"{where}{key}."))
    elif isinstance(record, list):
        for i, value in enumerate(record):
            out.update(record_texts(value, lang, f"{where}{i}."))
    return out


def _kept_texts(kept: Any, lang: str, where: str) -> dict[str, str]:
    if isinstance(kept, dict) and MSG_TAG in kept:
        return {where: Msg.from_dict(kept).in_(lang)}
    if isinstance(kept, list):
        out: dict[str, str] = {}
        for i, item in enumerate(kept):
            out.update(_kept_texts(item, lang, f"{where}.{i}"))
        return out
    return {}


def korean_texts(record: Any) -> dict[str, str]:
    """Every catalogue message kept in a result record (or part of one), rendered in Korean, by
    where it sits."""
    return record_texts(record, "ko")


def evidence_places(
    record: dict[str, Any], verdict: Iterable[str] = ("reason", "takeaway", "primary")
) -> list[str]:
    """Where a result record keeps its method, table captions, figure titles and captions,
    literature findings and notes, and the named texts of its verdict (as :func:`korean_texts`
    names them)."""
    places = ["method", *(f"verdict.{name}" for name in verdict)]
    places += [f"tables.{i}.caption" for i in range(len(record.get("tables", [])))]
    places += [
        f"figures.{i}.{k}" for i in range(len(record.get("figures", []))) for k in ("title", "caption")
    ]
    places += [
        f"literature.{i}.{k}" for i in range(len(record.get("literature", []))) for k in ("finding", "note")
    ]
    return places


def assert_record_in_korean(
    record: Any,
    *,
    required: Iterable[str] = (),
    differs_from_english: Iterable[str] = (),
    skip: Collection[str] = (),
) -> dict[str, str]:
    """Every catalogue message kept in ``record`` renders in Korean, non-empty and without English
    prose (except the places in ``skip``); the places in ``required`` are kept as messages, and
    those in ``differs_from_english`` read differently from their English. Returns the Korean
    texts by where they sit."""
    korean = korean_texts(record)
    missing = [where for where in required if where not in korean]
    assert not missing, f"not kept as catalogue messages: {missing}"
    for where, text in korean.items():
        if where in skip:
            continue
        assert text, f"{where}: empty in Korean"
        assert english_runs(text) == [], (where, english_runs(text), text)
    different = list(differs_from_english)
    if different:
        english = record_texts(record, "en")
        same = [where for where in different if korean[where] == english[where]]
        assert not same, f"the same in Korean as in English: {same}"
    return korean


def assert_in_korean(text: Any, *, differs_from_english: bool = False) -> str:
    """``text`` is a catalogue message whose Korean is non-empty and has no English prose (and,
    with ``differs_from_english``, reads differently from its English). Returns the Korean."""
    assert isinstance(text, Msg), f"not a catalogue message: {text!r}"
    ko = text.in_("ko")
    assert ko, f"{text.key}: empty in Korean"
    assert english_runs(ko) == [], (text.key, english_runs(ko), ko)
    if differs_from_english:
        assert ko != str(text), (text.key, "the same in Korean as in English", ko)
    return ko


def verdict_texts(v: Verdict) -> list[Any]:
    """A verdict's texts: reason, takeaway, primary, each limited part, and its correction if any."""
    return [v.reason, v.takeaway, v.primary, *v.limited, *([v.correction] if v.correction else [])]


def assert_explained(
    v: Verdict, claim_id: str, branch: str | None = None, *, differs_from_english: bool = False
) -> None:
    """The verdict was built by a branch of ``claim_id`` (``branch``, e.g. ``"scaled"`` or
    ``"C05.verdict.scaled"``, when given), has a takeaway, has a correction exactly when partly or
    not supported, and every text of it is a catalogue message that renders in Korean (see
    :func:`assert_in_korean`)."""
    prefix = f"{claim_id}.verdict."
    if branch is None:
        assert v.branch.startswith(prefix), (v.branch, prefix)
    else:
        expected = branch if branch.startswith(prefix) else prefix + branch
        assert v.branch == expected, (v.branch, expected)
    assert v.takeaway, (v.branch, "no takeaway")
    assert bool(v.correction) == (v.label in (Label.PARTLY, Label.NOT_SUPPORTED)), (v.branch, v.label)
    for text in verdict_texts(v):
        assert_in_korean(text, differs_from_english=differs_from_english)


def assert_catalogue_in_korean(file: str) -> None:
    """The catalogue file ``file`` (``C10``, ``quant``) has the same keys in English and Korean,
    with the same placeholders, and no Korean text of it carries English prose (also the texts no
    test run reaches)."""
    en = {k: v for k, v in catalogue("en").items() if k.split(".")[0] == file}
    ko = {k: v for k, v in catalogue("ko").items() if k.split(".")[0] == file}
    assert en and set(en) == set(ko), sorted(set(en) ^ set(ko))
    for key, text in en.items():
        assert placeholders(text) == placeholders(ko[key]), key
        assert english_runs(ko[key]) == [], (key, ko[key])
