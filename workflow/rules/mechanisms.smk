# C03-C11: the transformer-mechanism claims, each an experiment on the hand-written bench model.
# One rule per claim that has a module in whylab.concepts.REGISTRY (a claim not written yet is absent).
from whylab.concepts import REGISTRY as _CONCEPT_REGISTRY

MECHANISM_CLAIMS = [
    c for c in ("C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10", "C11") if c in _CONCEPT_REGISTRY
]
MECH = config["mechanisms"]


def _mechanism_tokenizer():
    """The tokenizer.json the experiments use; a one-line error if the tokenizers rule does not build it."""
    tok = MECH["tokenizer"]
    built = {
        "scope": tokenizer_scopes(),
        "algorithm": config["tokenizers"]["algorithms"],
        "vocab_size": config["tokenizers"]["vocab_sizes"],
    }
    for key, options in built.items():
        if tok[key] not in options:
            sys.exit(
                f"whylab: config error: mechanisms.tokenizer.{key}: {tok[key]!r} is not built by the "
                f"tokenizers rule (it builds {', '.join(map(str, options))}); pick one of those"
            )
    return tokenizer_file(tok["scope"], tok["algorithm"], tok["vocab_size"])


MECHANISM_TOKENIZER = _mechanism_tokenizer()
# the corpus of the tokenizer's scope: every language for a joint tokenizer, else that language
MECHANISM_LANGS = LANGS if MECH["tokenizer"]["scope"] == "joint" else [MECH["tokenizer"]["scope"]]
MECHANISM_CORPUS = {
    f"{split}_{lang}": f"{RESULTS}/corpus/{lang}/{split}.txt"
    for split in ("train", "valid")
    for lang in MECHANISM_LANGS
}


for _claim in MECHANISM_CLAIMS:
    CONCEPT_RESULTS[_claim] = concept_result(_claim)

    rule:
        name:
            f"concept_{_claim}"
        input:
            **MECHANISM_CORPUS,
            **mechanism_extra_inputs(_claim),  # e.g. the shared baseline LM (bench_baseline.smk)
            tokenizer=MECHANISM_TOKENIZER,
        output:
            result=report(
                concept_result(_claim),
                caption="../report/concept.rst",
                category="Concepts",
                labels={"claim": _claim},
            ),
        log:
            f"{LOGS}/concept_{_claim}.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        resources:
            **gpu_resources(),  # the bench model trains on CUDA when the run's device is a GPU
            mem_mb=2000,
            runtime=20,
        params:
            claim=_claim,
            settings=settings_json(
                MECH.get(_claim, {}), model=MECH["model"], train=MECH["train"], tokenizer=MECH["tokenizer"]
            ),
            inputs=lambda w, input: " ".join(f"--input {name}={path}" for name, path in input.items()),
        shell:
            "python -m whylab {params.claim} --settings {params.settings:q} {params.inputs}"
            " --output result={output.result} --threads {threads} > {log} 2>&1"
