# The corpus rule's inputs are the user's own files (paths, folders and globs expanded; a local
# `datasets` folder's files), so editing one re-runs the corpus and what depends on it. A source
# that names a hub dataset is downloaded by the corpus rule: it then runs on the submitting
# machine (localrule), since cluster nodes are often offline.


rule corpus:
    """Gather the corpus (embedded default or the user's files/dataset), NFC-normalise, split by seed."""
    input:
        sources=corpus_source_files(),
        code=step_code("corpus"),
    output:
        texts=expand(f"{RESULTS}/corpus/{{lang}}/{{split}}.txt", lang=LANGS, split=["train", "valid"]),
        stats=f"{RESULTS}/corpus/stats.json",
    log:
        f"{LOGS}/corpus.log",
    benchmark:
        f"{BENCHMARKS}/corpus.tsv"
    localrule: corpus_reads_hub()
    conda:
        ENV_DATA
    threads: 1
    resources:
        **sized("corpus.tsv", 10, 2000),
    params:
        settings=settings_json(config["corpus"]),
    shell:
        # on failure, the step's one-line error is echoed to the console, not only the log
        '"$WHYLAB_PYTHON" -m whylab corpus --settings {params.settings:q} --output stats={output.stats}'
        " > {log} 2>&1 || {{ tail -n 1 {log} >&2; exit 1; }}"
