"""Repository hygiene, as `make lint` runs it: what is tracked, YAML that says a key twice, module sizes.

Fails (exit 1, one line per problem) when git tracks
- a generated output: anything under a results folder, reports/ (but its README), .snakemake/,
  or a model, ONNX or checkpoint file;
- a file over 1 MB;
- a YAML file with a key given twice in one mapping (YAML keeps the last silently);
- a Python module of the package over 400 lines (the modules in SIZE_RATCHET may not grow past
  their recorded size until they are split).

    python workflow/scripts/check_repository.py
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 1_000_000
MAX_MODULE_LINES = 400
GENERATED = re.compile(
    r"^(results[^/]*/|\.snakemake/|reports/(?!README\.md$))|\.(safetensors|onnx|pt|pth|bin|ckpt)$"
)
# modules over the limit that predate it, with the size they may not exceed; split, then remove
SIZE_RATCHET: dict[str, int] = {}


class DuplicateKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping that gives a key twice."""


def _mapping(loader: DuplicateKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


DuplicateKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def problems(paths: list[str]) -> list[str]:
    found: list[str] = []
    for path in paths:
        full = REPO / path
        if GENERATED.search(path):
            found.append(
                f"{path}: a generated output is tracked (results, reports, models are made by the DAG)"
            )
        if full.stat().st_size > MAX_BYTES:
            found.append(
                f"{path}: {full.stat().st_size:,} bytes, over the {MAX_BYTES:,}-byte limit for a tracked file"
            )
        if path.endswith((".yaml", ".yml")):
            try:
                list(yaml.load_all(full.read_text(encoding="utf-8"), Loader=DuplicateKeyLoader))
            except yaml.MarkedYAMLError as exc:
                found.append(f"{path}: {exc.problem}")
            except yaml.YAMLError as exc:
                found.append(f"{path}: {exc}")
        if path.startswith("src/whylab/") and path.endswith(".py"):
            lines = full.read_text(encoding="utf-8").count("\n")
            limit = SIZE_RATCHET.get(path, MAX_MODULE_LINES)
            if lines > limit:
                found.append(f"{path}: {lines} lines, over the {limit}-line limit for a module; split it")
    return found


def main() -> int:
    found = problems(tracked())
    for line in found:
        print(f"check_repository: {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
