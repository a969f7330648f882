# Shared names for every rules file: where results go, how a step is called, what a rule gets.
#
# What a job receives decides when it re-runs, so each one gets only what it reads.
# - settings_json(*sections, seeds=..., torch=...): the rule's params. `seeds` is passed only by
#   rules that repeat over seeds (claim_seeds(claim)) or use one (first_seed()); `device` is
#   RUN_DEVICE for a rule that runs torch on the run's device (torch=True), "cpu" otherwise.
#   With torch=True a rule also takes **torch_resources(), so the GPU request goes with `cuda`.
# - measure_code(claim) / decide_code(claim) / step_code(step): the package's source files a step
#   runs (a claim's experiment.py, or its verdict.py, figures.py and claim.yaml, or a step's
#   module, with every whylab module those import), declared as input: editing them re-runs it.
# - CONCEPT_RESULTS / CONCEPT_FIGURES: each rules file adds the claims it tests (only those in
#   `claims:`), the report collects them; REPORT_EXTRA_INPUTS: other files the report shows.
import ast
import json
import os
import re
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from whylab.config import report_pages

RESULTS = config["results_dir"]
REPORT_HTML = config["report"]["path"]

REPORT_PAGES = report_pages(config)  # language -> page (reports/index.html, index.ko.html)
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
LANGS = config["corpus"]["languages"]
SRC = REPO / "src"

# claim id -> result.json / figures folder; each rules file adds the claims it tests.
CONCEPT_RESULTS = {}
CONCEPT_FIGURES = {}
# other files the report shows (name -> path), e.g. the language model's training summary.
REPORT_EXTRA_INPUTS = {}
# claim id -> how to run it; claims.smk makes its rules (measure or seed jobs, and a decide job)
CLAIM_SPECS = {}
# claim id -> {input name: path, or a function of the seed giving one}: extra inputs of the
# mechanism claims (C03-C11), filled by any rules file (read when the DAG is built; see mechanisms.smk)
MECHANISM_EXTRA_INPUTS = {}


# ---------------------------------------------------------------- which claims this run tests
def claim_wanted(claim_id):
    """`claims: all`, or the claim is in the `claims:` list; the report marks the rest "not tested yet"."""
    return config["claims"] == "all" or claim_id in config["claims"]


# ---------------------------------------------------------------- software: conda env and interpreter
_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


def _torch_build_has_cuda():
    """Whether the installed torch is a CUDA build, read from torch/version.py (torch is not imported)."""
    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    text = version.read_text(encoding="utf-8") if version.is_file() else ""
    return re.search(r"^cuda\b[^=\n]*=\s*['\"]", text, re.M) is not None


def _started_with():
    """The command-line arguments and executor plugin Snakemake was started with, read from
    the caller's frame: the Snakefile is parsed before Snakemake hands the executor to the
    workflow. (None, None) when Snakemake runs from its Python API."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "args_to_api" and "executor_plugin" in frame.f_locals:
            return frame.f_locals.get("args"), frame.f_locals["executor_plugin"]
        frame = frame.f_back
    return None, None


def _resolve_run():
    """(executor, device, dry run) of this run, resolved once by the process that starts it.

    Job processes (a cluster job, a group job) parse this file again on their node: they reuse
    the starting process's values from WHYLAB_EXECUTOR / WHYLAB_DEVICE (envvars below), so a
    job on a GPU node does not turn `auto` into cuda where the run planned cpu, nor split
    claims into other rules than the DAG it belongs to.
    """
    if not workflow.is_main_process and os.environ.get("WHYLAB_DEVICE"):
        return os.environ.get("WHYLAB_EXECUTOR", "local"), os.environ["WHYLAB_DEVICE"], False
    args, plugin = _started_with()
    executor = "local" if plugin is None or plugin.common_settings.local_exec else args.executor
    # auto: CUDA when this machine has an NVIDIA driver and a CUDA build of torch. On a cluster
    # whose login node has no GPU, set device: cuda.
    device = (
        "cuda"
        if config["device"] == "cuda"
        or (config["device"] == "auto" and shutil.which("nvidia-smi") and (_CONDA or _torch_build_has_cuda()))
        else "cpu"
    )
    return executor, device, bool(args is not None and (args.dryrun or args.touch))


# EXECUTOR: local, or the cluster executor jobs are submitted to (slurm, ...); RUN_DEVICE: the
# device of every rule that runs torch on the run's device (the other rules get cpu).
EXECUTOR, RUN_DEVICE, _DRY_RUN = _resolve_run()
ON_CLUSTER = EXECUTOR != "local"
os.environ["WHYLAB_EXECUTOR"] = EXECUTOR
os.environ["WHYLAB_DEVICE"] = RUN_DEVICE

# Before any job, in the process that starts the run: a results_dir that cannot be written, a
# device: cuda without a GPU here (not when jobs go to a cluster: its login node may lack one),
# an LM whose training step is larger than this machine (whylab.preflight; locally only).
if workflow.is_main_process:
    from whylab import preflight

    try:
        preflight.check_writable(RESULTS, "results_dir")
        if not ON_CLUSTER and not _DRY_RUN:
            preflight.check_device(RUN_DEVICE, _CONDA or _torch_build_has_cuda())
        trains_lm = any(claim_wanted(c) for c in ("C12", "C13", "C14", "C15", "C16"))
        if not ON_CLUSTER and trains_lm and not config["lm"].get("pretrained"):
            preflight.check_lm_fits(config, RUN_DEVICE, preflight.lm_train_mem_mb(config))
    except InputError as exc:
        sys.exit(f"whylab: {exc}")

# Environments for --sdm conda: no torch where no step needs it; the ML ones by the run's device.
ENV_DATA = "../envs/data.yaml"  # corpus, tokenizers, report
ENV_ML_CPU = "../envs/ml-cpu.yaml"  # torch (CPU build), ONNX Runtime (CPU)
ENV_ML = "../envs/ml-gpu.yaml" if RUN_DEVICE == "cuda" else ENV_ML_CPU  # rules with torch=True
# Rules call `"$WHYLAB_PYTHON" -m whylab`: the interpreter running Snakemake (its venv; cluster
# jobs re-run this file with it), or with --sdm conda the rule's environment's `python`. Either
# finds this checkout's package through PYTHONPATH (the conda environments do not install it).
# Two variables of this process and its jobs; PATH is left alone.
os.environ["WHYLAB_PYTHON"] = "python" if _CONDA else sys.executable
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(SRC), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SRC))]
)


envvars:
    "WHYLAB_PYTHON",
    "PYTHONPATH",
    "WHYLAB_EXECUTOR",
    "WHYLAB_DEVICE",


# ---------------------------------------------------------------- devices and resources
def torch_resources(**more):
    """Resources for torch on RUN_DEVICE; with CUDA one GPU (SLURM: --gpus=1).

    `gpu_partition` (config) sends those jobs to that SLURM partition.
    """
    if RUN_DEVICE != "cuda":
        return dict(more)
    gpu = {"gpu": 1}
    if config.get("gpu_partition"):
        gpu["slurm_partition"] = config["gpu_partition"]
    return {**gpu, **more}


def cluster_group(name):
    """A job group for short jobs (one cluster job for many; inactive locally); none with GPUs,
    where a group would sum its jobs' GPU requests."""
    return name if RUN_DEVICE == "cpu" else None


def mem_mb(base):
    """Memory (MB) that grows with each retry (the SLURM profile sets `retries`)."""
    return lambda wildcards, attempt: base * attempt


def lm_copies_mem_mb(copies):
    """mem_mb (attempt 1) of an LM rule holding `copies` FP32 copies of lm.model at once
    (whylab.preflight: x1.5 and ~1 GB for the process); 4 GB for lm.pretrained, not sized here."""
    from whylab import preflight

    return 4000 if config["lm"].get("pretrained") else preflight.lm_copies_mem_mb(config, copies)


def real_scale_mem_mb():
    """mem_mb (attempt 1) of the real-scale step, from its models' shapes (whylab.preflight)."""
    from whylab import preflight

    return preflight.real_scale_mem_mb(config)


def runtime(base):
    """Minutes that grow with each retry, as mem_mb does: a job killed at its time limit gets more."""
    return lambda wildcards, attempt: base * attempt


def _default_run_record():
    """The default run's benchmark figures (whylab.cluster_sizes), or None where they say nothing
    of this run's jobs: another config, or jobs on a GPU."""
    from whylab import cluster_sizes

    default = check_config(
        load_yaml(os.path.relpath(REPO / "config/config.yaml")),
        base_dir=Path.cwd(),
        schema_file=REPO / "workflow/schemas/config.schema.yaml",
    )
    same = cluster_sizes.work_settings(config) == cluster_sizes.work_settings(default)
    path = REPO / cluster_sizes.RECORD
    return cluster_sizes.read_benchmarks(path) if same and RUN_DEVICE == "cpu" and path.is_file() else None


DEFAULT_RUN_RECORD = _default_run_record()


def sized(benchmark, minutes, mb):
    """A rule's mem_mb and runtime: what its jobs (benchmark files matching `benchmark`, e.g.
    "tokenizers_*.tsv") used in the default run, with margins, when this run is one; else
    `minutes` and `mb`. Both grow with each retry."""
    from whylab import cluster_sizes

    minutes, mb = cluster_sizes.sizes(DEFAULT_RUN_RECORD, benchmark, minutes, mb)
    return {"mem_mb": mem_mb(mb), "runtime": runtime(minutes)}


# ---------------------------------------------------------------- settings (params)
def first_seed():
    """The seeds of a step that uses one: only the first, so adding seeds does not re-run it."""
    return config["seeds"][:1]


def claim_seeds(section):
    """A claim's seeds: its own section's `seeds`, else the run-wide list."""
    return list(section.get("seeds") or config["seeds"])


def settings_json(*sections, seeds=None, torch=False, **extra):
    """JSON of config sections merged, plus `seeds` (when given) and the rule's device.

    Used as a rule's params, so a rule re-runs exactly when its own settings change. A
    section's own `seeds` key is left out here; pass seeds=claim_seeds(section) instead.
    """
    merged = {"device": RUN_DEVICE if torch else "cpu"}
    for section in sections:
        merged.update({k: v for k, v in section.items() if k != "seeds"})
    merged.update(extra)
    if seeds is not None:
        merged["seeds"] = list(seeds)
    return json.dumps(merged, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------- code as input (honest triggers)
from whylab.code_inputs import CodeInputs

CODE = CodeInputs(SRC)


def _module_path(module):
    return CODE.path(module)


def module_sources(module):
    """The source file of `module` and of every whylab module it imports, directly or not."""
    here = Path.cwd()
    return [str(p.relative_to(here)) if p.is_relative_to(here) else str(p) for p in CODE.closure(module)]


_CLAIM_MODULES = {}


def _claim_modules():
    """whylab.concepts.REGISTRY, read from the source (importing the package would import more)."""
    if not _CLAIM_MODULES:
        tree = ast.parse(_module_path("whylab.concepts").read_text(encoding="utf-8"))
        for node in tree.body:
            target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
            if isinstance(target, ast.Name) and target.id == "REGISTRY":
                _CLAIM_MODULES.update(ast.literal_eval(node.value))
    return _CLAIM_MODULES


def registered_claims(candidates):
    """The claims of `candidates` that have a module (a claim not written yet is absent)."""
    return [c for c in candidates if c in _claim_modules()]


def _package_dir(claim_id):
    return _module_path(_claim_modules()[claim_id]).parent


def measure_code(claim_id):
    """What a claim package's measure and seed jobs run: experiment.py and what it imports."""
    package = _claim_modules()[claim_id]
    return sorted({*module_sources(f"{package}.experiment"), *module_sources("whylab.concepts.measuring")})


def _relative(path):
    here = Path.cwd()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def decide_code(claim_id):
    """What a claim package's decide job runs: verdict.py, figures.py, what they import, claim.yaml."""
    package = _claim_modules()[claim_id]
    sources = {
        *module_sources(f"{package}.verdict"),
        *module_sources(f"{package}.figures"),
        *module_sources("whylab.concepts.deciding"),
    }
    return sorted(sources | {_relative(_package_dir(claim_id) / "claim.yaml")})


def decision_settings(claim_id):
    """The config keys only the claim's decision reads (claim.yaml): they re-run no measurement."""
    from whylab.files import parse_yaml

    spec = parse_yaml((_package_dir(claim_id) / "claim.yaml").read_text(encoding="utf-8"))
    return list(spec.get("decision_settings") or [])


def step_code(step):
    """Sources of a pipeline step of whylab.cli.STEPS ("corpus", "lm_train", ...)."""
    from whylab.cli import STEPS

    return module_sources(STEPS[step].partition(":")[0])


# every text of the report in every language: editing a catalogue re-renders the report
MESSAGE_CATALOGUES = sorted(
    str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)
    for p in (SRC / "whylab" / "messages").glob("*/*.yaml")
)
# the translations of the texts figures and tables are drawn with (whylab.drawn_texts): editing
# one redraws the figures (decide jobs, seconds each) and re-renders the report's tables
DRAWN_TRANSLATIONS = sorted(
    str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)
    for p in (SRC / "whylab" / "messages").glob("*/drawn/*.yaml")
)


def _top_level_names(path):
    """The names a module defines at its top: a def, an assignment or an import."""
    defined = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update(a.asname or a.name for a in node.names)
    return defined


def measures_seeds(claim_id):
    """A claim package's experiment.py has measure_seed(): it can run one job per seed."""
    return "measure_seed" in _top_level_names(_package_dir(claim_id) / "experiment.py")


def measures_whole(claim_id):
    """A claim package's experiment.py has measure(): a measure job besides any seed jobs."""
    return "measure" in _top_level_names(_package_dir(claim_id) / "experiment.py")


def per_seed_jobs(claim_id):
    """One job per seed for this claim (its decide job reads their files): it is in
    `per_seed_jobs` and has measure_seed.

    auto: every such claim when jobs are submitted to a cluster executor, else only C08.
    """
    wanted = config["per_seed_jobs"]
    if wanted == "auto":
        wanted = "all" if ON_CLUSTER else ["C08"]
    return (wanted == "all" or claim_id in wanted) and measures_seeds(claim_id)


# ---------------------------------------------------------------- the corpus rule's inputs
def corpus_source_files():
    """The user's corpus files (paths, folders and globs expanded; a local datasets folder's files)."""
    from whylab.corpus import expand_path
    from whylab.errors import InputError

    files = []
    for source in config["corpus"]["sources"]:
        if "path" in source:
            try:
                files += expand_path(source["path"], Path.cwd())
            except InputError as exc:  # a folder emptied since the config was checked: one line
                sys.exit(f"whylab: {exc}")
        elif "dataset" in source and Path(source["dataset"]).exists():
            local = Path(source["dataset"])
            files += [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    # inside the project, relative to it: moving the folder does not make every input look new
    here = Path.cwd().resolve()
    return sorted(
        {str(p.resolve().relative_to(here)) if p.resolve().is_relative_to(here) else str(p) for p in files}
    )


def corpus_reads_hub():
    """A source names a hub dataset: the corpus step downloads it."""
    return any("dataset" in s and not Path(s["dataset"]).exists() for s in config["corpus"]["sources"])


# ---------------------------------------------------------------- paths
def tokenizer_scopes():
    scope = config["tokenizers"]["scope"]
    return (LANGS if scope in ("per_language", "both") else []) + (
        ["joint"] if scope in ("joint", "both") else []
    )


def tokenizer_file(scope, algorithm, vocab_size):
    return f"{RESULTS}/tokenizers/{scope}/{algorithm}-{vocab_size}/tokenizer.json"


def concept_dir(claim_id):
    return f"{RESULTS}/concepts/{claim_id}"


def concept_result(claim_id):
    return f"{concept_dir(claim_id)}/result.json"


def concept_figures(claim_id):
    return f"{concept_dir(claim_id)}/figures"


def concept_seed_file(claim_id, seed):
    return f"{concept_dir(claim_id)}/seeds/{seed}.json"


def concept_measurements(claim_id):
    return f"{concept_dir(claim_id)}/measurements.json"


class FigureCaptions:
    """A claim's figure captions, read from its result.json when `snakemake --report` renders them.

    A params value for workflow/report/figure.rst; its repr (what Snakemake's params trigger
    compares) is the path alone, so it never re-runs anything.
    """

    def __init__(self, result):
        self.result = result

    def __repr__(self):
        return f"FigureCaptions({self.result!r})"

    def get(self, name):
        try:
            figures = json.loads(Path(self.result).read_text(encoding="utf-8"))["figures"]
        except (OSError, ValueError, KeyError):
            return ""
        for fig in figures:
            if Path(fig["path"]).stem == name:
                return f"**{_rst_escape(fig['title'])}.** {_rst_escape(fig['caption'])}"
        return ""


def _rst_escape(text):
    """Text as reStructuredText reads it literally: `|value|` would be a substitution, `*x*`
    emphasis, `` `x` `` a role (C16's caption has |value|)."""
    return re.sub(r"([\\`*_|\[\]<>])", r"\\\1", str(text))


def claim_outputs(claim_id):
    """The result.json and figures folder of a claim rule, registered for `snakemake --report`."""
    return {
        "result": concept_result(claim_id),
        "figures": report(
            directory(concept_figures(claim_id)),
            patterns=["{name,[^/]+}.png"],  # the English figures; figures/<lang>/ holds the others
            caption="../report/figure.rst",
            category="Claims",
            subcategory=claim_id,
            labels={"claim": claim_id, "figure": "{name}"},
        ),
    }


def register_claim(claim_id):
    CONCEPT_RESULTS[claim_id] = concept_result(claim_id)
    CONCEPT_FIGURES[claim_id] = concept_figures(claim_id)


def claim_docstring(claim_id):
    from whylab.claims import BY_ID

    claim = BY_ID[claim_id]
    return f"{claim_id} ({claim.topic}): {claim.statement}"


# ---------------------------------------------------------------- checks of cross-section settings
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
