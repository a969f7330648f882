"""Every sentence the report shows, in each language, from one message catalogue per language.

A catalogue is the YAML files under ``whylab/messages/<lang>/``; a file's name is the first part
of its keys (``C05.yaml``'s ``verdict.scaled.reason`` is ``C05.verdict.scaled.reason``). A text is
a :class:`Msg`: a catalogue key and its parameters (numbers, code, or other messages), formatted
with :meth:`str.format` in the language asked for. A ``Msg`` *is* its English text (a ``str``), so
code and tests that read the English keep working, while the report renders any language from the
key and parameters that the result file keeps beside it (:func:`to_record`).

A Korean template writes a particle after a parameter as a marker, ``{width}을(를)`` or
``{value}(으)로``, resolved after formatting by the sound of the text before it
(:mod:`whylab.messages.korean`).

Both catalogues must have the same keys (a test checks it), so a page in either language has
every sentence the other has.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from whylab.files import parse_yaml
from whylab.messages import korean

LANGUAGES = ("en", "ko")
DEFAULT = "en"
MSG_TAG = "$msg"  # how a message is told apart from a plain object in a result file


class Msg(str):
    """A catalogue key and its parameters; the ``str`` value is the English text.

    Parameters may be numbers, strings (code, names: shown as they are), ``None``, other messages,
    or lists of these; a list is joined by its format spec in the text (``{parts:, }`` joins with
    ", ", a bare ``{parts}`` with "; ").
    """

    key: str
    params: dict[str, Any]

    def __new__(cls, key: str, /, **params: Any) -> Msg:
        obj = super().__new__(cls, _render(key, params, DEFAULT))
        obj.key = key
        obj.params = params
        return obj

    def in_(self, lang: str) -> str:
        """This text in ``lang``."""
        return _render(self.key, self.params, lang)

    def to_dict(self) -> dict[str, Any]:
        return {MSG_TAG: self.key, "params": {k: _param_to_json(v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Msg:
        return cls(str(data[MSG_TAG]), **{k: _param_from_json(v) for k, v in data["params"].items()})

    def __reduce__(self) -> tuple[Any, ...]:  # pickling (multiprocessing) keeps the key
        return (_rebuild, (self.key, self.params))


def _rebuild(key: str, params: dict[str, Any]) -> Msg:
    return Msg(key, **params)


def empty() -> Msg:
    """The empty text, for an optional part of a sentence that this branch leaves out."""
    return Msg("common.empty")


def language_name(code: str) -> Msg | str:
    """A language code (``en``, ``ko``) as a text for prose: the code itself in English (as the
    English page has always written it), the language's name in Korean (영어, 한국어); an unknown
    code as it is."""
    key = f"common.language.{code}"
    return Msg(key) if key in catalogue(DEFAULT) else code


# --------------------------------------------------------------------------- catalogues


@cache
def catalogue(lang: str) -> dict[str, str]:
    """Every key of ``lang``'s catalogue, flattened to dotted keys."""
    if lang not in LANGUAGES:
        raise ValueError(f"no message catalogue for language {lang!r} (have: {', '.join(LANGUAGES)})")
    root = files("whylab").joinpath("messages", lang)
    out: dict[str, str] = {}
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        data = parse_yaml(entry.read_text("utf-8")) or {}
        _flatten(data, entry.name.removesuffix(".yaml"), out, f"messages/{lang}/{entry.name}")
    return out


@cache
def glossary(lang: str) -> list[dict[str, Any]]:
    """The terms ``lang``'s texts use (``messages/glossary.<lang>.yaml``): each an ``en`` term, its one
    ``ko`` word, the alternatives to ``avoid`` (regular expressions) and a ``note``; empty where a
    language has none."""
    entry = files("whylab").joinpath("messages", f"glossary.{lang}.yaml")
    if not entry.is_file():
        return []
    terms = (parse_yaml(entry.read_text("utf-8")) or {}).get("terms") or []
    return [dict(term) for term in terms]


def _flatten(data: Any, prefix: str, out: dict[str, str], where: str) -> None:
    if isinstance(data, Mapping):
        for key, value in data.items():
            _flatten(value, f"{prefix}.{key}", out, where)
    elif isinstance(data, str):
        out[prefix] = data
    else:
        raise ValueError(f"{where}: {prefix} must be a text or a mapping, not {type(data).__name__}")


def placeholders(template: str) -> set[str]:
    """The parameter names a catalogue text uses."""
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


# --------------------------------------------------------------------------- rendering


def text(value: Any, lang: str = DEFAULT) -> str:
    """A message in ``lang``; anything else as it is (numbers, code, names)."""
    if isinstance(value, Msg):
        return value.in_(lang)
    return value if isinstance(value, str) else str(value)


def _render(key: str, params: Mapping[str, Any], lang: str) -> str:
    try:
        template = catalogue(lang)[key]
    except KeyError:
        raise KeyError(f"message {key!r} is not in the {lang} catalogue") from None
    values = {name: _param_text(value, lang) for name, value in params.items()}
    try:
        return korean.resolve_protected(_FORMATTER.vformat(korean.protect(template), (), values))
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"message {key!r} ({lang}) cannot be formatted with {sorted(params)}: {err}"
        ) from err


class _Formatter(string.Formatter):
    """str.format, where a list's format spec is the separator its items are joined with."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if isinstance(value, list):
            return (format_spec or "; ").join(str(v) for v in value)
        return super().format_field(value, format_spec)


_FORMATTER = _Formatter()


def _param_text(value: Any, lang: str) -> Any:
    if isinstance(value, Msg):
        return value.in_(lang)
    if isinstance(value, list | tuple):
        return [_param_text(v, lang) for v in value]
    return value


# --------------------------------------------------------------------------- result files


def _param_to_json(value: Any) -> Any:
    if isinstance(value, Msg):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_param_to_json(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def _param_from_json(value: Any) -> Any:
    if isinstance(value, Mapping) and MSG_TAG in value:
        return Msg.from_dict(value)
    if isinstance(value, list):
        return [_param_from_json(v) for v in value]
    return value


def to_record(value: Any) -> Any:
    """How a text is kept in a result file: a message as its key and parameters, anything else as
    it is (a plain string: text from before the catalogue, or a name)."""
    if isinstance(value, Msg):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [to_record(v) for v in value]
    return value


def from_record(value: Any, lang: str = DEFAULT) -> Any:
    """A text kept by :func:`to_record`, rendered in ``lang`` (lists item by item)."""
    if isinstance(value, Mapping) and MSG_TAG in value:
        return Msg.from_dict(value).in_(lang)
    if isinstance(value, list):
        return [from_record(v, lang) for v in value]
    return value


# --------------------------------------------------------------------------- checks

_LATIN_WORD = re.compile(r"^[(\"“‘']?[A-Za-z][A-Za-z'’-]*[)\"”’']?[,.;:!?)]*$")


def english_runs(text_: str, min_words: int = 3, min_lowercase: int = 2) -> list[str]:
    """Runs of English prose in a text meant to be in another language: at least ``min_words``
    Latin words in a row with at least ``min_lowercase`` of them all lowercase (a sentence, not a
    name such as "Pre-LN LayerNorm" or a citation). Words with digits, underscores or symbols
    (code, units, numbers) break a run."""
    runs: list[str] = []
    current: list[str] = []
    for token in [*text_.split(), ""]:
        if token and _LATIN_WORD.match(token):
            current.append(token)
            continue
        lower = sum(1 for w in current if w.strip("()\"“”‘’',.;:!?").islower())
        if len(current) >= min_words and lower >= min_lowercase:
            runs.append(" ".join(current))
        current = []
    return runs


# --------------------------------------------------------------------------- texts in other JSON files


def kept_beside(name: str, value: Msg) -> dict[str, Any]:
    """``{name: the English, name + "_msg": key and parameters}``: how a step's own JSON file
    (not a result) keeps a text, so its readers get the English and the report any language
    (:func:`recorded`)."""
    return {name: str(value), f"{name}_msg": value.to_dict()}


def recorded(record: Mapping[str, Any], name: str) -> str:
    """The text ``name`` of a record written with :func:`kept_beside`: the message where it was
    kept, else the text as written (a file from before the catalogue, e.g. a recorded GPU run)."""
    kept = record.get(f"{name}_msg")
    return Msg.from_dict(kept) if isinstance(kept, Mapping) else str(record[name])
