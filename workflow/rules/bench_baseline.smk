# The learned baseline bench LM (standard bench model, mechanisms.model + mechanisms.train) that
# C03, C04 and C06 compare against: trained ONCE per seed as its own job and loaded by each of them
# (safetensors weights + a JSON history; never pickle). It reaches a claim through the
# MECHANISM_EXTRA_INPUTS hook of mechanisms.smk as --input baseline_<seed>=... and
# --input baseline_history_<seed>=... (whylab.bench.lab.baseline_inputs reads them).
from whylab.bench.workflow import rule_settings

BASELINE_CLAIMS = ("C03", "C04", "C06")
BASELINE_DIR = f"{RESULTS}/mechanisms/baseline"
BASELINE_WEIGHTS = f"{BASELINE_DIR}/seed{{seed}}/model.safetensors"
BASELINE_HISTORY = f"{BASELINE_DIR}/seed{{seed}}/history.json"

for _claim in BASELINE_CLAIMS:
    MECHANISM_EXTRA_INPUTS.setdefault(_claim, {}).update(
        baseline=lambda seed: BASELINE_WEIGHTS.format(seed=seed),
        baseline_history=lambda seed: BASELINE_HISTORY.format(seed=seed),
    )


rule bench_baseline:
    """The standard bench LM of one seed, trained once and shared by C03, C04 and C06."""
    input:
        # MECHANISM_CORPUS / MECHANISM_TOKENIZER come from mechanisms.smk, included after this file
        unpack(lambda w: {**MECHANISM_CORPUS, "tokenizer": MECHANISM_TOKENIZER}),
        code=step_code("bench_baseline"),
    output:
        weights=BASELINE_WEIGHTS,
        history=BASELINE_HISTORY,
    log:
        f"{LOGS}/bench_baseline_seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/bench_baseline_seed{{seed}}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    conda:
        ENV_ML
    threads: 1
    resources:
        **torch_resources(),
        **sized("bench_baseline_seed*.tsv", 10, 2000),
    params:
        settings=lambda w: rule_settings(config["mechanisms"], int(w.seed), RUN_DEVICE),
        inputs=lambda w, input: " ".join(
            f"--input {name}={path}" for name, path in input.items() if name != "code"
        ),
    shell:
        '"$WHYLAB_PYTHON" -m whylab bench_baseline --settings {params.settings:q} {params.inputs}'
        " --output weights={output.weights} --output history={output.history} --threads {threads} > {log} 2>&1"
