# The learned baseline bench LM (standard bench model, mechanisms.model + mechanisms.train) that
# C03, C04 and C06 compare against: trained ONCE per seed as its own job and loaded by each of them
# (safetensors weights + a JSON history; never pickle). Included before mechanisms.smk.

BASELINE_CLAIMS = ("C03", "C04", "C06")
BASELINE_DIR = f"{RESULTS}/mechanisms/baseline"

# claim -> {input name: path, or a function of a seed giving a path}; the mechanism rules add these
# to a claim's inputs (mechanism_extra_inputs below). Other rules files may add their own entries.
try:
    MECHANISM_EXTRA_INPUTS
except NameError:
    MECHANISM_EXTRA_INPUTS = {}


def claim_seeds(claim):
    """A claim's seeds: its own `seeds` list in its mechanisms section, else the run's seeds."""
    return [int(s) for s in config["mechanisms"].get(claim, {}).get("seeds", config["seeds"])]


def baseline_weights(seed):
    return f"{BASELINE_DIR}/seed{seed}/model.safetensors"


def baseline_history(seed):
    return f"{BASELINE_DIR}/seed{seed}/history.json"


def mechanism_extra_inputs(claim, seed=None):
    """Extra named inputs of a claim's rule. Functions of a seed are called for ``seed`` (a per-seed
    job: name as given) or, without one, for every seed of the claim (name_seed<k>)."""
    out = {}
    for name, value in MECHANISM_EXTRA_INPUTS.get(claim, {}).items():
        if not callable(value):
            out[name] = value
        elif seed is not None:
            out[name] = value(seed)
        else:
            out.update({f"{name}_seed{k}": value(k) for k in claim_seeds(claim)})
    return out


for _claim in BASELINE_CLAIMS:
    MECHANISM_EXTRA_INPUTS.setdefault(_claim, {}).update(
        baseline=baseline_weights, baseline_history=baseline_history
    )


def _baseline_settings(wildcards):
    mech = config["mechanisms"]
    return json.dumps(
        {
            "seed": int(wildcards.seed),
            "device": config["device"],
            "model": mech["model"],
            "train": mech["train"],
        },
        sort_keys=True,
    )


def _baseline_inputs(wildcards):
    # MECHANISM_CORPUS / MECHANISM_TOKENIZER come from mechanisms.smk, included after this file
    return {**MECHANISM_CORPUS, "tokenizer": MECHANISM_TOKENIZER}


rule bench_baseline:
    input:
        unpack(_baseline_inputs),
    output:
        weights=f"{BASELINE_DIR}/seed{{seed}}/model.safetensors",
        history=f"{BASELINE_DIR}/seed{{seed}}/history.json",
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
        settings=_baseline_settings,
        inputs=lambda w, input: " ".join(f"--input {name}={path}" for name, path in input.items()),
    shell:
        "python -m whylab bench_baseline --settings {params.settings:q} {params.inputs}"
        " --output weights={output.weights} --output history={output.history} --threads {threads} > {log} 2>&1"
