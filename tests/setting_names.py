"""The names of the settings, as a reader must never meet them in the report's sentences: every
nested key of config/config.yaml (``min_loss_gain``, ``memory.C18.notes_models``), every key the
claims' ``decision_settings`` name, and every setting config/README.md documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# names that are also the papers' notation, written as the papers write them: d_model is Vaswani
# et al.'s symbol for the embedding dimension (÷√d_model, "a multiple of d_model", GPT-3's d_model)
NOTATION = frozenset({"d_model"})


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Each key of ``node`` and its dotted path, in mappings nested in mappings and lists."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield str(key)
            yield path
            yield from _keys(value, path)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item, prefix)


def _readme_names() -> set[str]:
    readme = (REPO / "config" / "README.md").read_text("utf-8")
    paths = set(re.findall(r"^\| `([A-Za-z_][\w.]*)`", readme, re.M))
    return paths | {part for path in paths for part in path.split(".")}


def _decision_settings() -> set[str]:
    names: set[str] = set()
    for spec in (REPO / "src" / "whylab" / "concepts").glob("*/claim.yaml"):
        names.update((yaml.safe_load(spec.read_text("utf-8")) or {}).get("decision_settings") or [])
    return names


def setting_names() -> frozenset[str]:
    """The names that read as a key: with an underscore or a dot (``steps`` and ``model`` are words)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text("utf-8"))
    names = set(_keys(config)) | _decision_settings() | _readme_names()
    return frozenset(n for n in names if ("_" in n or "." in n) and n not in NOTATION)


SETTINGS = setting_names()
# one name as a word of its own: not inside a longer name, nor the start of a longer dotted path
_PATTERNS = {n: re.compile(rf"(?<![\w.]){re.escape(n)}(?!\w|\.\w)") for n in SETTINGS}


def setting_names_in(prose: str) -> list[str]:
    """The setting names ``prose`` contains as words of their own."""
    return sorted(n for n, pattern in _PATTERNS.items() if n in prose and pattern.search(prose))
