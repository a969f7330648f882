"""What the DAG schedules, checked with dry runs (seconds, no experiment runs), plus one small real run.

A dry run after a change shows what that change re-runs. To have a finished run to change,
``finished`` creates every output of config/test.yaml's DAG as an empty file and records it
with ``snakemake --touch --forceall`` (outputs and metadata, nothing executed). C08's package is
replaced in the copy by tests/fake_seed_claim/, a claim package that measures per seed only
(measure_seed, no measure), so the per-seed jobs exist whatever the real C08 package looks like.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from workflow_copy import workflow_copy

REPO = Path(__file__).resolve().parents[1]
FAKE_CLAIM = Path(__file__).with_name("fake_seed_claim")
C08_PACKAGE = Path("src/whylab/concepts/c08_pre_vs_post_ln")
# the rules that run torch on the run's device; every other job must get cpu and no GPU
TORCH_RULES = re.compile(
    r"lm_train|lm_export|bench_baseline|quant_variants|concept_C(0[3-9]|1[0146]|1[7-9]|2[01])(_seed|_measure)?"
)
# claims that repeat over the run-wide seeds in config/test.yaml (C03-C08 and C11 set their own)
SEEDED_CLAIMS = {f"concept_C{i:02d}" for i in (9, 10, 14, 16)}


@dataclass
class Job:
    rule: str
    fields: dict[str, str] = field(default_factory=dict)
    shell: str = ""

    @property
    def wildcards(self) -> dict[str, str]:
        return dict(kv.split("=", 1) for kv in self.fields.get("wildcards", "").split(", ") if "=" in kv)

    @property
    def resources(self) -> dict[str, str]:
        return dict(kv.split("=", 1) for kv in self.fields.get("resources", "").split(", ") if "=" in kv)

    @property
    def settings(self) -> dict[str, object]:
        found = re.search(r"--settings '(\{.*?\})'", self.shell)
        assert found, self.shell
        settings: dict[str, object] = json.loads(found.group(1))
        return settings


def snakemake(cwd: Path, *args: str, timeout: int = 300) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def dry_run(cwd: Path, *configfiles: str, targets: tuple[str, ...] = ()) -> list[Job]:
    """The jobs a run would start, with their resources and shell commands."""
    out = snakemake(cwd, "-n", "-p", "--configfile", *configfiles, "--", *targets)
    jobs: list[Job] = []
    for line in out.splitlines():
        rule = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if rule:
            jobs.append(Job(rule.group(1)))
        elif jobs and (kv := re.match(r"^\s+(\w+): (.*)$", line)):
            jobs[-1].fields[kv.group(1)] = kv.group(2)
        elif jobs and line.startswith("Shell command: "):
            jobs[-1].shell = line.removeprefix("Shell command: ")
    return jobs


def rules(jobs: list[Job]) -> Counter[str]:
    return Counter(job.rule for job in jobs)


def per_seed_copy(dest: Path) -> Path:
    """A workflow copy whose C08 is the per-seed fake claim package."""
    work = workflow_copy(dest)
    # the real package goes first: none of its modules (cells.py, README.md) may stay beside the fake's
    shutil.rmtree(work / C08_PACKAGE)
    shutil.copytree(FAKE_CLAIM, work / C08_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "fake.yaml").write_text("per_seed_jobs: [C08]\n", encoding="utf-8")
    return work


def finish(work: Path, *configfiles: str) -> None:
    """Every output of the DAG present and recorded as made with these settings (nothing runs)."""
    summary = snakemake(work, "--summary", "--quiet", "--configfile", *configfiles)
    lines = [line for line in summary.splitlines() if "\t" in line]
    for row in csv.DictReader(lines, delimiter="\t"):
        path = work / row["output_file"]
        if path.suffix in (".json", ".txt", ".html", ".csv", ".tsv", ".safetensors"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        else:
            path.mkdir(parents=True, exist_ok=True)
    snakemake(work, "--touch", "--forceall", "--configfile", *configfiles)
    assert not dry_run(work, *configfiles), "a finished run has nothing to do"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = per_seed_copy(tmp_path_factory.mktemp("finished"))
    finish(work, "config/test.yaml", "fake.yaml")
    return work


@pytest.fixture
def edit(finished: Path) -> Iterator[Callable[[str], None]]:
    """Append a comment to a file of the finished run (Snakemake compares contents, not only
    times); the file is restored afterwards, so the run is finished again."""
    saved: dict[Path, str] = {}

    def edit_file(name: str) -> None:
        path = finished / name
        saved.setdefault(path, path.read_text(encoding="utf-8"))
        path.write_text(saved[path] + "\n# edited\n", encoding="utf-8")

    yield edit_file
    for path, text in saved.items():
        path.write_text(text, encoding="utf-8")


def write(work: Path, name: str, text: str) -> str:
    (work / name).write_text(text, encoding="utf-8")
    return name


def test_gpu_config_gives_cuda_and_a_gpu_to_the_torch_rules_only(tmp_path: Path) -> None:
    work = per_seed_copy(tmp_path)
    write(work, "partition.yaml", "gpu_partition: gpu-a100\n")
    jobs = dry_run(work, "config/gpu.yaml", "fake.yaml", "partition.yaml")
    assert {"lm_train", "corpus", "concept_C01", "concept_C08_seed", "concept_C12", "report"} <= set(
        rules(jobs)
    )
    scheduled = set(rules(jobs))
    # a claim's decide job: the measure jobs' settings, but it only decides: no GPU
    decide_jobs = {
        r.removesuffix("_measure").removesuffix("_seed")
        for r in scheduled
        if r.endswith(("_measure", "_seed"))
    }
    for job in jobs:
        if job.rule in ("all", "report"):  # the report's settings are the whole config; it runs locally
            continue
        device = job.settings["device"]
        if job.rule in decide_jobs and TORCH_RULES.fullmatch(f"{job.rule}_measure"):
            assert device == "cuda" and "gpu" not in job.resources, job
        elif TORCH_RULES.fullmatch(job.rule):
            assert device == "cuda" and job.resources.get("gpu") == "1", (job.rule, job.resources)
            assert job.resources.get("slurm_partition") == "gpu-a100", job.resources
        else:
            assert device == "cpu", (job.rule, device)
            assert "gpu" not in job.resources and "slurm_partition" not in job.resources, job


def test_cpu_device_asks_for_no_gpu(tmp_path: Path) -> None:
    work = per_seed_copy(tmp_path)
    write(work, "cpu.yaml", "device: cpu\n")
    jobs = dry_run(work, "config/gpu.yaml", "fake.yaml", "cpu.yaml")
    assert jobs
    assert all("gpu" not in job.resources for job in jobs)
    assert {job.settings["device"] for job in jobs if job.rule not in ("all", "report")} == {"cpu"}


def test_adding_a_seed_schedules_that_seeds_jobs_and_the_decide_jobs_only(finished: Path) -> None:
    # a seed added to the run-wide list, and to the per-seed claim's own list
    write(finished, "seeds.yaml", "seeds: [0, 1, 2]\nmechanisms: {C08: {seeds: [0, 1, 2]}}\n")
    jobs = dry_run(finished, "config/test.yaml", "fake.yaml", "seeds.yaml")
    # a claim package not split by seed measures every seed in one job: its measure job re-runs
    measured = {
        f"{c}_measure"
        for c in SEEDED_CLAIMS
        if (finished / "results/concepts" / c[-3:] / "measurements.json").exists()
    }
    assert rules(jobs) == Counter(
        {
            **dict.fromkeys(SEEDED_CLAIMS | measured, 1),
            "concept_C08_seed": 1,
            "concept_C08": 1,
            "report": 1,
            "all": 1,
        }
    )
    (seed_job,) = (job for job in jobs if job.rule == "concept_C08_seed")
    assert seed_job.wildcards == {"seed": "2"}


def test_a_claims_own_seeds_rerun_that_claim_only(finished: Path) -> None:
    write(finished, "c08seeds.yaml", "mechanisms: {C08: {seeds: [0, 1, 3, 4]}}\n")
    jobs = dry_run(finished, "config/test.yaml", "fake.yaml", "c08seeds.yaml")
    assert rules(jobs) == Counter({"concept_C08_seed": 2, "concept_C08": 1, "report": 1, "all": 1})
    assert sorted(job.wildcards["seed"] for job in jobs if job.rule == "concept_C08_seed") == ["3", "4"]


def test_the_device_reaches_the_torch_rules_only(tmp_path: Path) -> None:
    """Every job's settings with device cpu and cuda: only the torch rules' differ, and only in device."""
    work = per_seed_copy(tmp_path)
    write(work, "cpu.yaml", "device: cpu\n")
    write(work, "cuda.yaml", "device: cuda\n")
    on_cpu = {
        (j.rule, j.fields.get("wildcards", "")): j
        for j in dry_run(work, "config/test.yaml", "fake.yaml", "cpu.yaml")
    }
    on_gpu = {
        (j.rule, j.fields.get("wildcards", "")): j
        for j in dry_run(work, "config/test.yaml", "fake.yaml", "cuda.yaml")
    }
    assert on_cpu.keys() == on_gpu.keys()
    for key, job in on_cpu.items():
        if job.rule in ("all", "report"):
            continue
        cpu, gpu = job.settings, on_gpu[key].settings
        if TORCH_RULES.fullmatch(job.rule):  # C08's decide job included: it carries its seeds' settings
            assert (cpu["device"], gpu["device"]) == ("cpu", "cuda"), key
            assert {**cpu, "device": None} == {**gpu, "device": None}, key
        else:
            assert cpu == gpu, key


def test_changing_the_device_leaves_the_cpu_stages_alone(finished: Path) -> None:
    write(finished, "cuda.yaml", "device: cuda\n")
    jobs = dry_run(finished, "config/test.yaml", "fake.yaml", "cuda.yaml")
    scheduled = set(rules(jobs))
    assert {"lm_train", "concept_C17", "concept_C08_seed", "concept_C03"} <= scheduled
    assert not {"corpus", "tokenizers", "concept_C01", "concept_C02"} & scheduled
    changed = {job.rule for job in jobs if "Params have changed" in job.fields.get("reason", "")}
    assert changed and not [r for r in changed if not TORCH_RULES.fullmatch(r)], sorted(changed)


def test_editing_a_claim_module_reruns_that_claim_only(finished: Path, edit: Callable[[str], None]) -> None:
    edit("src/whylab/concepts/c03_embedding/experiment.py")
    assert rules(dry_run(finished, "config/test.yaml", "fake.yaml")) == Counter(
        {"concept_C03_measure": 1, "concept_C03": 1, "report": 1, "all": 1}
    )


def test_editing_a_claims_decision_or_figures_reruns_its_decide_job_only(
    finished: Path, edit: Callable[[str], None]
) -> None:
    edit("src/whylab/concepts/c03_embedding/figures.py")
    edit("src/whylab/concepts/c03_embedding/verdict.py")
    assert rules(dry_run(finished, "config/test.yaml", "fake.yaml")) == Counter(
        {"concept_C03": 1, "report": 1, "all": 1}
    )


def test_editing_a_per_seed_experiment_reruns_its_seeds_and_decide_job(
    finished: Path, edit: Callable[[str], None]
) -> None:
    edit(str(C08_PACKAGE / "experiment.py"))
    assert rules(dry_run(finished, "config/test.yaml", "fake.yaml")) == Counter(
        {"concept_C08_seed": 2, "concept_C08": 1, "report": 1, "all": 1}
    )


def test_editing_a_shared_module_reruns_the_claims_that_import_it(
    finished: Path, edit: Callable[[str], None]
) -> None:
    edit("src/whylab/bench/model.py")
    scheduled = set(rules(dry_run(finished, "config/test.yaml", "fake.yaml"))) - {"report", "all"}
    assert scheduled and all(
        re.fullmatch(r"concept_C(0[3-9]|1[01])(_seed|_measure)?|bench_baseline", r) for r in scheduled
    ), scheduled


def test_editing_a_user_corpus_file_reruns_the_corpus_and_what_depends_on_it(tmp_path: Path) -> None:
    work = workflow_copy(tmp_path)
    texts = work / "texts"
    texts.mkdir()
    english = "An English paragraph about tokenizers and text."
    korean = "토크나이저는 텍스트를 숫자로 바꾸는 도구입니다."
    for name, line in (("a.txt", english), ("b.txt", korean)):
        (texts / name).write_text("\n\n".join(f"{line} {i}" for i in range(400)), encoding="utf-8")
    write(work, "mine.yaml", (
        "claims: [C01]\n"
        "corpus: {sources: [{path: 'texts/a.txt', lang: en}, {path: 'texts/*b.txt', lang: ko}]}\n"
    ))  # fmt: skip
    finish(work, "config/test.yaml", "mine.yaml")

    with (texts / "b.txt").open("a", encoding="utf-8") as fh:
        fh.write("\n\nOne more paragraph, added after the run.\n")
    scheduled = rules(dry_run(work, "config/test.yaml", "mine.yaml"))
    # only C01 is asked for: no LM, no mechanism claim
    assert scheduled == Counter(
        {"corpus": 1, "tokenizers": 3, "concept_C01_measure": 1, "concept_C01": 1, "report": 1, "all": 1}
    )


def test_a_claims_list_runs_only_what_those_claims_need(tmp_path: Path) -> None:
    work = workflow_copy(tmp_path)
    write(work, "two.yaml", "claims: [C02, C13]\n")
    scheduled = set(rules(dry_run(work, "config/test.yaml", "two.yaml")))
    assert {"concept_C02", "concept_C13", "lm_train", "quant_variants", "report"} <= scheduled
    # a claim package's measure and seed jobs are named concept_<ID>_...
    assert not {
        r for r in scheduled if r.startswith("concept_") and not r.startswith(("concept_C02", "concept_C13"))
    }


@pytest.mark.e2e
def test_per_seed_jobs_run_and_the_report_shows_the_rest_as_not_tested(tmp_path: Path) -> None:
    """A real run: corpus, the joint tokenizer, C08 as two seed jobs and a decide job, the report."""
    work = per_seed_copy(tmp_path)
    write(work, "only.yaml", "claims: [C08]\ntokenizers: {scope: joint}\n")
    snakemake(work, "--cores", "2", "--configfile", "config/test.yaml", "fake.yaml", "only.yaml", timeout=900)
    result = json.loads((work / "results/concepts/C08/result.json").read_text(encoding="utf-8"))
    seeds = sorted((work / "results/concepts/C08/seeds").glob("*.json"))
    assert [p.stem for p in seeds] == ["0", "1"] and result["seeds"] == [0, 1]
    assert (work / "results/concepts/C08/figures/means.png").is_file()
    html = (work / "reports/index.html").read_text(encoding="utf-8")
    assert html.count("not tested yet") >= 20

    snakemake(
        work, "--configfile", "config/test.yaml", "fake.yaml", "only.yaml", "--report", "reports/sm.html"
    )
    report = (work / "reports/sm.html").read_text(encoding="utf-8")
    assert "means.png" in report and "Mean of four draws per seed." in report
