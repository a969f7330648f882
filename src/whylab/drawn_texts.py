"""Texts drawn in code (figure labels, table headers and cells) in another language.

The English text a figure or table is drawn with is its message id (gettext style). A language's
translations are the flat YAML mappings ``messages/<lang>/drawn/*.yaml`` (one per claim,
``C01.yaml`` … ``C21.yaml``, and ``common.yaml`` for texts many claims share), each entry
``"<English text>": "<text in lang>"``, merged into one dictionary per language; one key with two
different values in two files is an error.

In a key every number of the drawn text is written ``{}`` (a number: an optional sign, digits,
decimals, an exponent and an optional ``%``; ``"d_k = 64"`` has the key ``"d_k = {}"``), and the
translation writes the numbers' places as ``{}`` in the same order, with Korean particle markers
after them where needed (``{}(으)로``, resolved by :mod:`whylab.messages.korean`). A key may also
keep a number as written (``"int8 weights"``, ``"top 5"``): the lookup tries the text as it is,
then with the numbers standing alone (not glued to a letter) as ``{}``, then with every number as
``{}``. Identity entries (``"GPTQ": "GPTQ"``) say a text is a name and stays as it is.

A text needs a translation when, outside its mathtext (``$...$``), it has a Latin word of two
letters or more; numbers, one-letter symbols (``d_k``, ``W_v``) and math do not.

``python -m whylab.drawn_texts missing RESULTS_DIR`` lists, per claim, the figure texts, table
headers and table cells of the Korean page that have no entry yet (see
:mod:`whylab.drawn_missing`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files

from whylab.files import parse_yaml
from whylab.messages import DEFAULT, LANGUAGES, korean

DRAWN_DIR = "drawn"
PLACE = "{}"

_CORE = r"\d+(?:\.\d+)?(?:[eE][-+−]?\d+)?%?"
# a number that stands alone: not glued to a letter, digit, underscore or point before it
_ALONE = re.compile(rf"(?<![\w.])(?:[-+−](?=\d))?{_CORE}")
# every number, ``int8``'s 8 and ``C05``'s 05 too; a sign only where no letter or digit is before it
_ANY = re.compile(rf"(?:(?<![\w.])[-+−](?=\d))?(?<![\d.]){_CORE}")
_MATH = re.compile(r"(?<!\\)\$(?:[^$\\]|\\.)*(?<!\\)\$")
_WORD = re.compile(r"[A-Za-z]{2,}")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")


class DrawnTextsError(ValueError):
    """A translation file that is not a flat mapping of texts, or two files that disagree."""


def needs_translation(text: str) -> bool:
    """Whether ``text`` has a Latin word of two letters or more outside its mathtext."""
    return bool(_WORD.search(_MATH.sub(" ", str(text))))


def has_hangul(text: str) -> bool:
    return bool(_HANGUL.search(str(text)))


def is_identifier(text: str) -> bool:
    """A table cell shown as code, not translated: one token, no spaces (``ort-int8-dynamic``,
    ``torchao_int4``, ``Llama-2-7B``), unless a translation file has an entry for it."""
    return bool(text) and not any(c.isspace() for c in str(text))


def looks_like_code(text: str) -> bool:
    """A drawn text that is a name rather than a word, so it may stay as it is without an entry:
    one token with a digit or an underscore (``int8``, ``fp16``, ``val_loss``), or with a capital
    after its first letter (``LayerNorm``, ``GPTQ``, ``Pre-LN``)."""
    text = str(text)
    return is_identifier(text) and bool(re.search(r"[\d_]", text) or re.search(r"[A-Z]", text[1:]))


def as_key(text: str) -> str:
    """How a text is written as a key: its numbers standing alone as ``{}`` (``d_k = {}``)."""
    return _placed(text, _ALONE, False)[0]


def reads_english(text: str, lang: str) -> bool:
    """Whether a text shown on the ``lang`` page is English for want of a translation: it needs
    one, has no Hangul, is not a name that looks like code, and is not an identity entry."""
    text = str(text)
    return (
        needs_translation(text)
        and not has_hangul(text)
        and not looks_like_code(text)
        and lookup(text, translations(lang)) != text
    )


def keys_of(text: str) -> list[tuple[str, list[str]]]:
    """The keys ``text`` may be written under, each with the numbers its places stand for: the
    text as it is, its standing-alone numbers as ``{}``, every number as ``{}`` (each of the last
    two outside mathtext first, then inside it too)."""
    out: dict[str, list[str]] = {text: []}
    for pattern in (_ALONE, _ANY):
        for in_math in (False, True):
            key, numbers = _placed(text, pattern, in_math)
            out.setdefault(key, numbers)
    return list(out.items())


def _placed(text: str, pattern: re.Pattern[str], in_math: bool) -> tuple[str, list[str]]:
    numbers: list[str] = []

    def place(found: re.Match[str]) -> str:
        numbers.append(found.group())
        return PLACE

    if in_math:
        return pattern.sub(place, text), numbers
    pieces: list[str] = []
    last = 0
    for math in _MATH.finditer(text):
        pieces += [pattern.sub(place, text[last : math.start()]), math.group()]
        last = math.end()
    pieces.append(pattern.sub(place, text[last:]))
    return "".join(pieces), numbers


def fill(template: str, numbers: list[str], key: str = "") -> str:
    """``template`` with its ``{}`` places replaced by ``numbers`` in order, particles resolved."""
    pieces = template.split(PLACE)
    if len(pieces) - 1 != len(numbers):
        raise DrawnTextsError(
            f"drawn text {key!r}: its translation {template!r} has {len(pieces) - 1} number "
            f"places, the text {len(numbers)}"
        )
    out = pieces[0] + "".join(str(n) + piece for n, piece in zip(numbers, pieces[1:], strict=True))
    return korean.resolve(out)


@cache
def translations(lang: str) -> dict[str, str]:
    """Every entry of ``lang``'s ``messages/<lang>/drawn/*.yaml``, merged; {} for English."""
    if lang not in LANGUAGES:
        raise ValueError(f"no translations for language {lang!r} (have: {', '.join(LANGUAGES)})")
    root = files("whylab").joinpath("messages", lang, DRAWN_DIR)
    if lang == DEFAULT or not root.is_dir():
        return {}
    entries = sorted((e for e in root.iterdir() if e.name.endswith(".yaml")), key=lambda e: e.name)
    return merged((f"messages/{lang}/{DRAWN_DIR}/{e.name}", e.read_text("utf-8")) for e in entries)


def merged(sources: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The entries of YAML documents ``(where, text)``, merged; an error where one is not a flat
    mapping of texts, or where two give one key different values."""
    out: dict[str, str] = {}
    where_of: dict[str, str] = {}
    for where, source in sources:
        data = parse_yaml(source) or {}
        if not isinstance(data, dict):
            raise DrawnTextsError(f"{where}: must be a mapping of English text to translation")
        for key, value in data.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise DrawnTextsError(
                    f"{where}: {key!r}: {value!r}: keys and values must be texts (quote yes, no, "
                    "numbers and null)"
                )
            if key in out and out[key] != value:
                raise DrawnTextsError(f"{where}: {key!r} is {value!r}, but {where_of[key]} has {out[key]!r}")
            if key.count(PLACE) != value.count(PLACE):
                raise DrawnTextsError(f"{where}: {key!r}: the translation has other number places")
            out[key] = value
            where_of.setdefault(key, where)
    return out


def lookup(text: str, table: dict[str, str]) -> str | None:
    """``text``'s entry in ``table`` (numbers filled in), or None."""
    for key, numbers in keys_of(text):
        if key in table:
            return fill(table[key], numbers, key)
    return None


def translate(text: str, lang: str) -> str | None:
    """``text`` in ``lang``: its entry, else the text itself where it needs no translation (a
    number, a symbol, math); None where it needs one and has no entry. English: the text."""
    text = str(text)
    if lang == DEFAULT:
        return text
    found = lookup(text, translations(lang))
    if found is not None:
        return found
    return None if needs_translation(text) else text


def main(argv: list[str] | None = None) -> int:
    from whylab.drawn_missing import main as missing_main

    return missing_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
