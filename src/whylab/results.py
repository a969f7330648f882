"""The result record every concept writes, and the run environment it carries.

A concept returns :class:`Evidence` (what it measured); the runner in
:mod:`whylab.concepts` adds the claim, the computed verdict, config, seeds,
environment and wall time, validates the record against
``schemas/result.schema.json`` and writes it atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

from whylab.environment import (  # noqa: F401 -- re-exported: results carry the environment
    CPU_FEATURES,
    TRACKED_PACKAGES,
    cpu_features,
    device_description,
    environment,
    gpu_name,
    package_versions,
)
from whylab.files import jsonable, read_json
from whylab.messages import Msg, to_record

SCHEMA_VERSION = 1


def with_messages(**texts: Any) -> dict[str, Any]:
    """``{"messages": {name: key and parameters}}`` for the texts that are catalogue messages
    (the report renders them in each language), ``{}`` when none is; a list counts when any item
    is a message."""
    kept = {
        name: to_record(value)
        for name, value in texts.items()
        if isinstance(value, Msg)
        or (isinstance(value, list | tuple) and any(isinstance(v, Msg) for v in value))
    }
    return {"messages": kept} if kept else {}


def _cells_record(rows: list[list[Any]]) -> list[Any] | None:
    """The rows with each catalogue-message cell kept as its key and parameters (so the report
    shows it in each language) and every other cell as JSON; None when no cell is a message."""
    if not any(isinstance(cell, Msg) for row in rows for cell in row):
        return None
    return [[cell.to_dict() if isinstance(cell, Msg) else jsonable(cell) for cell in row] for row in rows]


@dataclass
class Table:
    name: str
    caption: str
    columns: list[str]
    rows: list[list[Any]]

    @classmethod
    def from_records(cls, name: str, caption: str, records: list[dict[str, Any]]) -> Table:
        columns = list(records[0]) if records else []
        return cls(name, caption, columns, [[r.get(c) for c in columns] for r in records])

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "caption": str(self.caption),
            "columns": self.columns,
            "rows": jsonable(self.rows),
        }
        messages = with_messages(caption=self.caption).get("messages", {})
        cells = _cells_record(self.rows)
        if cells is not None:
            messages["rows"] = cells
        return out | ({"messages": messages} if messages else {})


@dataclass
class FigureRef:
    path: str  # relative to the result file's folder
    title: str
    caption: str
    # language -> {"path": the figure drawn in it, "texts": the texts drawn, "missing": the
    # English texts drawn as they are for want of a translation}
    translations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "title": str(self.title),
            "caption": str(self.caption),
            **with_messages(title=self.title, caption=self.caption),
            **({"translations": jsonable(self.translations)} if self.translations else {}),
        }


@dataclass
class LiteratureCheck:
    source: str
    finding: str
    agrees: bool | None  # None: this run cannot say
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "finding": str(self.finding),
            "agrees": self.agrees,
            "note": str(self.note),
            **with_messages(finding=self.finding, note=self.note),
        }


@dataclass
class Evidence:
    """What one concept experiment measured. The verdict is computed from ``metrics``."""

    method: str
    metrics: dict[str, Any]
    seeds: list[int] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    literature: list[LiteratureCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def result_schema() -> dict[str, Any]:
    return json.loads(files("whylab").joinpath("schemas/result.schema.json").read_text("utf-8"))


def validate_result(record: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if ``record`` is not a valid result."""
    jsonschema.Draft202012Validator(result_schema()).validate(record)


def load_result(path: str | Path) -> dict[str, Any]:
    record = read_json(path)
    validate_result(record)
    return record
