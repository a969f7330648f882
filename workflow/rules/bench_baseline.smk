# The learned baseline bench LM (standard bench model, mechanisms.model + mechanisms.train) that
# C03, C04 and C06 compare against: trained ONCE per seed as its own job and loaded by each of them
# (safetensors weights + a JSON history; never pickle). Included before mechanisms.smk.
from whylab.bench.workflow import expand_extra_inputs, rule_settings

BASELINE_CLAIMS = ("C03", "C04", "C06")
BASELINE_DIR = f"{RESULTS}/mechanisms/baseline"
BASELINE_WEIGHTS = f"{BASELINE_DIR}/seed{{seed}}/model.safetensors"
BASELINE_HISTORY = f"{BASELINE_DIR}/seed{{seed}}/history.json"

# claim -> {input name: path, or a function of a seed giving a path}; the mechanism rules add these
# to a claim's inputs through mechanism_extra_inputs(claim) (all seeds of the claim, name_seed<k>)
# or mechanism_extra_inputs(claim, seed) (a per-seed job). Other rules files may add entries.
MECHANISM_EXTRA_INPUTS = globals().get("MECHANISM_EXTRA_INPUTS", {})
# a claim's seeds: its own `seeds` list in its mechanisms section, else the run's seeds
claim_seeds = lambda claim: [
    int(s) for s in config["mechanisms"].get(claim, {}).get("seeds", config["seeds"])
]
mechanism_extra_inputs = lambda claim, seed=None: expand_extra_inputs(
    MECHANISM_EXTRA_INPUTS.get(claim, {}), claim_seeds(claim), seed
)

for _claim in BASELINE_CLAIMS:
    MECHANISM_EXTRA_INPUTS.setdefault(_claim, {}).update(
        baseline=lambda seed: BASELINE_WEIGHTS.format(seed=seed),
        baseline_history=lambda seed: BASELINE_HISTORY.format(seed=seed),
    )


rule bench_baseline:
    input:
        # MECHANISM_CORPUS / MECHANISM_TOKENIZER come from mechanisms.smk, included after this file
        unpack(lambda w: {**MECHANISM_CORPUS, "tokenizer": MECHANISM_TOKENIZER}),
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
        CONDA_ENV
    threads: 1
    resources:
        **gpu_resources(),
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: rule_settings(config["mechanisms"], int(w.seed), config["device"]),
        inputs=lambda w, input: " ".join(f"--input {name}={path}" for name, path in input.items()),
    shell:
        "python -m whylab bench_baseline --settings {params.settings:q} {params.inputs}"
        " --output weights={output.weights} --output history={output.history} --threads {threads} > {log} 2>&1"
