"""The corpus: gather text, check it, NFC-normalise it, split it by seed, count it.

Sources (config ``corpus.sources``), each exactly one of:

- ``builtin``: text that ships with Python or an installed package, so the
  default run needs no download — ``python-docs`` (the topic help of
  ``pydoc_data``), ``python-docstrings`` (docstrings of the standard library,
  read with ``ast``, nothing imported), ``konlpy-kolaw`` (the Constitution of
  Korea) and ``konlpy-kobill`` (ten Korean bills), both read as plain files
  from the konlpy package without starting its Java taggers;
- ``path``: a UTF-8 text file, a folder (every file below it) or a glob;
- ``dataset``: a Hugging Face ``datasets`` name or a local dataset path
  (a ``save_to_disk`` folder, or a folder/file that ``load_dataset`` reads).

A source may cap its text with ``max_chars``. By default (``pick: first``) the cap keeps the
source's first paragraphs; ``pick: spread`` offers them in an order shuffled by ``split_seed``, so
a capped source samples all of its documents (a second text cut to the default's size, say).

Output: one paragraph per line in ``<root>/<lang>/{train,valid}.txt`` and
``<root>/stats.json``. Every input is read and checked before anything is
written, and everything is written atomically: bad input leaves no output.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import math
import random
import re
import sysconfig
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whylab.errors import InputError
from whylab.files import atomic_path, write_json

LANGUAGES = ("en", "ko")
_WS = re.compile(r"\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Paragraph:
    text: str
    lang: str
    source: str


# --- language -----------------------------------------------------------------------------


def is_hangul(ch: str) -> bool:
    code = ord(ch)
    return 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F


def hangul_share(text: str) -> float:
    """Share of Hangul among the letters of ``text`` (0 when it has no letters)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(is_hangul(ch) for ch in letters) / len(letters)


def detect_language(text: str) -> str:
    return "ko" if hangul_share(text) >= 0.3 else "en"


# --- reading ------------------------------------------------------------------------------


def read_text_file(path: Path) -> str:
    """Read one UTF-8 text file, or raise InputError naming the file and the problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"corpus: cannot read {path}: {exc.strerror}") from None
    if b"\x00" in data[:8192]:
        raise InputError(f"corpus: {path} looks like a binary file (it contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"corpus: {path} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text.strip():
        raise InputError(f"corpus: {path} is empty")
    return text


def expand_path(pattern: str, base_dir: Path) -> list[Path]:
    """A file, a folder (all files below it, sorted) or a glob, as a sorted list of files."""
    full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
    if glob.has_magic(pattern):
        files = sorted(Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"corpus: the glob {pattern!r} matches no file")
        return files
    path = Path(full)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"corpus: the folder {pattern!r} holds no file")
        return files
    if not path.exists():
        raise InputError(f"corpus: {pattern!r} does not exist")
    return [path]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"corpus: the builtin source needs the package {name!r}, which is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _python_docs() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [(f"pydoc_data.topics:{key}", topics[key]) for key in sorted(topics)]


def _python_docstrings() -> list[tuple[str, str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out: list[tuple[str, str]] = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    out.append((f"stdlib:{path.name}", doc))
    return out


def _konlpy_files(subdir: str) -> list[tuple[str, str]]:
    folder = _package_dir("konlpy") / "data" / "corpus" / subdir
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise InputError(f"corpus: konlpy's {subdir} texts were not found under {folder}")
    return [(f"konlpy:{subdir}/{p.name}", read_text_file(p)) for p in files]


BUILTINS = {
    "python-docs": _python_docs,
    "python-docstrings": _python_docstrings,
    "konlpy-kolaw": lambda: _konlpy_files("kolaw"),
    "konlpy-kobill": lambda: _konlpy_files("kobill"),
}


def _dataset_texts(source: Mapping[str, Any], base_dir: Path) -> list[tuple[str, str]]:
    import datasets

    name = str(source["dataset"])
    field = str(source.get("text_field", "text"))
    split = str(source.get("split", "train"))
    local = Path(name) if Path(name).is_absolute() else base_dir / name
    try:
        if (local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(local))
            ds = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            target = str(local) if local.exists() else name
            ds = datasets.load_dataset(target, source.get("dataset_config"), split=split)
    except (FileNotFoundError, ValueError, KeyError, ConnectionError) as exc:
        raise InputError(f"corpus: cannot load dataset {name!r} (split {split!r}): {exc}") from None
    if field not in ds.column_names:
        raise InputError(
            f"corpus: dataset {name!r} has no text field {field!r} (columns: {', '.join(ds.column_names)})"
        )
    texts = [t for t in ds[field] if isinstance(t, str)]
    if not any(t.strip() for t in texts):
        raise InputError(f"corpus: dataset {name!r} field {field!r} holds no text")
    return [(f"dataset:{name}[{i}]", t) for i, t in enumerate(texts)]


def source_texts(source: Mapping[str, Any], base_dir: Path) -> list[tuple[str, str]]:
    """(origin, raw text) pairs of one configured source."""
    if "builtin" in source:
        return BUILTINS[source["builtin"]]()
    if "path" in source:
        return [(str(p), read_text_file(p)) for p in expand_path(str(source["path"]), base_dir)]
    if "dataset" in source:
        return _dataset_texts(source, base_dir)
    raise InputError("corpus: a source needs one of builtin, path, dataset")


# --- cleaning and splitting ---------------------------------------------------------------


def paragraphs(text: str, min_chars: int) -> Iterable[str]:
    """NFC-normalised paragraphs (split at blank lines), whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    for block in _PARAGRAPH_BREAK.split(text):
        para = _WS.sub(" ", block).strip()
        if len(para) >= min_chars:
            yield para


def _source_paragraphs(source: Mapping[str, Any], base_dir: Path, min_chars: int) -> list[tuple[str, str]]:
    """(language, paragraph) pairs of one source, in the source's order."""
    lang = source.get("lang", "auto")
    return [
        (detect_language(para) if lang == "auto" else lang, para)
        for _origin, raw in source_texts(source, base_dir)
        for para in paragraphs(raw, min_chars)
    ]


def pick_order(n: int, pick: str, seed: int) -> list[int]:
    """The order in which a source's ``n`` paragraphs are offered to its ``max_chars`` cap:
    ``first`` takes them from the start (a capped source is its first documents), ``spread``
    in an order shuffled by ``seed`` (a capped source samples all of its documents). The kept
    paragraphs stay in the source's order either way."""
    order = list(range(n))
    if pick == "spread":
        random.Random(seed).shuffle(order)
    elif pick != "first":
        raise InputError(f"corpus: a source's pick must be first or spread, not {pick!r}")
    return order


def gather(settings: Mapping[str, Any], base_dir: Path) -> tuple[list[Paragraph], dict[str, Any]]:
    """Read every source and return the kept paragraphs (deduplicated) with drop counts."""
    languages = list(settings.get("languages", LANGUAGES))
    min_chars = int(settings.get("min_paragraph_chars", 20))
    cap = settings.get("max_chars_per_language")
    seed = int(settings.get("split_seed", 0))
    seen: set[str] = set()
    kept: list[Paragraph] = []
    chars: Counter[str] = Counter()
    dropped = Counter[str]()
    for i, source in enumerate(settings["sources"]):
        label = source.get("builtin") or source.get("path") or source.get("dataset") or f"source {i}"
        source_cap = source.get("max_chars")
        source_chars = 0
        found = _source_paragraphs(source, base_dir, min_chars)
        taken: list[int] = []
        for j in pick_order(len(found), str(source.get("pick", "first")), seed):
            lang, para = found[j]
            if lang not in languages:
                dropped["other_language"] += 1
                continue
            if para in seen:
                dropped["duplicate"] += 1
                continue
            if source_cap is not None and source_chars + len(para) > source_cap:
                dropped["source_cap"] += 1
                continue
            if cap is not None and chars[lang] + len(para) > cap:
                dropped["language_cap"] += 1
                continue
            seen.add(para)
            taken.append(j)
            chars[lang] += len(para)
            source_chars += len(para)
        if not taken:
            raise InputError(
                f"corpus: source {label!r} gave no usable text "
                f"(paragraphs of at least {min_chars} characters in {', '.join(languages)})"
            )
        kept.extend(Paragraph(found[j][1], found[j][0], str(label)) for j in sorted(taken))
    for lang in languages:
        if chars[lang] == 0:
            raise InputError(
                f"corpus: no text for language {lang!r}; add a source for it "
                f"or remove it from corpus.languages"
            )
    return kept, dict(dropped)


def split(paras: list[Paragraph], valid_fraction: float, seed: int) -> dict[str, list[Paragraph]]:
    """Deterministic split by seed; each split keeps the corpus order (documents stay readable)."""
    n = len(paras)
    n_valid = min(n - 1, max(1, math.ceil(valid_fraction * n)))
    if n < 2:
        raise InputError("corpus: a language needs at least two paragraphs to split into train and valid")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    valid_idx = set(order[:n_valid])
    return {
        "train": [p for i, p in enumerate(paras) if i not in valid_idx],
        "valid": [p for i, p in enumerate(paras) if i in valid_idx],
    }


def language_stats(parts: Mapping[str, list[Paragraph]]) -> dict[str, Any]:
    everything = [p for ps in parts.values() for p in ps]
    text = "\n".join(p.text for p in everything)
    return {
        "paragraphs": {name: len(ps) for name, ps in parts.items()},
        "chars": {name: sum(len(p.text) for p in ps) for name, ps in parts.items()},
        "words": {name: sum(len(p.text.split()) for p in ps) for name, ps in parts.items()},
        "distinct_chars": len(set(text) - {"\n"}),
        "hangul_share": round(hangul_share(text), 4),
        "sources": dict(Counter(p.source for p in everything)),
    }


def build(settings: Mapping[str, Any], root: Path, base_dir: Path) -> dict[str, Any]:
    """Gather, split and write the corpus under ``root``; return the stats."""
    paras, dropped = gather(settings, base_dir)
    valid_fraction = float(settings.get("valid_fraction", 0.1))
    seed = int(settings.get("split_seed", 0))
    stats: dict[str, Any] = {
        "languages": {},
        "dropped": dropped,
        "valid_fraction": valid_fraction,
        "split_seed": seed,
    }
    outputs: dict[Path, str] = {}
    for lang in settings.get("languages", LANGUAGES):
        parts = split([p for p in paras if p.lang == lang], valid_fraction, seed)
        stats["languages"][lang] = language_stats(parts)
        for name, ps in parts.items():
            outputs[root / lang / f"{name}.txt"] = "".join(p.text + "\n" for p in ps)
    for path, text in outputs.items():  # all checks passed: now write
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    write_json(root / "stats.json", stats)
    return stats


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    stats_path = outputs["stats"]
    build(settings, stats_path.parent, Path.cwd())
