"""Config checking: the JSON Schema in workflow/schemas plus the checks a schema cannot express.

``check_config`` returns the config with schema defaults filled in, or raises
:class:`~whylab.errors.InputError` with one line that names the key and what
is wrong. The Snakefile calls it before the DAG is built, so a bad value stops
the run before any job starts.
"""

from __future__ import annotations

import copy
import glob
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from whylab.errors import InputError
from whylab.files import parse_yaml

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"
SCHEMA_FILE = SCHEMA_DIR / "config.schema.yaml"


def _with_defaults(cls: type[Draft202012Validator]) -> type[Draft202012Validator]:
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
    return parse_yaml(path.read_text(encoding="utf-8"))


def load_yaml(path: Path | str) -> Any:
    """Read a YAML file; a syntax error is one line naming the file, line and column."""
    path = Path(path)
    try:
        return _load_yaml(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        what = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise InputError(f"config error: {where}: YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"config error: {path}: YAML syntax error: {' '.join(str(exc).split())}") from None


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
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key {', '.join(map(repr, extra))} (allowed: {', '.join(allowed)})"
    if error.validator == "enum" and isinstance(error.validator_value, list):
        return f"{where}: {error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    return f"{where}: {error.message}"


def check_config(
    config: Mapping[str, Any], base_dir: Path | str = ".", schema_file: Path = SCHEMA_FILE
) -> dict[str, Any]:
    """Validate ``config`` against the schema, fill defaults, and check paths exist."""
    data = copy.deepcopy(dict(config))
    _check_claim_ids(data)
    schema = _load_yaml(schema_file)
    validator = _DefaultingValidator(schema, registry=_registry(schema_file.parent))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # the deepest, most specific error is the most useful single line
        best = max(errors, key=lambda e: len(e.absolute_path))
        raise InputError(f"config error: {describe(best)}")
    _check_semantics(data, Path(base_dir))
    _check_cross_fields(data)
    return data


CLAIM_IDS = tuple(f"C{i:02d}" for i in range(1, 22))
PER_SEED_IDS = CLAIM_IDS[2:]  # C01 and C02 have no seeds


def _check_claim_ids(config: Mapping[str, Any]) -> None:
    """A list of claim ids with an unknown one: name it and the valid ids (the schema's oneOf
    would only say the list "is not valid under any of the given schemas")."""
    for key, valid in (("claims", CLAIM_IDS), ("per_seed_jobs", PER_SEED_IDS)):
        value = config.get(key)
        if not isinstance(value, list):
            continue
        unknown = [v for v in value if v not in valid]
        if unknown:
            raise InputError(
                f"config error: {key}: {', '.join(map(repr, unknown))} "
                f"{'is not a claim id' if len(unknown) == 1 else 'are not claim ids'} here "
                f"(valid: {', '.join(valid)}{', or all' if key == 'claims' else ', or all / auto'})"
            )


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
            elif Path(full).is_dir() and not any(
                p.is_file() and not p.name.startswith(".") for p in Path(full).rglob("*")
            ):
                raise InputError(f"config error: {where}.path: the folder {pattern!r} holds no file")


def load_config(path: Path | str, base_dir: Path | str | None = None) -> dict[str, Any]:
    """Read a YAML config file and check it (for use outside Snakemake, e.g. tests)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {str(path)!r} does not exist")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise InputError(f"config file {str(path)!r} must hold a mapping at the top level")
    return check_config(data, base_dir if base_dir is not None else Path.cwd())


def _deep_update(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` laid over ``base`` key by key, as Snakemake lays ``--configfile`` files."""
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_configs(
    paths: Sequence[Path | str], default: Path | str | None = "config/config.yaml"
) -> dict[str, Any]:
    """The config a run of ``--configfile PATH...`` gets: ``default`` (the Snakefile's configfile)
    with each file laid over it in order, checked."""
    merged: dict[str, Any] = {}
    for path in [*([default] if default is not None and Path(default).is_file() else []), *paths]:
        if not Path(path).is_file():
            raise InputError(f"config file {str(path)!r} does not exist")
        data = load_yaml(path) or {}
        if not isinstance(data, dict):
            raise InputError(f"config file {str(path)!r} must hold a mapping at the top level")
        _deep_update(merged, data)
    return check_config(merged, Path.cwd())


def print_report_pages(paths: Sequence[str]) -> None:
    """`make run`'s closing lines: each report page of the run of ``--configfile PATHS``."""
    import os

    for lang, page in report_pages(load_configs(paths)).items():
        print(f"Report ({lang}): {os.path.abspath(page)}")


def report_pages(config: Mapping[str, Any]) -> dict[str, str]:
    """Language -> page of the report: the first of ``report.languages`` at ``report.path``, each
    other one beside it as ``<name>.<language>.html`` (reports/index.ko.html)."""
    path = str(config["report"]["path"])
    first = Path(path)
    return {
        lang: path if i == 0 else str(first.with_name(f"{first.stem}.{lang}{first.suffix}"))
        for i, lang in enumerate(config["report"]["languages"])
    }


# --- checks across keys -----------------------------------------------------------------
# A schema checks one value at a time; these check values that must fit each other, so the
# mistake stops the run before any job with one line naming both keys.


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key, or None where a section or key is absent."""
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _first(config: Mapping[str, Any], *keys: str) -> tuple[str, Any]:
    """The first of ``keys`` whose value is set (not null), with its name: per-claim overrides
    fall back to the shared section."""
    for key in keys:
        value = _get(config, key)
        if value is not None:
            return key, value
    return keys[-1], None


def _divides(
    config: Mapping[str, Any], width_key: str | tuple[str, ...], by_key: str | tuple[str, ...]
) -> None:
    wk, width = _first(config, *((width_key,) if isinstance(width_key, str) else width_key))
    bk, by = _first(config, *((by_key,) if isinstance(by_key, str) else by_key))
    if isinstance(width, int) and isinstance(by, int) and by > 0 and width % by:
        raise InputError(f"config error: {wk} ({width}) is not divisible by {bk} ({by})")


def _each_divides(config: Mapping[str, Any], width_key: str, list_key: str) -> None:
    width, values = _get(config, width_key), _get(config, list_key)
    if not isinstance(width, int) or not isinstance(values, list):
        return
    for i, value in enumerate(values):
        if isinstance(value, int) and value > 0 and width % value:
            raise InputError(f"config error: {list_key}[{i}] ({value}) does not divide {width_key} ({width})")


def _at_most(config: Mapping[str, Any], key: str | tuple[str, ...], limit_key: str, what: str) -> None:
    k, value = _first(config, *((key,) if isinstance(key, str) else key))
    limit = _get(config, limit_key)
    if isinstance(value, (int, float)) and isinstance(limit, (int, float)) and value > limit:
        raise InputError(f"config error: {k} ({value}) is longer than {limit_key} ({limit}), {what}")


def _member(config: Mapping[str, Any], key: str, options_key: str) -> None:
    value, options = _get(config, key), _get(config, options_key)
    if value is not None and isinstance(options, list) and value not in options:
        raise InputError(
            f"config error: {key} ({value!r}) is not one of {options_key} ({', '.join(map(repr, options))})"
        )


def _llama_models(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The memory claims' Llama shapes: memory.model, and each claim's overrides laid over it."""
    base = _get(config, "memory.model")
    if not isinstance(base, Mapping):
        return []
    out = [("memory.model", dict(base))]
    for claim in ("C17", "C18", "C19", "C20", "C21"):
        over = _get(config, f"memory.{claim}.model_overrides")
        if isinstance(over, Mapping) and over:
            out.append((f"memory.{claim}.model_overrides", {**base, **over}))
    return out


def _check_cross_fields(config: Mapping[str, Any]) -> None:
    # attention heads split the width evenly: the bench model, its per-claim variants, the LM
    _divides(config, "mechanisms.model.d_model", "mechanisms.model.n_heads")
    _divides(
        config,
        ("mechanisms.C08.d_model", "mechanisms.model.d_model"),
        ("mechanisms.C08.n_heads", "mechanisms.model.n_heads"),
    )
    _divides(config, "mechanisms.model.d_model", "mechanisms.C04.task.n_heads")
    _divides(config, "mechanisms.C11.d_model", "mechanisms.C11.n_heads")
    _each_divides(config, "mechanisms.C05.heads_d_model", "mechanisms.C05.heads_values")
    _each_divides(config, "mechanisms.model.d_model", "mechanisms.C05.train_heads")
    _divides(config, "lm.model.hidden_size", "lm.model.num_heads")
    _divides(config, "lm.model.num_heads", "lm.model.num_kv_heads")
    for where, model in _llama_models(config):
        hidden, heads = model.get("hidden_size"), model.get("num_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
            raise InputError(
                f"config error: {where}: hidden_size ({hidden}) is not divisible by num_heads ({heads})"
            )
    c21 = dict(_llama_models(config)).get("memory.C21.model_overrides") or _get(config, "memory.model")
    off = _get(config, "memory.C21.offload_layers")
    layers = c21.get("num_layers") if isinstance(c21, Mapping) else None
    if isinstance(off, int) and isinstance(layers, int) and off > layers:
        raise InputError(
            f"config error: memory.C21.offload_layers ({off}) is more than the model's "
            f"num_layers ({c21['num_layers']}, memory.model with memory.C21.model_overrides)"
        )
    # 4-bit groups run along each layer's input width: hidden_size (attention, gate/up, head)
    # and intermediate_size (down projection)
    _each_divides(config, "lm.model.hidden_size", "quantization.int4.block_sizes")
    _each_divides(config, "lm.model.intermediate_size", "quantization.int4.block_sizes")
    # sequences must fit the positions a model has
    _at_most(config, "mechanisms.train.seq_len", "mechanisms.model.max_len", "the bench model's positions")
    for claim in ("C08", "C09"):
        _at_most(
            config,
            (f"mechanisms.{claim}.seq_len", "mechanisms.train.seq_len"),
            "mechanisms.model.max_len",
            "the bench model's positions",
        )
    positions = "the language model's positions"
    _at_most(config, "lm.training.block_size", "lm.model.max_position_embeddings", positions)
    _at_most(config, "lm.export.check_block_size", "lm.model.max_position_embeddings", positions)
    _at_most(config, "quantization.measure.block_size", "lm.model.max_position_embeddings", positions)
    _at_most(config, "quantization.qlora.block_size", "lm.model.max_position_embeddings", positions)
    _at_most(config, "mechanisms.C07.min_seq_len", "mechanisms.C07.max_seq_len", "the longest sentence kept")
    _at_most(config, "memory.C20.min_len", "memory.C20.seq_len", "the longest sequence")
    # other pairs
    steps_key, steps = _first(config, "mechanisms.C08.steps", "mechanisms.train.steps")
    warm = _get(config, "mechanisms.C08.warmup_steps")
    if isinstance(warm, int) and isinstance(steps, int) and warm >= steps:
        raise InputError(
            f"config error: mechanisms.C08.warmup_steps ({warm}) must be below {steps_key} ({steps})"
        )
    _each_divides(config, "memory.C20.batch_size", "memory.C20.micro_batch_sizes")
    _member(config, "quantization.smoothquant.alpha_ref", "quantization.smoothquant.alphas")
    _member(config, "quantization.smoothquant.verdict_scheme", "quantization.smoothquant.act_schemes")
    # (which tokenizer a section uses and which languages it trains on are checked against the
    # tokenizers and corpus sections where the rules files pick their inputs, also before any job)
