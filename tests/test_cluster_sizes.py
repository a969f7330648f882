"""Sizes of cluster jobs from a default run's benchmark files (whylab.cluster_sizes)."""

from __future__ import annotations

from pathlib import Path

from whylab import cluster_sizes as cs

COLUMNS = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def bench(folder: Path, name: str, s: float, rss: float) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(
        f"{COLUMNS}\n{s}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{s / 2}\n", encoding="utf-8"
    )


def test_minutes_and_memory_have_their_margins_and_floors() -> None:
    assert cs.minutes(1) == 1 and cs.minutes(48) == 1 and cs.minutes(49) == 2
    assert cs.minutes(131) == 3  # 164 s
    assert cs.mem_mb(100) == cs.MIN_MEM_MB and cs.mem_mb(3458) == 5200


def test_a_pattern_takes_the_largest_of_its_files_and_the_rule_keeps_its_own_without_one() -> None:
    record = {
        "concept_C08_seed0.tsv": cs.Measured(17, 370, 9),
        "concept_C08_seed1.tsv": cs.Measured(19, 360, 9),
        "lm_train.tsv": cs.Measured(89, 618, 30),
    }
    found = cs.recorded(record, "concept_C08_seed*.tsv")
    assert found == cs.Measured(19, 370, 9)
    assert cs.sizes(record, "concept_C08_seed*.tsv", 20, 2000) == (1, 600)
    assert cs.sizes(record, "concept_C09_measure.tsv", 20, 2000) == (20, 2000)
    assert cs.sizes(None, "lm_train.tsv", 120, 1201) == (120, 1201)


def test_the_settings_that_change_no_work_are_left_out() -> None:
    a = {"results_dir": "r1", "claims": ["C01"], "report": {"title": "x"}, "lm": {"steps": 1}}
    b = {"results_dir": "r2", "claims": ["C02"], "report": {"title": "y"}, "lm": {"steps": 1}}
    assert cs.work_settings(a) == cs.work_settings(b)
    assert cs.work_settings(a) != cs.work_settings({**b, "lm": {"steps": 2}})


def test_the_record_written_from_a_folder_reads_back(tmp_path: Path) -> None:
    folder = tmp_path / "benchmarks"
    bench(folder, "lm_train.tsv", 89.2, 617.9)
    bench(folder, "tokenizers_en.tsv", 7.6, 320.7)
    text = cs.gather(
        folder, "a header\nof two lines", {"snakemake-process": "7.48\t0:00:07\t167.16\t\t\t\t\t\t\t1.77"}
    )
    assert text.startswith("# a header\n# of two lines\njob\ts\t")
    out = tmp_path / "record.tsv"
    out.write_text(text, encoding="utf-8")
    back = cs.read_benchmarks(out)
    assert back["lm_train.tsv"] == cs.Measured(89.2, 617.9, 44.6)
    assert back["snakemake-process"].max_rss_mb == 167.16
    assert cs.read_benchmarks(folder)["tokenizers_en.tsv"].s == 7.6


def test_the_recorded_default_run_covers_every_rule_that_sizes_from_it() -> None:
    """Each `sized("<pattern>", ...)` of workflow/rules/ finds its jobs in the record."""
    import re

    repo = Path(__file__).resolve().parents[1]
    record = cs.read_benchmarks(repo / cs.RECORD)
    patterns = set()
    for rules in (repo / "workflow/rules").glob("*.smk"):
        patterns |= set(re.findall(r'sized\(f?"([^"]+)"', rules.read_text(encoding="utf-8")))
    claims = [f"C{i:02d}" for i in range(1, 22)]
    for pattern in sorted(patterns):
        names = [pattern.replace("{_claim}", c) for c in claims] if "{_claim}" in pattern else [pattern]
        hits = [n for n in names if cs.recorded(record, n) is not None]
        assert hits, pattern
