rule report:
    """Render reports/index.html from the result files alone (no experiment re-runs)."""
    input:
        results=lambda w: list(CONCEPT_RESULTS.values()),
        corpus_stats=f"{RESULTS}/corpus/stats.json",
        extra=lambda w: list(REPORT_EXTRA_INPUTS.values()),
    output:
        html=report(REPORT_HTML, caption="../report/index.rst", category="Report"),
    log:
        f"{LOGS}/report.log",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: json.dumps({"config": config, "title": config["report"]["title"]}),
        benchmarks=BENCHMARKS,
        inputs=lambda w, input: " ".join(
            f"--input {name}={path}"
            for name, path in [*CONCEPT_RESULTS.items(), *REPORT_EXTRA_INPUTS.items()]
        ),
    shell:
        "python -m whylab report --settings {params.settings:q} {params.inputs}"
        " --input corpus_stats={input.corpus_stats} --input benchmarks={params.benchmarks}"
        " --output html={output.html} > {log} 2>&1"
