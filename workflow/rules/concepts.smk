# C01-C02: tokenization claims, measured on every trained tokenizer (CPU, no seeds, seconds).


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
    if not claim_wanted(_claim):
        continue
    register_claim(_claim)

    rule:
        f"{claim_docstring(_claim)}"
        name:
            f"concept_{_claim}"
        input:
            tokenizers=all_tokenizer_files(),
            corpus=expand(f"{RESULTS}/corpus/{{lang}}/{{split}}.txt", lang=LANGS, split=["train", "valid"]),
            code=claim_code(_claim),
        output:
            **claim_outputs(_claim),
        log:
            f"{LOGS}/concept_{_claim}.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}.tsv"
        group:
            cluster_group("tokenization")
        conda:
            ENV_ML_CPU
        threads: 1
        resources:
            mem_mb=mem_mb(3000),
            runtime=runtime(15),
        params:
            claim=_claim,
            settings=tokenization_settings(_claim),
            # the folders holding the inputs: <tokenizers>/<scope>/<name>/tokenizer.json, <corpus>/<lang>/<split>.txt
            tokenizers=lambda w, input: Path(input.tokenizers[0]).parents[2],
            corpus=lambda w, input: Path(input.corpus[0]).parents[1],
            captions=FigureCaptions(concept_result(_claim)),
        shell:
            '"$WHYLAB_PYTHON" -m whylab {params.claim} --settings {params.settings:q}'
            " --input tokenizers={params.tokenizers} --input corpus={params.corpus}"
            " --output result={output.result} --threads {threads} > {log} 2>&1"
