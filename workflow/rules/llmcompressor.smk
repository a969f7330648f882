# C15's and C16's cross-check on llmcompressor (someone else's GPTQ and SmoothQuant, unmodified,
# on CPU), in an environment of its own: llmcompressor 0.14 needs transformers 5, which ml-cpu
# cannot share (optimum-onnx caps it below 4.58). With --sdm conda the rule gets
# envs/llmcompressor.yaml; otherwise it runs .venv-llmc's python (`make setup` builds it), found in
# this checkout or beside the venv running Snakemake. Where neither exists, the step runs with
# Snakemake's own interpreter and records why llmcompressor could not run (C15 and C16 then stay
# on torchao and say so); the interpreter is a param, so building .venv-llmc later re-runs it.
# Included after lm.smk (LM_MODEL) and before quantize.smk, whose C15 and C16 jobs read it.
LLMC_RESULT = f"{RESULTS}/thirdparty/llmcompressor.json"
ENV_LLMC = "../envs/llmcompressor.yaml"
LLMC_WANTED = claim_wanted("C15") or claim_wanted("C16")


def _llmc_python():
    """The interpreter of llmcompressor's environment (see the top of this file)."""
    if _CONDA:
        return "python"
    for venv in (REPO / ".venv-llmc", Path(sys.prefix).parent / ".venv-llmc"):
        if (venv / "bin" / "python").is_file():
            return str(venv / "bin" / "python")
    return sys.executable


def _llmc_settings():
    """C15's calibration and group size (its claim.yaml's primary group when configured, as its
    experiment picks it) and C16's α; the LM's training languages."""
    from whylab.files import parse_yaml

    q = config["quantization"]
    spec = parse_yaml((_package_dir("C15") / "claim.yaml").read_text(encoding="utf-8"))
    sizes = [int(b) for b in q["int4"]["block_sizes"]]
    primary = int(spec["thresholds"]["primary_group"])
    return settings_json(
        {
            "languages": LM_LANGS_TRAINED,
            "block_size": q["measure"]["block_size"],
            "calibration_blocks": q["calibration"]["blocks"],
            "group_size": primary if primary in sizes else sizes[0],
            "symmetric": bool(q["int4"].get("symmetric", False)),
            "dampening": float(q["int4"].get("gptq_percdamp", 0.01)),
            "alpha": float(q["smoothquant"].get("alpha_ref", 0.5)),
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
            # ~10 s and 0.7 GB on the default config (imports most of it): the model and four copies
            mem_mb=mem_mb(lm_copies_mem_mb(6)),
            runtime=runtime(5),
        params:
            python=_llmc_python(),
            settings=_llmc_settings(),
            corpus=lambda wildcards, input: Path(input.train[0]).parents[1],
        shell:
            '"{params.python}" -m whylab.thirdparty.llmcompressor_check --settings {params.settings:q}'
            " --input model={input.model} --input corpus={params.corpus}"
            " --output result={output.result} --threads {threads} > {log} 2>&1"
