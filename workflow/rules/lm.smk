# The language model of claims C12-C16: train it (CPU or one GPU), then export it to ONNX.
# Everything downstream (quantize.smk) reads results/lm/model and results/lm/onnx/fp32.

from whylab import preflight as _preflight

LM = config["lm"]
# lm.pretrained (a local Hugging Face folder, checked when the config is read): C12-C16 use it
# and nothing asks for the trained model, so lm_train is not scheduled
LM_PRETRAINED = LM.get("pretrained")
LM_MODEL = LM_PRETRAINED or f"{RESULTS}/lm/model"
LM_ONNX_FP32 = f"{RESULTS}/lm/onnx/fp32"
LM_TRAIN_METRICS = f"{RESULTS}/lm/train_metrics.json"
LM_TRAIN_CURVE = f"{RESULTS}/lm/train_curve.csv"
# not a declared output: Snakemake deletes outputs of a failed job, and a killed run must
# find its checkpoints to resume from them (the step removes them once the model is saved)
LM_CHECKPOINTS = f"{RESULTS}/lm/checkpoints"


LM_TOKENIZER = lm_tokenizer_file()
LM_LANGS_TRAINED = lm_train_languages()
LM_CORPUS_FILES = {
    f"{split}_{lang}": f"{RESULTS}/corpus/{lang}/{split}.txt"
    for split in ("train", "valid")
    for lang in LM_LANGS_TRAINED
}
# a GPU is requested (SLURM: --gpus=1) only when training runs on CUDA (torch_resources)
# mem_mb of the LM rules follows lm.model (whylab.preflight: the memory planner's peak for
# lm_train, FP32 copies of the weights for the others, x1.5 and ~1 GB for the process);
# a pretrained model's size is not read here: those rules keep 4 GB
LM_TRAIN_MEM_MB = _preflight.lm_train_mem_mb(config)


# the report shows the LM's training summary, when this run trains one and tests a claim on it
if not LM_PRETRAINED and any(claim_wanted(c) for c in ("C12", "C13", "C14", "C15", "C16")):
    REPORT_EXTRA_INPUTS["lm_train_metrics"] = LM_TRAIN_METRICS


rule lm_train:
    """Train the LlamaForCausalLM on lm.train_languages with the joint tokenizer; save it with its tokenizer."""
    input:
        **LM_CORPUS_FILES,
        tokenizer=LM_TOKENIZER,
        code=step_code("lm_train"),
    output:
        model=directory(f"{RESULTS}/lm/model"),
        metrics=LM_TRAIN_METRICS,
        curve=LM_TRAIN_CURVE,
    log:
        f"{LOGS}/lm_train.log",
    benchmark:
        f"{BENCHMARKS}/lm_train.tsv"
    conda:
        ENV_ML
    threads: LM["threads"]
    resources:
        **torch_resources(),
        **sized("lm_train.tsv", 120, LM_TRAIN_MEM_MB),
    params:
        # one seed: the model is trained once, with the run's first seed
        settings=settings_json(
            {k: LM[k] for k in ("train_languages", "tokenizer", "model", "training")},
            seeds=first_seed(),
            torch=True,
        ),
        corpus=lambda w, input: Path(input.tokenizer).parents[3] / "corpus",
        checkpoints=LM_CHECKPOINTS,
    shell:
        '"$WHYLAB_PYTHON" -m whylab lm_train --settings {params.settings:q}'
        " --input tokenizer={input.tokenizer} --input corpus={params.corpus}"
        " --output model={output.model} --output metrics={output.metrics}"
        " --output curve={output.curve} --output checkpoints={params.checkpoints}"
        " --threads {threads} > {log} 2>&1"


rule lm_export:
    """Export the trained model to ONNX (optimum), check logits against PyTorch and generate through ONNX Runtime."""
    input:
        **{k: v for k, v in LM_CORPUS_FILES.items() if k.startswith("valid_")},
        model=LM_MODEL,
        code=step_code("lm_export"),
    output:
        onnx=directory(LM_ONNX_FP32),
    log:
        f"{LOGS}/lm_export.log",
    benchmark:
        f"{BENCHMARKS}/lm_export.tsv"
    conda:
        ENV_ML
    threads: LM["threads"]
    resources:
        **torch_resources(),  # with CUDA the export is also checked on ONNX Runtime's CUDA provider
        # else: the PyTorch model, its ONNX export, two ORT sessions
        **sized("lm_export.tsv", 30, lm_copies_mem_mb(4)),
    params:
        settings=settings_json({k: LM[k] for k in ("train_languages", "export")}, torch=True),
        # results/corpus: the folder above the validation files (the model may be lm.pretrained's)
        corpus=lambda w, input: Path(next(v for k, v in input.items() if k.startswith("valid_"))).parents[1],
    shell:
        '"$WHYLAB_PYTHON" -m whylab lm_export --settings {params.settings:q}'
        " --input model={input.model} --input corpus={params.corpus}"
        " --output onnx={output.onnx} --threads {threads} > {log} 2>&1"
