"""The Korean texts drawn in C01–C11's figures and shown in their tables
(``whylab/messages/ko/drawn/CNN.yaml``): a flat mapping from the English text exactly as drawn,
every number written ``{}``, to its Korean, with the same ``{}`` in the same order.

Besides the files' shape, the figures' own label literals (axis labels, titles, legend titles and
entries, the names a figure draws from its module's name tables) must each have an entry, so a
new English label cannot reach the Korean page unnoticed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from whylab.messages import glossary

CLAIMS = [f"C{n:02d}" for n in range(1, 12)]
DRAWN = Path(str(files("whylab"))) / "messages" / "ko" / "drawn"
CONCEPTS = Path(str(files("whylab"))) / "concepts"

# A number as a key writes it: digits with an optional decimal part, exponent and percent sign, and
# a sign only where it is not a hyphen inside a name; digits glued to a letter (T5, L2, GPT2Config)
# are part of a name, not a number.
NUMBER = re.compile(r"(?<![A-Za-z_\d.])(?:(?<![A-Za-z\d])[-+−])?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
PLACEHOLDER = re.compile(r"\{\}")
# the call arguments a figure draws as text, and the keyword arguments that are drawn texts
LABEL_CALLS = {"set_xlabel", "set_ylabel", "set_title", "set_axis_labels", "suptitle", "text", "annotate"}
LABEL_KEYWORDS = {"label", "title", "xlabel", "ylabel"}
# module-level name tables whose values a figure draws (legend entries, tick labels)
NAME_TABLE = re.compile(r"^(?:[A-Z_]*NAMES|TASK_MEASURES|INTERVENTIONS|labels|names)$")


def number_key(text: str) -> str:
    """``text`` as a key: every number written ``{}``."""
    return NUMBER.sub("{}", text)


def needs_translation(text: str) -> bool:
    """A text with a Latin word of two or more letters outside ``$...$`` math."""
    return bool(LATIN_WORD.search(re.sub(r"\$[^$]*\$", "", text)))


def _duplicate_keys(text: str) -> list[str]:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return []
    keys = [k.value for k, _ in node.value]
    return sorted({k for k in keys if keys.count(k) > 1})


def _load(claim: str) -> dict[str, str]:
    path = DRAWN / f"{claim}.yaml"
    text = path.read_text("utf-8")
    assert not _duplicate_keys(text), f"{path.name}: keys written twice: {_duplicate_keys(text)}"
    data = yaml.safe_load(text) or {}
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    for key, value in data.items():
        assert isinstance(key, str) and isinstance(value, str), f"{path.name}: {key!r}: {value!r}"
    return data


@pytest.fixture(scope="module")
def drawn() -> dict[str, dict[str, str]]:
    return {claim: _load(claim) for claim in CLAIMS}


def test_there_is_one_file_per_claim_and_no_other() -> None:
    every_claim = [f"C{n:02d}" for n in range(1, 22)]
    assert sorted(p.stem for p in DRAWN.glob("*.yaml")) == [*every_claim, "common"]


@pytest.mark.parametrize("claim", CLAIMS)
def test_each_file_is_a_flat_text_to_text_mapping(claim: str) -> None:
    assert _load(claim), f"{claim}.yaml is empty"


@pytest.mark.parametrize("claim", CLAIMS)
def test_keys_write_numbers_as_placeholders_and_values_keep_them(claim: str) -> None:
    for key, value in _load(claim).items():
        assert number_key(key) == key, f"{claim}: key {key!r} has a number not written {{}}"
        assert re.sub(r"\{\}", "", key).count("{") == 0, f"{claim}: key {key!r} has a named field"
        assert len(PLACEHOLDER.findall(key)) == len(PLACEHOLDER.findall(value)), (claim, key, value)
        assert re.sub(r"\{\}", "", value).count("{") == 0, f"{claim}: {key!r}: {value!r} has a named field"


@pytest.mark.parametrize("claim", CLAIMS)
def test_each_value_is_korean_or_the_identifier_itself(claim: str) -> None:
    for key, value in _load(claim).items():
        assert HANGUL.search(value) or value == key, f"{claim}: {key!r} -> {value!r}"
        assert ";" not in value or ";" in key, f"{claim}: {key!r}: a Korean text chained with ';'"


def test_no_text_is_translated_twice(drawn: dict[str, dict[str, str]]) -> None:
    where: dict[str, str] = {}
    for claim, texts in drawn.items():
        for key in texts:
            assert key not in where, f"{key!r} is in both {where.get(key)}.yaml and {claim}.yaml"
            where[key] = claim


def test_values_use_the_glossary_terms(drawn: dict[str, dict[str, str]]) -> None:
    hits = [
        (claim, key, hit.group())
        for claim, texts in drawn.items()
        for key, value in texts.items()
        for term in glossary("ko")
        for pattern in term["avoid"]
        for hit in re.finditer(pattern, value)
    ]
    assert not hits, hits


def _strings(node: ast.AST) -> Iterator[str]:
    """The plain string literals in ``node`` (not f-strings: their parts are data)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            yield from _strings(elt)


def drawn_literals(source: str) -> set[str]:
    """The texts a figures module draws from its own literals: label and title arguments, the
    ``label`` of a colour bar, and the values of its name tables."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in LABEL_CALLS:
                for arg in node.args:
                    out.update(_strings(arg))
            for kw in node.keywords:
                if kw.arg in LABEL_KEYWORDS:
                    out.update(_strings(kw.value))
                if kw.arg == "cbar_kws" and isinstance(kw.value, ast.Dict):
                    out.update(s for v in kw.value.values if v is not None for s in _strings(v))
            if name == "attention_rows_figure" and len(node.args) >= 6:
                out.update(_strings(node.args[5]))  # its x-axis label
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and NAME_TABLE.match(t.id) for t in targets)
            if named and isinstance(node.value, ast.Dict):
                out.update(s for v in node.value.values for s in _strings(v))
    return {s for s in out if needs_translation(s)}


def _figure_modules() -> list[Path]:
    claims = sorted(p / "figures.py" for p in CONCEPTS.iterdir() if re.match(r"c(0\d|1[01])_", p.name))
    return [*claims, CONCEPTS / "_bench_figures.py"]


def test_every_label_a_figure_draws_from_its_source_has_a_korean_text(
    drawn: dict[str, dict[str, str]],
) -> None:
    keys = {key for texts in drawn.values() for key in texts} | set(_load("common"))
    missing = {
        module.parent.name if module.name == "figures.py" else module.name: sorted(
            number_key(s) for s in drawn_literals(module.read_text("utf-8")) if number_key(s) not in keys
        )
        for module in _figure_modules()
    }
    assert len(missing) == len(CLAIMS) + 1
    assert not any(missing.values()), {k: v for k, v in missing.items() if v}


def test_the_source_check_finds_labels_and_name_tables() -> None:
    source = (
        'NAMES = {"a": "learned thing", "b": "x"}\n'
        'ax.set_xlabel("step 3 (updates)")\n'
        'sns.heatmap(w, cbar_kws={"label": "weight (p)"})\n'
        'ax.plot(x, y, label=f"{k} runs")\n'
    )
    assert drawn_literals(source) == {"learned thing", "step 3 (updates)", "weight (p)"}
    assert number_key("step 3 (updates)") == "step {} (updates)"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("d_k = 64", "d_k = {}"),
        ("seed 3", "seed {}"),
        ("12.5%", "{}"),
        ("Δ = -0.25 at step 1e-3", "Δ = {} at step {}"),
        ("GPT-2 small (GPT2Config defaults)", "GPT-{} small (GPT2Config defaults)"),
        ("T5-small", "T5-small"),
        ("gelu, 4x", "gelu, {}x"),
        ("accuracy (fraction, 0–1)", "accuracy (fraction, {}–{})"),
    ],
)
def test_numbers_become_placeholders_but_names_keep_their_digits(text: str, key: str) -> None:
    assert number_key(text) == key
