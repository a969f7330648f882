# whylab: the LLM study notes (../shared/seed) turned into experiments, one DAG from corpus to report.
#   snakemake --cores N                                    # default config: CPU-sized, minutes
#   snakemake --cores N --configfile config/gpu.yaml       # one GPU, bigger
#   snakemake --profile <your cluster profile> --workflow-profile workflow/profiles/slurm
#                                                          # a SLURM cluster (README: "A cluster")
#   snakemake --cores N --sdm conda                        # each rule in its environment (workflow/envs)
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the package, installed or not
from whylab.config import check_config, load_yaml
from whylab.errors import InputError

min_version("9.0")

# A YAML syntax error in the default config: one line with the file, line and column.
try:
    load_yaml(os.path.relpath(Path(workflow.basedir) / "config/config.yaml"))
except InputError as exc:
    sys.exit(f"whylab: {exc}")


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


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/tokenizers.smk"
include: "workflow/rules/concepts.smk"
include: "workflow/rules/bench_baseline.smk"
include: "workflow/rules/mechanisms.smk"
include: "workflow/rules/memory.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/real_scale.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/report.smk"


rule all:
    """The whole DAG: every claim in `claims:` and the report (reports/index.html, index.ko.html)."""
    default_target: True
    input:
        list(REPORT_PAGES.values()),
