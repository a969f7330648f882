# C15's and C16's cross-check on llmcompressor (someone else's GPTQ and SmoothQuant, unmodified,
# on CPU), in an environment of its own: llmcompressor 0.14 needs transformers 5, which ml-cpu
# cannot share (optimum-onnx caps it below 4.58). With --sdm conda the rule gets
# envs/llmcompressor.yaml; otherwise it runs .venv-llmc's python (`make setup` builds it beside
# VENV), found in this checkout or beside the venv running Snakemake (<its prefix>-llmc). Where
# neither exists, the step runs with Snakemake's own interpreter and records why llmcompressor
# could not run (C15 and C16 then stay on torchao and say so); the interpreter is a param, so
# building .venv-llmc later re-runs it.
# Included after lm.smk (LM_MODEL) and before quantize.smk, whose C15 and C16 jobs read it.
LLMC_RESULT = f"{RESULTS}/thirdparty/llmcompressor.json"
ENV_LLMC = "../envs/llmcompressor.yaml"
LLMC_WANTED = claim_wanted("C15") or claim_wanted("C16")


# the interpreter of llmcompressor's environment (see the top of this file)
LLMC_PYTHON = (
    "python"
    if _CONDA
    else next(
        (
            str(venv / "bin" / "python")
            for venv in (REPO / ".venv-llmc", Path(f"{sys.prefix}-llmc"))
            if (venv / "bin" / "python").is_file()
        ),
        sys.executable,
    )
)
# C15's calibration and group size (its claim.yaml's primary group when configured, as its
# experiment picks it) and C16's α; the LM's training languages
_LLMC_Q = config["quantization"]
_LLMC_SIZES = [int(b) for b in _LLMC_Q["int4"]["block_sizes"]]
_LLMC_PRIMARY = int(load_yaml(str(_package_dir("C15") / "claim.yaml"))["thresholds"]["primary_group"])
LLMC_SETTINGS = settings_json(
    {
        "languages": LM_LANGS_TRAINED,
        "block_size": _LLMC_Q["measure"]["block_size"],
        "calibration_blocks": _LLMC_Q["calibration"]["blocks"],
        "group_size": _LLMC_PRIMARY if _LLMC_PRIMARY in _LLMC_SIZES else _LLMC_SIZES[0],
        "symmetric": bool(_LLMC_Q["int4"].get("symmetric", False)),
        "dampening": float(_LLMC_Q["int4"].get("gptq_percdamp", 0.01)),
        "alpha": float(_LLMC_Q["smoothquant"].get("alpha_ref", 0.5)),
    }
)


if LLMC_WANTED:

    rule thirdparty_llmcompressor:
        """llmcompressor's GPTQ (C15) and SmoothQuant (C16) on the trained LM, unmodified, on CPU, in its own environment."""
        input:
            train=expand(f"{RESULTS}/corpus/{{lang}}/train.txt", lang=LM_LANGS_TRAINED),
            model=LM_MODEL,
            code=module_sources("whylab.thirdparty.llmcompressor_check"),
        output:
            result=LLMC_RESULT,
        log:
            f"{LOGS}/thirdparty_llmcompressor.log",
        benchmark:
            f"{BENCHMARKS}/thirdparty_llmcompressor.tsv"
        conda:
            ENV_LLMC
        threads: 1
        resources:
            # else: the model and four copies (~10 s and 0.7 GB on the default config, imports most of it)
            **sized("thirdparty_llmcompressor.tsv", 5, lm_copies_mem_mb(6)),
        params:
            python=LLMC_PYTHON,
            settings=LLMC_SETTINGS,
            corpus=lambda wildcards, input: Path(input.train[0]).parents[1],
        shell:
            '"{params.python}" -m whylab.thirdparty.llmcompressor_check --settings {params.settings:q}'
            " --input model={input.model} --input corpus={params.corpus}"
            " --output result={output.result} --threads {threads} > {log} 2>&1"
