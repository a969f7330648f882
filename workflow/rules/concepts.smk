# C01-C02: tokenization claims, measured on every trained tokenizer (CPU, no seeds, seconds).


def all_tokenizer_files():
    return [
        tokenizer_file(scope, algorithm, vocab)
        for scope in tokenizer_scopes()
        for algorithm in config["tokenizers"]["algorithms"]
        for vocab in config["tokenizers"]["vocab_sizes"]
    ]


def _tokenization_flags(wildcards, input):
    """The folders holding the inputs: <tokenizers>/<scope>/<name>/tokenizer.json, <corpus>/<lang>/<split>.txt."""
    return (
        f"--input tokenizers={Path(input.tokenizers[0]).parents[2]}"
        f" --input corpus={Path(input.corpus[0]).parents[1]}"
    )


# claims.smk makes the rules (a claim package: a measure job and a decide job)
for _claim in ("C01", "C02"):
    if not claim_wanted(_claim):
        continue
    CLAIM_SPECS[_claim] = {
        "settings": {
            **config["concepts"][_claim],
            "tokenizers": config["tokenizers"],
            "tokenizer_scopes": tokenizer_scopes(),
            "languages": LANGS,
        },
        "inputs": {
            "tokenizers": all_tokenizer_files(),
            "corpus": expand(
                f"{RESULTS}/corpus/{{lang}}/{{split}}.txt", lang=LANGS, split=["train", "valid"]
            ),
        },
        "input_flags": _tokenization_flags,
        "group": "tokenization",
        "extra_inputs": dict,
        "seeds": None,
        "torch": False,
        "threads": 1,
        "mem_mb": 3000,
        "runtime": 15,
    }
