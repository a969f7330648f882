"""pyproject.toml is the one place for pins; the conda environment files must repeat them exactly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def pip_section(name: str) -> list[str]:
    env = yaml.safe_load((REPO / name).read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return [p for p in pip if not p.startswith("-")]  # options (-e ., --extra-index-url) are no pins


@pytest.mark.parametrize(("env_file", "extra"), [("environment.yml", "cpu"), ("environment-gpu.yml", "gpu")])
def test_environment_pins_equal_pyproject(env_file: str, extra: str) -> None:
    p = project()
    expected = [*p["dependencies"], *p["optional-dependencies"][extra], *p["optional-dependencies"]["test"]]
    assert sorted(pip_section(env_file)) == sorted(expected)


RULE_ENVS = {"ml-cpu.yaml": "cpu", "ml-gpu.yaml": "gpu"}
OUTSIDE_RULES = ("snakemake", "snakemake-executor-plugin-slurm")  # Snakemake runs outside the rule envs


@pytest.mark.parametrize(("env_file", "extra"), sorted(RULE_ENVS.items()))
def test_workflow_ml_env_pins_equal_pyproject(env_file: str, extra: str) -> None:
    p = project()
    expected = [
        d
        for d in [*p["dependencies"], *p["optional-dependencies"][extra]]
        if d.split("==")[0] not in OUTSIDE_RULES
    ]
    assert sorted(pip_section(f"workflow/envs/{env_file}")) == sorted(expected)


def test_workflow_data_env_is_torch_free_and_pinned_as_pyproject() -> None:
    p = project()
    pins = set(p["dependencies"])
    data = pip_section("workflow/envs/data.yaml")
    assert data and set(data) <= pins, set(data) - pins
    assert not any(d.startswith(("torch", "onnx", "transformers")) for d in data)


def test_cpu_env_takes_torch_from_the_cpu_index() -> None:
    env = yaml.safe_load((REPO / "workflow/envs/ml-cpu.yaml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip


def test_every_pin_is_exact() -> None:
    p = project()
    for req in [*p["dependencies"], *(r for rs in p["optional-dependencies"].values() for r in rs)]:
        assert "==" in req, f"{req} is not pinned exactly"


def test_torch_is_pinned_so_cpu_machines_never_pull_cuda() -> None:
    assert "torch==2.13.0" in project()["dependencies"]


def test_one_onnxruntime_build_per_environment() -> None:
    for name in ("environment.yml", "environment-gpu.yml"):
        runtimes = [p for p in pip_section(name) if p.startswith("onnxruntime")]
        assert len(runtimes) == 1, (name, runtimes)
    assert not any(d.startswith("onnxruntime") for d in project()["dependencies"])
