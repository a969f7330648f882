# Shared names for every rules file: where results go, how a step is called.
import json
import sys
from pathlib import Path

RESULTS = config["results_dir"]
REPORT_HTML = config["report"]["path"]
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
LANGS = config["corpus"]["languages"]
# With --use-conda, every rule runs in this environment; without it, in the one running Snakemake.
CONDA_ENV = "../envs/whylab.yaml"
# Deprecated spelling of the step command; rules write `python -m whylab` (snakemake --lint).
WHYLAB = "python -m whylab"

# claim id -> result.json; each rules file adds the claims it tests, the report collects them.
CONCEPT_RESULTS = {}
# other files the report shows (name -> path), e.g. the language model's training summary.
REPORT_EXTRA_INPUTS = {}


def settings_json(*sections, **extra):
    """JSON of config sections merged, plus the run-wide seeds and device.

    Used as a rule's params, so a rule re-runs exactly when its own settings change.
    """
    merged = {"seeds": config["seeds"], "device": config["device"]}
    for section in sections:
        merged.update(section)
    merged.update(extra)
    return json.dumps(merged, sort_keys=True, ensure_ascii=False)


def tokenizer_scopes():
    scope = config["tokenizers"]["scope"]
    return (LANGS if scope in ("per_language", "both") else []) + (
        ["joint"] if scope in ("joint", "both") else []
    )


def tokenizer_file(scope, algorithm, vocab_size):
    return f"{RESULTS}/tokenizers/{scope}/{algorithm}-{vocab_size}/tokenizer.json"


def concept_result(claim_id):
    return f"{RESULTS}/concepts/{claim_id}/result.json"
