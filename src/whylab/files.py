"""Atomic file and directory writes: an output is either whole or absent."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# libyaml's loader where PyYAML was built with it (about 10x faster: the DAG reads YAML at every
# start, and a no-op re-run should take under 2 s); the same documents, the same marked errors
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it into place on success.

    Works for files and directories alike. On any exception the temporary
    path is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples into plain JSON values (NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy array or scalar, torch tensor
        return jsonable(value.tolist())
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def parse_yaml(text: str) -> Any:
    """A YAML document, read safely (no Python objects), with the fast loader."""
    return yaml.load(text, Loader=YAML_LOADER)


def finite(value: float | None) -> float | None:
    """A measured number, or None where it is missing or not finite (a run that blew up)."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def finite_or_text(value: float) -> float | str:
    """A float for JSON: a non-finite one as its text ("nan", "inf"), read back with float()."""
    return value if math.isfinite(value) else str(value)
