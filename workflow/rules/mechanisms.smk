# C03-C11: the transformer-mechanism claims, each an experiment on the hand-written bench model.
# One spec per claim that has a module in whylab.concepts.REGISTRY (a claim not written yet is
# absent); claims.smk makes the rules: measure jobs (one per seed where split) and a decide job.
#
# Extra inputs of a claim (e.g. a shared baseline model per seed, from its own rules file):
#   MECHANISM_EXTRA_INPUTS["C03"] = {"baseline": lambda seed: f"{RESULTS}/mechanisms/baseline/seed{seed}/model.safetensors",
#                                    "table": f"{RESULTS}/some/file.json"}
# A path reaches the step as --input table=PATH; a function of the seed as one input per seed,
# --input baseline_<seed>=PATH (a per-seed job gets only its own seed's). The dict is read when
# the DAG is built, so the file that fills it may be included before or after this one.

MECHANISM_CLAIMS = registered_claims(["C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10", "C11"])
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
    if not claim_wanted(_claim):
        continue
    CLAIM_SPECS[_claim] = {
        "settings": {
            **MECH.get(_claim, {}),
            "model": MECH["model"],
            "train": MECH["train"],
            "tokenizer": MECH["tokenizer"],
        },
        "inputs": {**MECHANISM_CORPUS, "tokenizer": MECHANISM_TOKENIZER},
        "extra_inputs": lambda claim=_claim: MECHANISM_EXTRA_INPUTS.get(claim, {}),
        "seeds": claim_seeds(MECH.get(_claim, {})),
        "torch": True,  # the bench model trains on CUDA when the run's device is a GPU
        "threads": 1,
        "mem_mb": 2000,
        "runtime": 20,
    }
