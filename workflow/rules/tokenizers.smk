rule tokenizers:
    """Train BPE (byte-level), WordPiece and Unigram at each vocab size, for one language or all (joint)."""
    input:
        train=lambda w: (
            expand(f"{RESULTS}/corpus/{{lang}}/train.txt", lang=LANGS)
            if w.scope == "joint"
            else [f"{RESULTS}/corpus/{w.scope}/train.txt"]
        ),
        code=step_code("tokenizers"),
    output:
        [
            tokenizer_file("{scope}", algorithm, vocab)
            for algorithm in config["tokenizers"]["algorithms"]
            for vocab in config["tokenizers"]["vocab_sizes"]
        ],
    log:
        f"{LOGS}/tokenizers_{{scope}}.log",
    benchmark:
        f"{BENCHMARKS}/tokenizers_{{scope}}.tsv"
    wildcard_constraints:
        scope="|".join(["joint", *LANGS]),
    group:
        cluster_group("tokenization")
    conda:
        ENV_DATA
    threads: 1
    resources:
        **sized("tokenizers_*.tsv", 10, 2000),
    params:
        settings=settings_json(config["tokenizers"]),
        root=lambda w, output: Path(output[0]).parents[1],
        inputs=lambda w, input: " ".join(f"--input train_{i}={p}" for i, p in enumerate(input.train)),
    shell:
        '"$WHYLAB_PYTHON" -m whylab tokenizers --settings {params.settings:q} {params.inputs}'
        " --output root={params.root} > {log} 2>&1"
