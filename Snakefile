# whylab: the LLM study notes (../shared/seed) turned into experiments, one DAG from corpus to report.
#   snakemake --cores N                                    # default config: CPU-sized, minutes
#   snakemake --cores N --configfile config/gpu.yaml       # one GPU, bigger
#   snakemake --workflow-profile workflow/profiles/slurm   # a SLURM cluster
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the package, installed or not
from whylab.config import check_config
from whylab.errors import InputError

min_version("9.0")


configfile: "config/config.yaml"


# One line and no job at all when the config is bad (unknown key, wrong type, missing path).
try:
    _checked = check_config(
        config,
        base_dir=Path.cwd(),
        schema_file=Path(workflow.basedir) / "workflow/schemas/config.schema.yaml",
    )
except InputError as exc:
    sys.exit(f"whylab: {exc}")
config.clear()
config.update(_checked)
validate(config, "workflow/schemas/config.schema.yaml")


# Rules call `python -m whylab ...`: the interpreter running Snakemake (its venv or conda env)
# comes first on PATH, locally and in cluster jobs, which re-run this file; with --use-conda the
# rule's environment comes first instead, and finds the package through PYTHONPATH.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ["PYTHONPATH"] = str(Path(workflow.basedir) / "src")


envvars:
    "PATH",
    "PYTHONPATH",


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/tokenizers.smk"
include: "workflow/rules/concepts.smk"
include: "workflow/rules/bench_baseline.smk"
include: "workflow/rules/mechanisms.smk"
include: "workflow/rules/memory.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        REPORT_HTML,
