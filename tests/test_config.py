"""Config checking: defaults fill in, and each bad value is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from whylab.config import SCHEMA_DIR, check_config, load_config
from whylab.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def test_empty_config_gets_every_default() -> None:
    config = check_config({}, REPO)
    assert config["device"] == "auto"
    assert config["corpus"]["languages"] == ["en", "ko"]
    assert config["tokenizers"]["algorithms"] == ["bpe", "wordpiece", "unigram"]
    assert config["concepts"]["C02"]["example_words"]["ko"][:2] == ["우리", "가족"]


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "gpu.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    path = REPO / "config" / name
    if not path.exists():
        pytest.skip(f"{name} not present")
    overlay = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    merged = _merge(base, overlay)
    check_config(merged, REPO)


def _merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"tokenizers": {"vocab_sizes": [0]}}, "tokenizers.vocab_sizes[0]: 0 is less than the minimum"),
        ({"tokenizers": {"vocab_size": 1000}}, "tokenizers: unknown key 'vocab_size'"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"tokenizers": {"vocab_sizes": "1000"}}, "tokenizers.vocab_sizes: '1000' is not of type 'array'"),
        (
            {"tokenizers": {"vocab_sizes": [1000, 1000]}},
            "tokenizers.vocab_sizes: [1000, 1000] has non-unique",
        ),
        (
            {"tokenizers": {"algorithms": ["bpe", "sentencepiece"]}},
            "tokenizers.algorithms[1]: 'sentencepiece' is not one of",
        ),
        ({"device": "tpu"}, "device: 'tpu' is not one of"),
        ({"corpus": {"valid_fraction": 0.9}}, "corpus.valid_fraction: 0.9 is greater than the maximum"),
        (
            {"corpus": {"sources": [{"path": "no/such/file.txt"}]}},
            "corpus.sources[0].path: 'no/such/file.txt' does not exist",
        ),
        (
            {"corpus": {"sources": [{"path": "no/such/*.txt"}]}},
            "corpus.sources[0].path: the glob 'no/such/*.txt' matches no file",
        ),
        (
            {"corpus": {"sources": [{"lang": "en"}]}},
            "corpus.sources[0]: give exactly one of builtin, path, dataset",
        ),
        ({"corpus": {"sources": []}}, "corpus.sources: [] should be non-empty"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(config: dict, expected: str) -> None:
    with pytest.raises(InputError) as info:
        check_config(config, REPO)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("config error: ")
    assert expected in message


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_every_schema_file_declares_its_dialect() -> None:
    # snakemake's validate() cannot resolve a $ref'd schema without it
    for path in SCHEMA_DIR.glob("*.yaml"):
        assert yaml.safe_load(path.read_text(encoding="utf-8")).get("$schema"), path.name


def test_every_property_has_a_default_or_is_a_source_field() -> None:
    """An empty config must be complete: every section property carries a default."""
    optional = {"builtin", "path", "dataset", "dataset_config", "max_chars"}  # fields of one corpus source

    def walk(schema: dict, where: str) -> None:
        for name, sub in schema.get("properties", {}).items():
            if isinstance(sub, dict) and "$ref" not in sub:
                assert "default" in sub or name in optional, f"{where}.{name} has no default"
                walk(sub, f"{where}.{name}")

    for path in SCHEMA_DIR.glob("*.yaml"):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")), path.stem)
