"""Config checking: the JSON Schema in workflow/schemas plus the checks a schema cannot express.

``check_config`` returns the config with schema defaults filled in, or raises
:class:`~whylab.errors.InputError` with one line that names the key and what
is wrong. The Snakefile calls it before the DAG is built, so a bad value stops
the run before any job starts.
"""

from __future__ import annotations

import copy
import glob
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from whylab.errors import InputError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
SCHEMA_FILE = SCHEMA_DIR / "config.schema.yaml"


def _with_defaults(cls: type) -> type:
    """A validator class that fills in each property's ``default`` while validating."""
    validate_properties = cls.VALIDATORS["properties"]

    def properties(
        validator: Any, props: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[ValidationError]:
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, props, instance, schema)

    return validators.extend(cls, {"properties": properties})


_DefaultingValidator = _with_defaults(Draft202012Validator)


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _registry(schema_dir: Path) -> Registry:
    """Every section schema by file name, for the ``$ref``s of the top schema.

    Each file declares ``$schema`` (Snakemake's ``validate()`` needs it), but we drop it
    here: jsonschema switches to the plain validator class of a ``$ref``'d schema's
    dialect, which would lose our default filling below the top level.
    """
    resources = []
    for p in sorted(schema_dir.glob("*.yaml")):
        contents = _load_yaml(p)
        contents.pop("$schema", None)
        resources.append((p.name, Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


def key_path(error: ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(error: ValidationError) -> str:
    """One line: the dotted key and what is wrong with it."""
    where = key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    return f"{where}: {error.message}"


def check_config(
    config: Mapping[str, Any], base_dir: Path | str = ".", schema_file: Path = SCHEMA_FILE
) -> dict[str, Any]:
    """Validate ``config`` against the schema, fill defaults, and check paths exist."""
    data = copy.deepcopy(dict(config))
    schema = _load_yaml(schema_file)
    validator = _DefaultingValidator(schema, registry=_registry(schema_file.parent))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # the deepest, most specific error is the most useful single line
        best = max(errors, key=lambda e: len(e.absolute_path))
        raise InputError(f"config error: {describe(best)}")
    _check_semantics(data, Path(base_dir))
    return data


def _check_semantics(config: dict[str, Any], base_dir: Path) -> None:
    pretrained = config.get("lm", {}).get("pretrained")
    if pretrained:  # a local Hugging Face folder C12-C16 use instead of the trained LM
        from whylab.lm.pretrained import check_folder

        config["lm"]["pretrained"] = str(check_folder(pretrained, base_dir))
    for i, source in enumerate(config["corpus"]["sources"]):
        where = f"corpus.sources[{i}]"
        kinds = [k for k in ("builtin", "path", "dataset") if k in source]
        if len(kinds) != 1:
            raise InputError(
                f"config error: {where}: give exactly one of builtin, path, dataset "
                f"(got {', '.join(kinds) or 'none'})"
            )
        if "path" in source:
            pattern = source["path"]
            full = pattern if Path(pattern).is_absolute() else str(base_dir / pattern)
            if glob.has_magic(pattern):
                if not glob.glob(full, recursive=True):
                    raise InputError(f"config error: {where}.path: the glob {pattern!r} matches no file")
            elif not Path(full).exists():
                raise InputError(f"config error: {where}.path: {pattern!r} does not exist")


def load_config(path: Path | str, base_dir: Path | str | None = None) -> dict[str, Any]:
    """Read a YAML config file and check it (for use outside Snakemake, e.g. tests)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {str(path)!r} does not exist")
    data = _load_yaml(path) or {}
    if not isinstance(data, dict):
        raise InputError(f"config file {str(path)!r} must hold a mapping at the top level")
    return check_config(data, base_dir if base_dir is not None else Path.cwd())
