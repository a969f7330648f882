"""Which package source files a DAG step runs: its module and every whylab module it imports.

The Snakefile declares them as each rule's ``code`` input, so editing a file re-runs exactly the
steps that run it. The imports are read from each file's import statements (those inside
functions too) with a regular expression over the source with its triple-quoted strings removed:
the same modules as walking the file's syntax tree (``tests/test_code_inputs.py`` checks it on
every module of the package), in about a twentieth of the time, which every start pays.
Standard library only: the DAG imports it while it is parsed.
"""

from __future__ import annotations

import re
from pathlib import Path

_STRINGS = re.compile(r'("""|\'\'\')[\s\S]*?\1')
_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(whylab[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|import[ \t]+(whylab[^\n]*))",
    re.M,
)
_COMMENT = re.compile(r"#[^\n]*")


class CodeInputs:
    """Source files of modules under ``src`` (the folder holding the ``whylab`` package), cached."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self._paths: dict[str, Path | None] = {}
        self._imports: dict[Path, set[str]] = {}
        self._closures: dict[str, list[Path]] = {}

    def path(self, module: str) -> Path | None:
        """The file of ``module`` (``x.py`` or ``x/__init__.py``), or None outside the package."""
        if module not in self._paths:
            base = self.src.joinpath(*module.split("."))
            candidates = (base.with_suffix(".py"), base / "__init__.py")
            self._paths[module] = next((p for p in candidates if p.is_file()), None)
        return self._paths[module]

    def imports(self, path: Path) -> set[str]:
        """The whylab modules (and imported names, which may be submodules) that ``path`` imports."""
        if path not in self._imports:
            self._imports[path] = imports_of(path.read_text(encoding="utf-8"))
        return self._imports[path]

    def closure(self, module: str) -> list[Path]:
        """The files of ``module``, its parent packages and everything they import, directly or not."""
        if module not in self._closures:
            seen: dict[str, Path] = {}
            todo = [module]
            while todo:
                name = todo.pop()
                path = self.path(name)
                if path is None or name in seen:
                    continue
                seen[name] = path
                parts = name.split(".")
                todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parents run first
                todo += sorted(self.imports(path))
            self._closures[module] = sorted(seen.values())
        return list(self._closures[module])


def imports_of(source: str) -> set[str]:
    """The whylab names a module's source imports: ``from whylab.x import y`` gives ``whylab.x``
    and ``whylab.x.y`` (y may be a submodule), ``import whylab.x`` gives ``whylab.x``."""
    found: set[str] = set()
    for module, names, plain in _IMPORT.findall(_STRINGS.sub("", source)):
        if module:
            found.add(module)
            for name in _COMMENT.sub("", names).strip("()").split(","):
                name = name.split(" as ")[0].strip()
                if name and name != "*":
                    found.add(f"{module}.{name}")
        else:
            for name in plain.split("#")[0].split(","):
                name = name.split(" as ")[0].strip()
                if name.startswith("whylab"):
                    found.add(name)
    return found
