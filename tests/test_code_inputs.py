"""whylab.code_inputs reads the same imports as the syntax tree does, for every module of the package."""

from __future__ import annotations

import ast
from pathlib import Path

from whylab.code_inputs import CodeInputs, imports_of

SRC = Path(__file__).resolve().parents[1] / "src"


def tree_imports(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "whylab")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "whylab"
        ):
            found.add(str(node.module))
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_every_module_gives_the_syntax_trees_imports() -> None:
    files = sorted((SRC / "whylab").rglob("*.py"))
    assert len(files) > 100
    differ = {
        str(f.relative_to(SRC)): (tree, found)
        for f in files
        if (tree := tree_imports(f.read_text(encoding="utf-8")))
        != (found := imports_of(f.read_text(encoding="utf-8")))
    }
    assert not differ, differ


def test_strings_and_comments_are_not_imports() -> None:
    source = '''"""Example:

    from whylab import plotting
"""
from whylab.files import (  # the atomic writes
    write_json,  # one
    read_json as read,
)
import whylab.errors, whylab.runtime as rt

def f():
    from whylab.verdict import Label
'''
    assert imports_of(source) == {
        "whylab.files",
        "whylab.files.write_json",
        "whylab.files.read_json",
        "whylab.errors",
        "whylab.runtime",
        "whylab.verdict",
        "whylab.verdict.Label",
    }


def test_a_measuring_module_reaches_its_imports_and_parents_but_not_the_drawing_code() -> None:
    closure = {
        p.relative_to(SRC).as_posix()
        for p in CodeInputs(SRC).closure("whylab.concepts.c07_layernorm_vs_batchnorm.experiment")
    }
    assert "whylab/concepts/__init__.py" in closure and "whylab/bench/lab.py" in closure
    assert not {"whylab/plotting.py", "whylab/messages/__init__.py", "whylab/verdict.py"} & closure


def test_no_claims_measure_job_has_deciding_code_among_its_inputs() -> None:
    """What the DAG declares as a measure job's code (imports inside functions count): editing a
    verdict, a figure, a text or the result schema must re-run no measurement."""
    from whylab.concepts import REGISTRY

    deciding = {
        "whylab/verdict.py",
        "whylab/parts.py",
        "whylab/results.py",
        "whylab/plotting.py",
        "whylab/messages/__init__.py",
    }
    code = CodeInputs(SRC)
    found = {
        claim: sorted(
            deciding & {p.relative_to(SRC).as_posix() for p in code.closure(f"{module}.experiment")}
        )
        for claim, module in REGISTRY.items()
    }
    assert not {claim: files for claim, files in found.items() if files}, found
