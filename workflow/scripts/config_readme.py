"""config/README.md, generated from the config schemas (workflow/schemas/*.schema.yaml).

    python workflow/scripts/config_readme.py            # rewrite config/README.md
    python workflow/scripts/config_readme.py --check    # exit 1 if it is out of date (a test runs this)

Every key, its type, default and description come from the schemas, the same files that
validate a run's config, so the document cannot drift from what the workflow accepts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "workflow" / "schemas"
TOP = "config.schema.yaml"
OUT = REPO / "config" / "README.md"
HEADER = """\
# Configuration keys

Generated from `workflow/schemas/*.schema.yaml` by `python workflow/scripts/config_readme.py`
(a test checks that it is up to date): edit the schemas, not this file.

`config/config.yaml` is the default (CPU, minutes); a file passed with `--configfile` is laid
over it and needs only the keys it changes (`config/gpu.yaml`, `config/test.yaml`). Every key has
a default, unknown keys are errors, and a bad value stops the run before any job starts with one
line naming the key.
"""


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SCHEMAS / name).read_text(encoding="utf-8"))
    return data


def _resolve(node: dict[str, Any], doc: str) -> tuple[dict[str, Any], str]:
    """Follow a $ref (another file, or #/$defs/... in one), keeping the node's own keys over it."""
    ref = node.get("$ref")
    if not ref:
        return node, doc
    file, _, pointer = ref.partition("#")
    target_doc = file or doc
    target: Any = _load(target_doc)
    for part in filter(None, pointer.split("/")):
        target = target[part]
    resolved, where = _resolve(target, target_doc)
    return {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}, where


def _type(node: dict[str, Any], doc: str) -> str:
    node, doc = _resolve(node, doc)
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(_type(option, doc) for option in node[key])
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"list of {_type(node['items'], doc)}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'], doc)}"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(node: dict[str, Any], doc: str, prefix: str) -> list[tuple[str, str, str, str]]:
    node, doc = _resolve(node, doc)
    rows = []
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        resolved, where = _resolve(sub, doc)
        default = json.dumps(resolved["default"], ensure_ascii=False) if "default" in resolved else ""
        nested = resolved.get("type") == "object" and "properties" in resolved
        rows.append(
            (
                key,
                "section" if nested else _type(sub, doc),
                default if not nested else "",
                resolved.get("description", ""),
            )
        )
        if nested:
            rows += _rows(resolved, where, key)
    return rows


def render() -> str:
    top = _load(TOP)
    parts = [HEADER]
    top_rows = []
    sections = []
    for name, sub in top["properties"].items():
        resolved, where = _resolve(sub, TOP)
        if resolved.get("type") == "object" and "properties" in resolved:
            sections.append((name, resolved, where))
        else:
            top_rows.append(name)
    parts.append("## Run-wide keys\n")
    parts.append(_table([r for r in _rows(top, TOP, "") if r[0] in top_rows]))
    for name, resolved, where in sections:
        parts.append(f"## `{name}`\n")
        if resolved.get("description"):
            parts.append(_cell(resolved["description"]) + "\n")
        parts.append(_table(_rows(resolved, where, name)))
    return "\n".join(parts)


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{k}` | {_cell(t)} | {f'`{_cell(d)}`' if d else ''} | {_cell(desc)} |" for k, t, d, desc in rows
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if config/README.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(
                f"{OUT.relative_to(REPO)} is out of date: run python workflow/scripts/config_readme.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
