"""pyproject.toml is the one place for pins; the conda environment files repeat them exactly
(from conda-forge where it has the pinned build, else from pip), and README's "Conda" table
says which environment gets which package, at which version, from where."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# the README table's columns, each an environment file
ENV_FILES = {
    "data": "workflow/envs/data.yaml",
    "ml-cpu": "workflow/envs/ml-cpu.yaml",
    "ml-gpu": "workflow/envs/ml-gpu.yaml",
    "environment.yml": "environment.yml",
    "environment-gpu.yml": "environment-gpu.yml",
}
# conda-forge's name for a pip distribution where the two differ (both builds are torch)
CONDA_TO_PIP = {"pytorch-cpu": "torch", "pytorch-gpu": "torch"}
CONDA_FORGE, PIP = "conda-forge", "pip"


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def env_spec(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text(encoding="utf-8"))


def pip_lines(name: str) -> list[str]:
    return next(d["pip"] for d in env_spec(name)["dependencies"] if isinstance(d, dict) and "pip" in d)


def pip_section(name: str) -> list[str]:
    return [p for p in pip_lines(name) if not p.startswith("-")]  # options (-e .) are no pins


def conda_section(name: str) -> list[str]:
    """The conda packages, less the interpreter and pip itself."""
    deps = [d for d in env_spec(name)["dependencies"] if isinstance(d, str)]
    return [d for d in deps if d.split("=")[0] not in ("python", "pip")]


def env_pins(name: str) -> dict[str, tuple[str, str]]:
    """package name as the file writes it -> (version, where it comes from)."""
    pins: dict[str, tuple[str, str]] = {}
    for dep in conda_section(name):
        package, _, version = dep.partition("=")
        pins[package] = (version, CONDA_FORGE)
    for dep in pip_section(name):
        package, _, version = dep.partition("==")
        pins[package] = (version, PIP)
    return pins


def as_pip_requirements(name: str) -> list[str]:
    """Every pin of an environment file written as pyproject.toml writes it."""
    return [
        f"{CONDA_TO_PIP.get(package, package)}=={version}" for package, (version, _) in env_pins(name).items()
    ]


def readme_table() -> list[dict[str, str]]:
    """The rows of README's table of environments (the one whose header names them all)."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("|") and all(e in line for e in ENV_FILES)
    )
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def test_the_readme_table_names_every_environment() -> None:
    rows = readme_table()
    assert rows and {"package", "version", "from"} <= set(rows[0])
    assert all(r["from"] in (CONDA_FORGE, PIP) for r in rows), {r["from"] for r in rows}


@pytest.mark.parametrize("env", sorted(ENV_FILES))
def test_the_readme_table_gives_each_environments_packages_versions_and_sources(env: str) -> None:
    listed = {
        re.sub(r"`|\s*\(.*\)", "", r["package"]): (r["version"], r["from"]) for r in readme_table() if r[env]
    }
    assert listed == env_pins(ENV_FILES[env])


def test_every_package_that_stays_on_pip_says_why() -> None:
    missing = [r["package"] for r in readme_table() if r["from"] == PIP and not r["why not conda-forge"]]
    assert not missing, missing


@pytest.mark.parametrize(("env_file", "extra"), [("environment.yml", "cpu"), ("environment-gpu.yml", "gpu")])
def test_environment_pins_equal_pyproject(env_file: str, extra: str) -> None:
    p = project()
    expected = [*p["dependencies"], *p["optional-dependencies"][extra], *p["optional-dependencies"]["test"]]
    assert sorted(as_pip_requirements(env_file)) == sorted(expected)


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
    assert sorted(as_pip_requirements(f"workflow/envs/{env_file}")) == sorted(expected)


def test_workflow_data_env_is_torch_free_and_pinned_as_pyproject() -> None:
    p = project()
    pins = set(p["dependencies"])
    data = as_pip_requirements("workflow/envs/data.yaml")
    assert data and set(data) <= pins, set(data) - pins
    assert not any(d.startswith(("torch", "onnx", "transformers")) for d in data)


@pytest.mark.parametrize("env", sorted(ENV_FILES))
def test_every_conda_pin_is_exact_and_the_interpreter_is_pyprojects(env: str) -> None:
    deps = [d for d in env_spec(ENV_FILES[env])["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in deps and project()["requires-python"] == ">=3.11,<3.12"
    assert env_spec(ENV_FILES[env])["channels"] == [CONDA_FORGE]
    for dep in conda_section(ENV_FILES[env]):
        assert re.fullmatch(r"[a-z0-9_.-]+=\d+(\.\d+)+", dep), f"{env}: {dep} is not pinned exactly"


@pytest.mark.parametrize(
    ("env", "build"), [(e, "pytorch-gpu" if "gpu" in e else "pytorch-cpu") for e in ENV_FILES]
)
def test_torch_is_conda_forges_build_for_the_device(env: str, build: str) -> None:
    """conda-forge's CPU build never pulls CUDA libraries (no extra pip index needed); its CUDA
    build is the GPU one. pip never installs torch, so it cannot replace that build."""
    pins = env_pins(ENV_FILES[env])
    assert "torch" not in pins
    if env == "data":
        assert not any(p.startswith("pytorch") for p in pins)
    else:
        assert pins[build] == ("2.13.0", CONDA_FORGE)
    assert not any("index-url" in line for line in pip_lines(ENV_FILES[env]))


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
