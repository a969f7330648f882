"""Bad settings stop a run before any job with one `whylab:` line; on a cluster, jobs are sized and split.

Each case runs Snakemake on a copy of the workflow and stops at parse time (seconds): a dry run
where the check applies to dry runs, a real run (`--cores 1`, no -n) where it does not (the
device check: a dry run plans, it starts nothing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whylab.config import check_config, load_configs
from whylab.errors import InputError
from workflow_copy import workflow_copy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workflow_copy(tmp_path_factory.mktemp("bad"))


def snakemake(cwd: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def one_whylab_line(done: subprocess.CompletedProcess[str]) -> str:
    """The run failed before any job, saying so in exactly one `whylab:` line and no traceback."""
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("whylab:")]
    assert len(lines) == 1, out[-3000:]
    assert "Traceback" not in out and not re.search(r"^\s*(local)?rule \w+:", out, re.M), out[-3000:]
    return lines[0]


def overlay(work: Path, name: str, text: str) -> str:
    (work / name).write_text(text, encoding="utf-8")
    return name


def test_an_lm_larger_than_the_machine_stops_before_any_job(work: Path) -> None:
    name = overlay(
        work, "huge.yaml", "lm: {model: {hidden_size: 65536, intermediate_size: 262144, num_heads: 64}}\n"
    )
    line = one_whylab_line(snakemake(work, "-n", "--configfile", name))
    assert "lm.model does not fit" in line and "GiB" in line and "mem_mb=" in line, line
    predicted = float(re.search(r"needs about ([\d,.]+) GiB", line).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert predicted > 1000, line


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_stops_before_any_job(work: Path) -> None:
    name = overlay(work, "cuda.yaml", "device: cuda\n")
    line = one_whylab_line(snakemake(work, "--configfile", name, timeout=60))
    assert "device: cuda" in line and "nvidia-smi" in line, line
    assert not (work / "results" / "logs").exists()  # no job ran


def test_device_cuda_is_not_checked_when_jobs_go_to_a_cluster(work: Path) -> None:
    """The login node may lack a GPU: a cluster run plans cuda jobs; and every per-seed claim splits."""
    name = overlay(work, "cuda.yaml", "device: cuda\n")
    done = snakemake(work, "-n", "--executor", "slurm", "--jobs", "1", "--configfile", name)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    split = set(re.findall(r"rule (concept_C\d\d)_seed:", out))
    assert "concept_C08" in split and len(split) > 1, split


def test_the_readme_gpu_cluster_command_splits_every_claims_seeds(work: Path) -> None:
    """README "A cluster": `--configfile config/gpu.yaml --config gpu_partition=...` on the SLURM
    executor gives every claim that measures one seed at a time one job per seed (a --config on
    the command line does not turn per_seed_jobs: auto off)."""
    done = snakemake(
        work, "-n", "--executor", "slurm", "--jobs", "1",
        "--configfile", "config/gpu.yaml", "--config", "gpu_partition=gpu",
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    per_seed = {
        "concept_C" + path.parent.name[1:3]
        for path in (REPO / "src/whylab/concepts").glob("c*/experiment.py")
        if "def measure_seed" in path.read_text(encoding="utf-8")
    }
    assert len(per_seed) >= 8, per_seed
    assert set(re.findall(r"rule (concept_C\d\d)_seed:", out)) == per_seed


def test_per_seed_jobs_auto_splits_only_c08_locally(work: Path) -> None:
    done = snakemake(work, "-n")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert set(re.findall(r"rule (concept_C\d\d)_seed:", out)) == {"concept_C08"}


def test_an_unwritable_results_dir_is_one_line(work: Path) -> None:
    (work / "a_file").write_text("", encoding="utf-8")  # root may write anywhere; nobody writes below a file
    line = one_whylab_line(snakemake(work, "-n", "--config", "results_dir=a_file/results"))
    assert "results_dir" in line and "cannot be written" in line, line


def test_an_empty_corpus_folder_is_one_line(work: Path) -> None:
    (work / "empty").mkdir(exist_ok=True)
    name = overlay(work, "empty.yaml", "corpus: {sources: [{path: empty/, lang: en}]}\n")
    line = one_whylab_line(snakemake(work, "-n", "--configfile", name))
    assert "corpus.sources[0].path" in line and "holds no file" in line, line


def test_an_unknown_claim_id_is_named_with_the_valid_ones() -> None:
    with pytest.raises(InputError) as err:
        check_config({"claims": ["C01", "C99"]}, REPO)
    message = str(err.value)
    assert "'C99'" in message and "C01" in message and "C21" in message, message
    assert "any of the given schemas" not in message


def test_two_config_files_give_the_pages_of_both_laid_over_each_other(tmp_path: Path) -> None:
    """`make run CONFIG="a.yaml b.yaml"`: the closing lines read both files, as Snakemake does."""
    (tmp_path / "a.yaml").write_text("report: {path: out/r.html}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("report: {languages: [ko]}\n", encoding="utf-8")
    config = load_configs([tmp_path / "a.yaml", tmp_path / "b.yaml"], default=REPO / "config/config.yaml")
    assert config["report"]["path"] == "out/r.html" and config["report"]["languages"] == ["ko"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert 'print_report_pages(sys.argv[1:])" $(CONFIG)' in makefile


def test_lm_rules_request_memory_from_the_planner(work: Path) -> None:
    """lm_train's mem_mb follows lm.model: a wider model asks for more."""

    def lm_train_mem(*args: str) -> int:
        done = snakemake(work, "-n", *args, "--", "results/lm/model")
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-3000:]
        block = out[out.index("rule lm_train:") :]
        return int(re.search(r"resources: .*?\bmem_mb=(\d+)", block).group(1))  # type: ignore[union-attr]

    # another model than the default's: the record of a default run says nothing of its jobs
    small = lm_train_mem("--configfile", overlay(work, "small.yaml", "lm: {model: {hidden_size: 256}}\n"))
    wide = lm_train_mem("--configfile", overlay(work, "wide.yaml", "lm: {model: {hidden_size: 1024}}\n"))
    assert 1000 < small < 4000 and wide > small, (small, wide)


def test_a_default_run_asks_for_what_its_jobs_used_in_one(work: Path) -> None:
    """On the default config a job asks for its recorded peak memory x1.5 and its recorded wall
    time x1.25 in whole minutes (workflow/resources/default_run_benchmarks.tsv); another config
    keeps the rules' own sizes."""
    from whylab import cluster_sizes

    record = cluster_sizes.read_benchmarks(REPO / cluster_sizes.RECORD)

    def resources(*args: str) -> dict[str, int]:
        done = snakemake(work, "-n", *args, "--", "results/lm/model")
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-3000:]
        block = out[out.index("rule lm_train:") :]
        found = re.search(r"resources: .*?\bruntime=(\d+), mem_mb=(\d+)", block)
        assert found, block[:2000]
        return {"runtime": int(found.group(1)), "mem_mb": int(found.group(2))}

    used = record["lm_train.tsv"]
    assert resources() == {
        "runtime": cluster_sizes.minutes(used.s),
        "mem_mb": cluster_sizes.mem_mb(used.max_rss_mb),
    }
    other = resources("--configfile", overlay(work, "steps.yaml", "lm: {training: {max_steps: 151}}\n"))
    assert other["runtime"] == 120, other
