"""A claim package's per-seed run: one seed per call, the decide step that reads them, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fake_seed_claim
from fake_seed_claim import experiment as fake_experiment
from whylab import cli
from whylab.concepts import REGISTRY, run_concept
from whylab.concepts.measuring import run_measure_seed
from whylab.concepts.spec import load_spec
from whylab.errors import InputError

SEEDS = [0, 1, 2]
SETTINGS: dict[str, Any] = {"seeds": SEEDS, "device": "cpu", "scale": 2.0}


@pytest.fixture
def fake_claim(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The fake package (tests/fake_seed_claim/) in C08's place; C08's claim.yaml is read afresh
    before and after, so neither claim's rule is cached for the other."""
    monkeypatch.setitem(REGISTRY, fake_seed_claim.CLAIM_ID, fake_seed_claim.__name__)
    load_spec.cache_clear()
    yield fake_seed_claim.CLAIM_ID
    load_spec.cache_clear()


def seed_files(claim: str, root: Path, settings: dict[str, Any]) -> dict[str, Path]:
    files = {}
    for seed in settings["seeds"]:
        path = root / "concepts" / claim / "seeds" / f"{seed}.json"
        run_measure_seed(claim, {k: v for k, v in settings.items() if k != "seeds"}, {}, seed, path)
        files[f"seed.{seed}"] = path
    return files


def test_per_seed_jobs_give_the_same_result_as_one_process(fake_claim: str, tmp_path: Path) -> None:
    one = run_concept(fake_claim, SETTINGS, {}, tmp_path / "one" / fake_claim / "result.json")
    files = seed_files(fake_claim, tmp_path / "split", SETTINGS)
    result = tmp_path / "split" / "concepts" / fake_claim / "result.json"
    split = run_concept(fake_claim, SETTINGS, files, result)

    assert split["metrics"] == one["metrics"]
    assert split["verdict"] == one["verdict"]
    assert split["seeds"] == [0, 1, 2]
    # each seed its own numbers, in the settings' order
    assert len(set(split["metrics"]["means"])) == 3
    # the decide step keeps the per-seed files (outputs of other jobs) and writes figures beside them
    assert all(p.is_file() for p in files.values())
    assert (result.parent / "figures" / "means.png").is_file()
    record = json.loads(files["seed.1"].read_text(encoding="utf-8"))
    assert record["seed"] == 1 and record["config"] == {"device": "cpu", "scale": 2.0}


def test_a_seed_is_reproducible_and_independent_of_the_others(fake_claim: str, tmp_path: Path) -> None:
    a = run_measure_seed(fake_claim, {"device": "cpu", "scale": 1.0}, {}, 2, tmp_path / "a.json")
    b = run_measure_seed(
        fake_claim, {"device": "cpu", "scale": 1.0, "seeds": [5, 2]}, {}, 2, tmp_path / "b.json"
    )
    assert a["measurements"] == b["measurements"]


def test_decide_refuses_missing_extra_or_stale_seed_files(fake_claim: str, tmp_path: Path) -> None:
    files = seed_files(fake_claim, tmp_path, SETTINGS)
    result = tmp_path / "concepts" / fake_claim / "result.json"
    with pytest.raises(InputError, match=r"seeds \[0, 1\], but the settings ask for \[0, 1, 2\]"):
        run_concept(fake_claim, SETTINGS, {k: files[k] for k in ("seed.0", "seed.1")}, result)
    with pytest.raises(InputError, match="made with other settings"):
        run_concept(fake_claim, {**SETTINGS, "scale": 3.0}, files, result)
    swapped = {**files, "seed.0": files["seed.1"]}
    with pytest.raises(InputError, match="holds claim C08 seed 1"):
        run_concept(fake_claim, SETTINGS, swapped, result)
    assert not result.exists()


def test_what_a_seed_writes_stays_in_its_scratch_folder(
    fake_claim: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A measuring step's ``ctx.outdir`` is a scratch folder: a figure drawn there reaches no
    output (figures are drawn by the decide step, from the measurements)."""
    scratch: list[Path] = []

    def writes(ctx, seed):  # type: ignore[no-untyped-def]
        (ctx.outdir / "figure.png").write_bytes(b"")
        scratch.append(ctx.outdir)
        return {"seed": seed, "draw": [], "mean": 0.0, "scale": 1.0}

    monkeypatch.setattr(fake_experiment, "measure_seed", writes)
    files = seed_files(fake_claim, tmp_path, {"seeds": [0], "device": "cpu"})
    seeds_dir = files["seed.0"].parent
    assert [p.name for p in seeds_dir.iterdir()] == ["0.json"]
    assert not scratch[0].exists() and not scratch[0].is_relative_to(tmp_path)
    result = run_concept(fake_claim, {"seeds": [0], "device": "cpu"}, files, seeds_dir.parent / "result.json")
    assert [f["path"] for f in result["figures"]] == ["figures/means.png"]
    assert not list(tmp_path.rglob("figure.png"))


def test_a_claim_without_measure_seed_cannot_run_one_seed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="C01 has no measure_seed"):
        run_measure_seed("C01", {"device": "cpu"}, {}, 0, tmp_path / "0.json")
    assert cli.main(["C01", "--seed", "0", "--output", f"seed={tmp_path / '0.json'}"]) == 2
    assert not (tmp_path / "0.json").exists()


def test_cli_runs_one_seed_and_the_decide_step(fake_claim: str, tmp_path: Path) -> None:
    settings = json.dumps({k: v for k, v in SETTINGS.items() if k != "seeds"})
    inputs = []
    for seed in SEEDS:
        out = tmp_path / "seeds" / f"{seed}.json"
        assert (
            cli.main([fake_claim, "--seed", str(seed), "--settings", settings, "--output", f"seed={out}"])
            == 0
        )
        inputs += ["--input", f"seed.{seed}={out}"]
    result = tmp_path / "result.json"
    decide = json.dumps(SETTINGS)
    assert cli.main([fake_claim, "--settings", decide, *inputs, "--output", f"result={result}"]) == 0
    assert json.loads(result.read_text(encoding="utf-8"))["seeds"] == [0, 1, 2]


def test_cli_seed_errors_are_one_line(fake_claim: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([fake_claim, "--seed", "0"]) == 2
    assert cli.main(["corpus", "--seed", "0"]) == 2
    assert cli.main([fake_claim, "--seed", "0", "--measure", "all"]) == 2
    assert cli.main([fake_claim, "--measure", "all"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "whylab: --seed needs --output seed=PATH (the per-seed JSON file)",
        "whylab: --seed is for a claim step (C01..C21), not 'corpus'",
        "whylab: --seed and --measure are two different steps: give one",
        "whylab: --measure needs --output measurements=PATH",
    ]
