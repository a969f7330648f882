# The one job of every quantized variant of the trained LM (its helpers and the recorded seconds
# its runtime is sized from are in quantize.smk, included before this file).


rule quant_variants:
    """Quantize the trained LM as every variant and measure each (size, perplexity, latency vs its FP32 reference)."""
    input:
        **LM_CORPUS,
        model=LM_MODEL,
        onnx=LM_ONNX_FP32,
        code=step_code("quant_variant"),
    output:
        measures=[variant_measures(n) for n in QUANT_VARIANTS],
        # each variant's model files: measured (size) by this job, read by no other
        models=[temp(directory(variant_models(n))) for n in QUANT_VARIANTS],
    log:
        f"{LOGS}/quant_variants.log",
    benchmark:
        f"{BENCHMARKS}/quant_variants.tsv"
    group:
        cluster_group("quant")
    conda:
        ENV_ML
    threads: 1
    resources:
        **torch_resources(),
        **sized("quant_variants.tsv", _variants_minutes(QUANT_VARIANTS), lm_copies_mem_mb(6)),
    params:
        settings=settings_json(
            quantization=QUANT_SETTINGS,
            variants=QUANT_VARIANTS,
            languages=LM_LANGS_TRAINED,
            seeds=first_seed(),
            torch=True,
        ),
        flags=_variants_flags,
    shell:
        '"$WHYLAB_PYTHON" -m whylab quant_variant --settings {params.settings:q} {params.flags}'
        " --threads {threads} > {log} 2>&1"
