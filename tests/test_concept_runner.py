"""The runner's per-seed protocol: one seed per call, the gather that combines them, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import fake_seed_claim
from whylab import cli
from whylab.concepts import REGISTRY, run_concept, run_concept_seed
from whylab.errors import InputError

SEEDS = [0, 1, 2]
SETTINGS: dict[str, Any] = {"seeds": SEEDS, "device": "cpu", "scale": 2.0}


@pytest.fixture
def fake_claim(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(REGISTRY, fake_seed_claim.CLAIM_ID, fake_seed_claim.__name__)
    return fake_seed_claim.CLAIM_ID


def seed_files(claim: str, root: Path, settings: dict[str, Any]) -> dict[str, Path]:
    files = {}
    for seed in settings["seeds"]:
        path = root / "concepts" / claim / "seeds" / f"{seed}.json"
        run_concept_seed(claim, {k: v for k, v in settings.items() if k != "seeds"}, {}, seed, path)
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
    # the gather keeps the per-seed files (outputs of other jobs) and writes figures beside them
    assert all(p.is_file() for p in files.values())
    assert (result.parent / "figures" / "means.png").is_file()
    record = json.loads(files["seed.1"].read_text(encoding="utf-8"))
    assert record["seed"] == 1 and record["config"] == {"device": "cpu", "scale": 2.0}


def test_a_seed_is_reproducible_and_independent_of_the_others(fake_claim: str, tmp_path: Path) -> None:
    a = run_concept_seed(fake_claim, {"device": "cpu", "scale": 1.0}, {}, 2, tmp_path / "a.json")
    b = run_concept_seed(
        fake_claim, {"device": "cpu", "scale": 1.0, "seeds": [5, 2]}, {}, 2, tmp_path / "b.json"
    )
    assert a["measurements"] == b["measurements"]


def test_gather_refuses_missing_extra_or_stale_seed_files(fake_claim: str, tmp_path: Path) -> None:
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


def test_run_seed_may_not_write_files(
    fake_claim: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def writes(ctx, seed):  # type: ignore[no-untyped-def]
        (ctx.outdir / "figure.png").write_bytes(b"")
        return {"seed": seed}

    monkeypatch.setattr(fake_seed_claim, "run_seed", writes)
    with pytest.raises(RuntimeError, match=r"wrote figure\.png"):
        run_concept_seed(fake_claim, {"device": "cpu"}, {}, 0, tmp_path / "0.json")
    assert not (tmp_path / "0.json").exists()


def test_a_claim_without_run_seed_cannot_run_one_seed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="C01 has no measure_seed"):
        run_concept_seed("C01", {"device": "cpu"}, {}, 0, tmp_path / "0.json")


def test_cli_runs_one_seed_and_the_gather(fake_claim: str, tmp_path: Path) -> None:
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
    gather = json.dumps(SETTINGS)
    assert cli.main([fake_claim, "--settings", gather, *inputs, "--output", f"result={result}"]) == 0
    assert json.loads(result.read_text(encoding="utf-8"))["seeds"] == [0, 1, 2]


def test_cli_seed_errors_are_one_line(fake_claim: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([fake_claim, "--seed", "0"]) == 2
    assert cli.main(["corpus", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "whylab: --seed needs --output seed=PATH (the per-seed JSON file)",
        "whylab: --seed is for a claim step (C01..C21), not 'corpus'",
    ]
