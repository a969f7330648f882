# C12/C13 size and speed at real shapes (random weights, built from config): BERT-base prefill and
# Llama-2-7B-width decode with the KV cache, FP32 vs INT8 vs INT4. Nothing trained is needed, so
# this job runs beside the rest of the DAG. Included before quantize.smk, which feeds it to C12/C13.
# On a cluster it is the long job of the quant group (131 s in a default run, most of it ONNX
# Runtime's INT8 quantizer; the timed rounds ~25 s), and the variants job runs beside it.
REAL_SCALE = f"{RESULTS}/lm/real_scale/measures.json"


rule quant_real_scale:
    """C12/C13 at real shapes: BERT-base and Llama-7B-width layers, FP32 vs INT8 vs INT4 (size, speed)."""
    input:
        code=step_code("quant_real_scale"),
    output:
        measures=REAL_SCALE,
    log:
        f"{LOGS}/quant_real_scale.log",
    benchmark:
        f"{BENCHMARKS}/quant_real_scale.tsv"
    group:
        cluster_group("quant")
    conda:
        ENV_ML_CPU
    threads: 1
    resources:
        # else: 4 FP32 copies of the larger model, x1.5, +1 GB (whylab.preflight)
        **sized("quant_real_scale.tsv", 20, real_scale_mem_mb()),
    params:
        settings=settings_json(quantization={"real_scale": config["quantization"]["real_scale"]}),
    shell:
        '"$WHYLAB_PYTHON" -m whylab quant_real_scale --settings {params.settings:q}'
        " --output measures={output.measures} --threads {threads} > {log} 2>&1"
