# whylab: the LLM study notes (../shared/seed) turned into experiments, one DAG from corpus to report.
# The workflow is workflow/Snakefile (the layout the Snakemake workflow catalog reads); this file lets
# every command run from the repository root:
#   snakemake --cores N                                    # default config: CPU-sized, minutes
#   snakemake --cores N --configfile config/gpu.yaml       # one GPU, bigger
#   snakemake --profile <your cluster profile> --workflow-profile workflow/profiles/slurm
#                                                          # a SLURM cluster (README: "A cluster")
#   snakemake --cores N --sdm conda                        # each rule in its environment (workflow/envs)
#
# Snakemake's `include:` keeps the including file's default target (none here), so the include is
# written as the call it stands for, with the included workflow's default target (rule all) kept.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
