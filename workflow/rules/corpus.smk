rule corpus:
    """Gather the corpus (embedded default or the user's files/dataset), NFC-normalise, split by seed."""
    output:
        texts=expand(f"{RESULTS}/corpus/{{lang}}/{{split}}.txt", lang=LANGS, split=["train", "valid"]),
        stats=f"{RESULTS}/corpus/stats.json",
    params:
        settings=lambda w: settings_json(config["corpus"]),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        f"{LOGS}/corpus.log",
    benchmark:
        f"{BENCHMARKS}/corpus.tsv"
    shell:
        "{WHYLAB} corpus --settings {params.settings:q} --output stats={output.stats} > {log} 2>&1"
