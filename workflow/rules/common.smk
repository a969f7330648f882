# Shared names for every rules file: where results go, how a step is called.
import json
import shutil
import sys
from pathlib import Path

RESULTS = config["results_dir"]
REPORT_HTML = config["report"]["path"]
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
LANGS = config["corpus"]["languages"]
# With --use-conda, every rule runs in this environment; without it, in the one running Snakemake.
CONDA_ENV = "../envs/whylab.yaml"

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


def gpu_resources():
    """``{"gpu": 1}`` for a rule that runs torch on CUDA, so SLURM gives its job a GPU (--gpus=1).

    device: cuda asks for one; auto asks when this machine has an NVIDIA driver (checked
    by the driver's nvidia-smi, without importing torch, which would slow every parse). On a cluster whose login node has
    no GPU, set device: cuda.
    """
    on_gpu = config["device"] == "cuda" or (
        config["device"] == "auto" and shutil.which("nvidia-smi") is not None
    )
    return {"gpu": 1} if on_gpu else {}


def tokenizer_scopes():
    scope = config["tokenizers"]["scope"]
    return (LANGS if scope in ("per_language", "both") else []) + (
        ["joint"] if scope in ("joint", "both") else []
    )


def tokenizer_file(scope, algorithm, vocab_size):
    return f"{RESULTS}/tokenizers/{scope}/{algorithm}-{vocab_size}/tokenizer.json"


def concept_result(claim_id):
    return f"{RESULTS}/concepts/{claim_id}/result.json"


def lm_tokenizer_file():
    """The joint tokenizer.json the LM uses; a one-line error if the tokenizers rule does not build it."""
    tok = config["lm"]["tokenizer"]
    if "joint" not in tokenizer_scopes():
        sys.exit(
            "whylab: config error: lm.tokenizer needs the joint tokenizer, but tokenizers.scope "
            f"is {config['tokenizers']['scope']!r}; use joint or both"
        )
    for key, options in (
        ("algorithm", config["tokenizers"]["algorithms"]),
        ("vocab_size", config["tokenizers"]["vocab_sizes"]),
    ):
        if tok[key] not in options:
            sys.exit(
                f"whylab: config error: lm.tokenizer.{key}: {tok[key]!r} is not built by the "
                f"tokenizers rule (it builds {', '.join(map(str, options))}); pick one of those"
            )
    return tokenizer_file("joint", tok["algorithm"], tok["vocab_size"])


def lm_train_languages():
    missing = [lang for lang in config["lm"]["train_languages"] if lang not in LANGS]
    if missing:
        sys.exit(
            f"whylab: config error: lm.train_languages: {', '.join(missing)} not in "
            f"corpus.languages ({', '.join(LANGS)})"
        )
    return config["lm"]["train_languages"]
