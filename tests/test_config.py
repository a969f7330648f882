"""Config checking: defaults fill in, and each bad value is one line naming the key."""

from __future__ import annotations

import subprocess
import sys
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


# --- values that must fit each other: one line naming both keys, before any job -------------

CROSS_FIELD = [
    pytest.param(
        {"mechanisms": {"model": {"d_model": 30, "n_heads": 4}}},
        "mechanisms.model.d_model (30) is not divisible by mechanisms.model.n_heads (4)",
        id="bench-width-heads",
    ),
    pytest.param(
        {"mechanisms": {"C11": {"d_model": 32, "n_heads": 3}}},
        "mechanisms.C11.d_model (32) is not divisible by mechanisms.C11.n_heads (3)",
        id="c11-width-heads",
    ),
    pytest.param(
        {"mechanisms": {"C08": {"d_model": 32, "n_heads": 5}}},
        "mechanisms.C08.d_model (32) is not divisible by mechanisms.C08.n_heads (5)",
        id="c08-width-heads",
    ),
    pytest.param(
        {"mechanisms": {"C05": {"train_heads": [1, 3]}}},
        "mechanisms.C05.train_heads[1] (3) does not divide mechanisms.model.d_model (64)",
        id="c05-train-heads",
    ),
    pytest.param(
        {"lm": {"model": {"hidden_size": 130, "num_heads": 4}}},
        "lm.model.hidden_size (130) is not divisible by lm.model.num_heads (4)",
        id="lm-width-heads",
    ),
    pytest.param(
        {"memory": {"model": {"hidden_size": 130}}},
        "memory.model: hidden_size (130) is not divisible by num_heads (4)",
        id="memory-width-heads",
    ),
    pytest.param(
        {"lm": {"model": {"intermediate_size": 352}}, "quantization": {"int4": {"block_sizes": [32, 64]}}},
        "quantization.int4.block_sizes[1] (64) does not divide lm.model.intermediate_size (352)",
        id="int4-group-width",
    ),
    pytest.param(
        {"lm": {"training": {"block_size": 512}}},
        "lm.training.block_size (512) is longer than lm.model.max_position_embeddings (256)",
        id="lm-block-positions",
    ),
    pytest.param(
        {"quantization": {"measure": {"block_size": 512}}},
        "quantization.measure.block_size (512) is longer than lm.model.max_position_embeddings (256)",
        id="quant-block-positions",
    ),
    pytest.param(
        {"mechanisms": {"train": {"seq_len": 300}}},
        "mechanisms.train.seq_len (300) is longer than mechanisms.model.max_len (256)",
        id="bench-seq-positions",
    ),
    pytest.param(
        {"mechanisms": {"C08": {"warmup_steps": 80, "steps": 80}}},
        "mechanisms.C08.warmup_steps (80) must be below mechanisms.C08.steps (80)",
        id="c08-warmup-steps",
    ),
    pytest.param(
        {"memory": {"C20": {"batch_size": 8, "micro_batch_sizes": [1, 3]}}},
        "memory.C20.micro_batch_sizes[1] (3) does not divide memory.C20.batch_size (8)",
        id="c20-micro-batch",
    ),
    pytest.param(
        {"memory": {"C21": {"offload_layers": 9}}},
        "memory.C21.offload_layers (9) is more than the model's num_layers (4",
        id="c21-offload-layers",
    ),
    pytest.param(
        {"quantization": {"smoothquant": {"alpha_ref": 0.3}}},
        "quantization.smoothquant.alpha_ref (0.3) is not one of quantization.smoothquant.alphas",
        id="smoothquant-alpha",
    ),
]


def _defaults_and(overlay: dict) -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    return _merge(base, overlay)


@pytest.mark.parametrize(("overlay", "expected"), CROSS_FIELD)
def test_values_that_must_fit_each_other_give_one_line(overlay: dict, expected: str) -> None:
    with pytest.raises(InputError) as info:
        check_config(_defaults_and(overlay), REPO)
    message = str(info.value)
    assert "\n" not in message and message.startswith("config error: ")
    assert expected in message


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text("seeds: [0, 1]\nlm:\n  model: {hidden_size: 64\n  training: {}\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config(bad)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config error: {bad}, line 4, column ")
    assert "YAML syntax error" in message


# pairs across sections that the rules files check as they pick a rule's inputs (same one line)
RULES_FILES = [
    pytest.param(
        {"lm": {"tokenizer": {"vocab_size": 1500}}},
        "lm.tokenizer.vocab_size: 1500 is not built by the tokenizers rule (it builds 1000, 2000, 4000)",
        id="lm-tokenizer-built",
    ),
    pytest.param(
        {"tokenizers": {"scope": "per_language"}},
        "mechanisms.tokenizer.scope: 'joint' is not built by the tokenizers rule (it builds en, ko)",
        id="tokenizer-scope",
    ),
    pytest.param(
        {
            "quantization": {"qlora": {"finetune_language": "en"}},
            "lm": {"train_languages": ["ko"]},
            "corpus": {"languages": ["ko"]},
        },
        "quantization.qlora.finetune_language: 'en' is not in corpus.languages (ko)",
        id="languages",
    ),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("overlay", "expected"), CROSS_FIELD + RULES_FILES)
def test_cross_field_errors_stop_snakemake_before_any_job(
    tmp_path: Path, overlay: dict, expected: str
) -> None:
    work = _snakemake_copy(tmp_path)
    (work / "bad.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    proc = _snakemake(work, "--configfile", "bad.yaml")
    _assert_one_line_and_no_job(proc, work, "whylab: config error: ", expected)


@pytest.mark.e2e
def test_yaml_syntax_error_in_the_config_stops_snakemake_with_file_and_line(tmp_path: Path) -> None:
    work = _snakemake_copy(tmp_path)
    path = work / "config" / "config.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = "seeds: [0, 1, 2"  # an unclosed flow sequence
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = _snakemake(work)
    _assert_one_line_and_no_job(
        proc, work, "whylab: config error: config/config.yaml, line ", "YAML syntax error"
    )


def _snakemake_copy(tmp_path: Path) -> Path:
    from workflow_copy import workflow_copy

    return workflow_copy(tmp_path / "work")


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_one_line_and_no_job(
    proc: subprocess.CompletedProcess[str], work: Path, prefix: str, expected: str
) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith(prefix) and expected in lines[-1], proc.stderr[-2000:]
    # before it at most Snakemake's own note that the config file is extended
    assert len(lines) <= 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (work / "results").exists() and not (work / "reports" / "index.html").exists()


def test_report_pages_the_first_language_at_the_path_the_others_beside_it() -> None:
    from whylab.config import report_pages

    pages = report_pages({"report": {"path": "out/r.html", "languages": ["ko", "en"]}})
    assert pages == {"ko": "out/r.html", "en": "out/r.en.html"}
    assert report_pages(load_config(REPO / "config" / "config.yaml")) == {
        "en": "reports/index.html",
        "ko": "reports/index.ko.html",
    }
