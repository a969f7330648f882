# C01-C02: tokenization claims, measured on every trained tokenizer.


def all_tokenizer_files():
    return [
        tokenizer_file(scope, algorithm, vocab)
        for scope in tokenizer_scopes()
        for algorithm in config["tokenizers"]["algorithms"]
        for vocab in config["tokenizers"]["vocab_sizes"]
    ]


def tokenization_settings(claim_id):
    return settings_json(
        config["concepts"][claim_id],
        tokenizers=config["tokenizers"],
        tokenizer_scopes=tokenizer_scopes(),
        languages=LANGS,
    )


for _claim in ("C01", "C02"):
    CONCEPT_RESULTS[_claim] = concept_result(_claim)

    rule:
        name:
            f"concept_{_claim}"
        input:
            tokenizers=all_tokenizer_files(),
            corpus=expand(f"{RESULTS}/corpus/{{lang}}/{{split}}.txt", lang=LANGS, split=["train", "valid"]),
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
            mem_mb=3000,
            runtime=15,
        params:
            claim=_claim,
            settings=tokenization_settings(_claim),
            # the folders holding the inputs: <tokenizers>/<scope>/<name>/tokenizer.json, <corpus>/<lang>/<split>.txt
            tokenizers=lambda w, input: Path(input.tokenizers[0]).parents[2],
            corpus=lambda w, input: Path(input.corpus[0]).parents[1],
        shell:
            "python -m whylab {params.claim} --settings {params.settings:q}"
            " --input tokenizers={params.tokenizers} --input corpus={params.corpus}"
            " --output result={output.result} --threads {threads} > {log} 2>&1"
