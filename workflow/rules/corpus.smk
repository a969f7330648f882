rule corpus:
    """Gather the corpus (embedded default or the user's files/dataset), NFC-normalise, split by seed."""
    output:
        texts=expand(f"{RESULTS}/corpus/{{lang}}/{{split}}.txt", lang=LANGS, split=["train", "valid"]),
        stats=f"{RESULTS}/corpus/stats.json",
    log:
        f"{LOGS}/corpus.log",
    benchmark:
        f"{BENCHMARKS}/corpus.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: settings_json(config["corpus"]),
    shell:
        # on failure, the step's one-line error is echoed to the console, not only the log
        "python -m whylab corpus --settings {params.settings:q} --output stats={output.stats}"
        " > {log} 2>&1 || {{ tail -n 1 {log} >&2; exit 1; }}"
