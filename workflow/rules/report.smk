# The report runs where Snakemake runs (localrule): it reads only result files, and compute
# nodes need not be reachable or online for it. Claims not in `claims:` show "not tested yet".
# the mechanism claims' labels recorded on a second English text (benchmarks/second_text.py), if present
SECOND_TEXT_LABELS = [
    _relative(p) for p in [REPO / "benchmarks/recorded/second_text_labels.json"] if p.is_file()
]


rule report:
    """Render reports/index.html (and a page per other language, reports/index.ko.html) from the
    result files alone (no experiment re-runs)."""
    input:
        results=lambda w: list(CONCEPT_RESULTS.values()),
        figures=lambda w: list(CONCEPT_FIGURES.values()),
        corpus_stats=f"{RESULTS}/corpus/stats.json",
        extra=lambda w: list(REPORT_EXTRA_INPUTS.values()),
        code=step_code("report"),
        messages=MESSAGE_CATALOGUES,
        drawn=DRAWN_TRANSLATIONS,
        second_text=SECOND_TEXT_LABELS,
    output:
        pages=[
            report(page, caption="../report/index.rst", category="Report") for page in REPORT_PAGES.values()
        ],
    log:
        f"{LOGS}/report.log",
    localrule: True
    conda:
        ENV_DATA
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
        runtime=runtime(10),
    params:
        outputs=" ".join(f"--output html_{lang}={page}" for lang, page in REPORT_PAGES.items()),
        settings=lambda w: json.dumps({"config": config, "title": config["report"]["title"]}),
        benchmarks=BENCHMARKS,
        second_text=lambda w, input: " ".join(f"--input second_text={p}" for p in input.second_text),
        inputs=lambda w, input: " ".join(
            f"--input {name}={path}"
            for name, path in [*CONCEPT_RESULTS.items(), *REPORT_EXTRA_INPUTS.items()]
        ),
    shell:
        '"$WHYLAB_PYTHON" -m whylab report --settings {params.settings:q} {params.inputs}'
        " --input corpus_stats={input.corpus_stats} --input benchmarks={params.benchmarks}"
        " {params.second_text}"
        " {params.outputs} > {log} 2>&1"
