# C12, C13, C15: the trained LM quantized every way the notes name, in one job
# writing results/lm/variants/<name>/measures.json for each, then the claims decided from those numbers.
# (C14 and C16 rules are appended at the END of this file by their owner.)

# the torch-free names module: importing whylab.quant.variants here would import torch at every parse
from whylab.quant.names import parse as _parse_variant
from whylab.quant.names import variant_names as _variant_names

QUANT = config["quantization"]
# the sections these rules read: a change to another section (qlora, smoothquant) reruns nothing here
QUANT_SETTINGS = {k: QUANT[k] for k in ("measure", "calibration", "int8", "int4", "fp16")}
QUANT_VARIANTS = _variant_names(QUANT)
VARIANTS_DIR = f"{RESULTS}/lm/variants"
# LM_MODEL, LM_ONNX_FP32 and LM_LANGS_TRAINED come from lm.smk (included before this file);
# perplexity and calibration use the languages the LM was trained on
LM_CORPUS = {
    "train": expand(f"{RESULTS}/corpus/{{lang}}/train.txt", lang=LM_LANGS_TRAINED),
    "valid": expand(f"{RESULTS}/corpus/{{lang}}/valid.txt", lang=LM_LANGS_TRAINED),
}
# the variants job runs torch / ONNX Runtime on the run's device: torch_resources(), torch=True


def variant_measures(name):
    return f"{VARIANTS_DIR}/{name}/measures.json"


def variant_models(name):
    """The variant's model files: measured (size) by its own job, read by no other: temporary."""
    return f"{VARIANTS_DIR}/{name}/model"


# One job builds and measures every variant (whylab.quant.variant_jobs: the tokenizer, the token
# blocks and each FP32 reference made once; the references first) and writes every variant's
# measures.json, all at once at its end. Latency is timed against the FP32 reference inside the
# job, variant by variant, so other jobs running beside it do not bias speed-ups. One job, not one
# a variant or a family: each variant takes 0-7 s, and Snakemake asks a cluster for whole minutes,
# at least one per job and per layer of a job group (README: "A cluster").
#
# Each variant's seconds in a default run (measures.json wall_s, 2 cores, rounded up), peak RSS
# 0.55 GB for the job: its runtime is their sum plus the process's set-up (imports, token blocks),
# in whole minutes, at least one (a variant the table lacks, e.g. another INT4 block size, counts
# as its family's longest), doubled on each retry. Its memory: the model, its FP32 reference and
# ONNX session, the quantized copy (6 copies, x1.5, +1 GB); one variant is held at a time, beside
# the reference it is timed against.
_VARIANT_SECONDS = {
    "ort-fp32": 1,
    "torch-fp32": 1,
    "ort-fp16": 1,
    "torch-bf16": 2,
    "torch-fp16": 1,
    "ort-int8-dynamic": 2,
    "ort-int8-static": 2,
    "torchao-int8-dynamic": 2,
    "torchao-int8-weight-only": 1,
    "ort-int4-awq-b128": 7,
    "ort-int4-awq-b32": 7,
    "ort-int4-gptq-b128": 5,
    "ort-int4-gptq-b32": 6,
    "ort-int4-hqq-b128": 1,
    "ort-int4-hqq-b32": 2,
    "ort-int4-rtn-b128": 1,
    "ort-int4-rtn-b32": 3,
}
_VARIANTS_SETUP_SECONDS = 10


def _variants_minutes(names):
    """The variants job's runtime (minutes, attempt 1) from its variants' recorded seconds."""

    def seconds(name):
        if name in _VARIANT_SECONDS:
            return _VARIANT_SECONDS[name]
        family = _parse_variant(name).family
        return max(s for n, s in _VARIANT_SECONDS.items() if _parse_variant(n).family == family)

    return max(1, -(-(_VARIANTS_SETUP_SECONDS + sum(seconds(n) for n in names)) // 60))


def _variants_flags(wildcards, input, output):
    parts = [
        f"--input model={input.model}",
        f"--input onnx={input.onnx}",
        f"--input corpus={Path(input.valid[0]).parents[1]}",
    ]
    for name, measures, models in zip(QUANT_VARIANTS, output.measures, output.models, strict=True):
        parts += [f"--output measures.{name}={measures}", f"--output models.{name}={models}"]
    return " ".join(parts)


# C12 (INT8), C13 (INT4), C15 (GPTQ): claim packages (whylab/concepts/<claim>/), each with a
# measure job and a decide job, as claims.smk makes them (claims.smk is included before this file,
# so these are written out here). C12's and C13's measure jobs gather every variant's
# measures.json and the real-scale record (cheap); C15's also re-runs GPTQ on the model to check
# what it computes (Hessian, no gradients). The decide jobs run verdict.py + figures.py on
# measurements.json: editing a verdict, a figure or a text re-runs only them.
_QUANT_CLAIM_SETTINGS = dict(
    quantization=QUANT_SETTINGS,
    variants=QUANT_VARIANTS,
    languages=LM_LANGS_TRAINED,
    seeds=first_seed(),
    # whether the model is a checkpoint named by lm.pretrained (C12/C13: the loss part is decisive
    # only on one of real size, claim.yaml's regime) or the LM this run trains
    lm_pretrained=bool(LM_PRETRAINED),
)


def _quant_claim_spec(claim_id):
    """claim.yaml of a quant claim: C12's and C13's primary variants are read from both."""
    return _relative(_package_dir(claim_id) / "claim.yaml")


def _quant_decide_code(claim_id):
    """decide_code, and for C12 and C13 both claim.yaml files: each names one of the primary
    variants (INT8, INT4) that both claims' metrics record (whylab.quant.claim_parts)."""
    if claim_id == "C15":
        return decide_code(claim_id)
    return sorted({*decide_code(claim_id), *(_quant_claim_spec(c) for c in ("C12", "C13"))})


_QUANT_MEASURE = {
    # claim -> (inputs besides the variants, extra code inputs, mem_mb, runtime in minutes);
    # measured on the default config: C12/C13 gather the variants' records (2 s, 0.2 GB: local
    # rules, as the decide jobs), C15 re-runs GPTQ under the autograd probe (11 s, 0.5 GB)
    "C12": ({"real_scale": REAL_SCALE, "model": LM_MODEL}, [], 1000, 1),
    "C13": ({"real_scale": REAL_SCALE, "model": LM_MODEL}, [], 1000, 1),
    # C15 reads its group size from claim.yaml; the GPTQ re-run holds a few copies of the model
    # and llmcompressor's GPTQ run in its own environment (llmcompressor.smk), which decides
    "C15": (
        {**LM_CORPUS, "model": LM_MODEL, "llmcompressor": LLMC_RESULT},
        [_quant_claim_spec("C15")],
        lm_copies_mem_mb(6),
        1,
    ),
}


# the measure jobs that only read the variants' and the real-scale step's records
_QUANT_GATHERING = ("C12", "C13")


def _quant_measure_flags(wildcards, input):
    flags = [f"--input variants={Path(input.measures[0]).parents[1]}", f"--input model={input.model}"]
    if "real_scale" in input.keys():
        flags.append(f"--input real_scale={input.real_scale}")
    if "valid" in input.keys():
        flags.append(f"--input corpus={Path(input.valid[0]).parents[1]}")
    if "llmcompressor" in input.keys():
        flags.append(f"--input llmcompressor={input.llmcompressor}")
    return " ".join(flags)


def _lm_flags(wildcards, input):
    """--input model=<the LM folder> --input corpus=<the corpus root> (<root>/<lang>/<split>.txt),
    and C16's --input llmcompressor=<llmcompressor's SmoothQuant factors> (llmcompressor.smk)."""
    extra = f" --input llmcompressor={input.llmcompressor}" if "llmcompressor" in input.keys() else ""
    return f"--input model={input.model} --input corpus={Path(input.corpus[0]).parents[1]}{extra}"


for _claim, (_inputs, _extra_code, _mem, _minutes) in _QUANT_MEASURE.items():
    if not claim_wanted(_claim):
        continue
    register_claim(_claim)

    rule:
        f"{claim_docstring(_claim)} Its measurements."
        name:
            f"concept_{_claim}_measure"
        input:
            **_inputs,
            measures=[variant_measures(n) for n in QUANT_VARIANTS],
            code=measure_code(_claim) + _extra_code,
        output:
            measurements=concept_measurements(_claim),
        log:
            f"{LOGS}/concept_{_claim}_measure.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}_measure.tsv"
        group:
            None if _claim in _QUANT_GATHERING else cluster_group("quant")
        localrule: _claim in _QUANT_GATHERING
        conda:
            ENV_ML_CPU
        threads: 1
        resources:
            **sized(f"concept_{_claim}_measure.tsv", _minutes, _mem),
        params:
            claim=_claim,
            settings=settings_json(**_QUANT_CLAIM_SETTINGS),
            inputs=_quant_measure_flags,
        shell:
            '"$WHYLAB_PYTHON" -m whylab {params.claim} --measure all --settings {params.settings:q}'
            " {params.inputs} --output measurements={output.measurements} --threads {threads} > {log} 2>&1"

    rule:
        f"{claim_docstring(_claim)} Its verdict and figures, from the measurements."
        name:
            f"concept_{_claim}"
        input:
            code=_quant_decide_code(_claim),
            drawn=DRAWN_TRANSLATIONS,
            measurements=concept_measurements(_claim),
        output:
            **claim_outputs(_claim),
        log:
            f"{LOGS}/concept_{_claim}.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}.tsv"
        # reads JSON and draws (1-5 s, 0.2 GB): a local rule, as every claim's decide job (claims.smk)
        localrule: True
        conda:
            ENV_ML_CPU
        threads: 1
        resources:
            mem_mb=mem_mb(1000),
            runtime=runtime(1),
        params:
            claim=_claim,
            settings=settings_json(**_QUANT_CLAIM_SETTINGS),
            captions=FigureCaptions(concept_result(_claim)),
        shell:
            '"$WHYLAB_PYTHON" -m whylab {params.claim} --settings {params.settings:q}'
            " --input measurements={input.measurements} --output result={output.result} > {log} 2>&1"


# C14 (QLoRA) and C16 (SmoothQuant): claim packages on the trained LM; claims.smk (included after
# this file) makes their per-seed measure jobs and decide jobs from the specs below.
# C14 fine-tunes on a language the LM was not pretrained on (quantization.qlora.finetune_language);
# C16 calibrates on the LM's training split and scores on its validation split, as the variants do.
_FT_LANG = QUANT["qlora"]["finetune_language"]
if _FT_LANG not in LANGS:
    sys.exit(
        f"whylab: config error: quantization.qlora.finetune_language: {_FT_LANG!r} is not in "
        f"corpus.languages ({', '.join(LANGS)})"
    )


_PT_CONCEPTS = {
    "C14": {
        "settings": {**QUANT["qlora"], "languages": LM_LANGS_TRAINED},
        "seeds": claim_seeds(QUANT["qlora"]),
        "corpus": sorted(
            {f"{RESULTS}/corpus/{_FT_LANG}/{s}.txt" for s in ("train", "valid")} | set(LM_CORPUS["valid"])
        ),
        "runtime": 20,
        # the full fine-tune (variants: full) is an lm_train step at most, plus the frozen copies
        "mem_mb": LM_TRAIN_MEM_MB + lm_copies_mem_mb(4),
    },
    "C16": {
        "settings": {
            **QUANT["smoothquant"],
            "measure": QUANT["measure"],
            "calibration": QUANT["calibration"],
            "languages": LM_LANGS_TRAINED,
        },
        "seeds": claim_seeds(QUANT["smoothquant"]),
        "corpus": LM_CORPUS["train"] + LM_CORPUS["valid"],
        "runtime": 15,
        "mem_mb": lm_copies_mem_mb(6),  # the model, its smoothed and fake-quantized copies
        # llmcompressor's SmoothQuant factors (llmcompressor.smk): the definition part's cross-check
        "inputs": {"llmcompressor": LLMC_RESULT},
    },
}

for _claim, _pt in _PT_CONCEPTS.items():
    if not claim_wanted(_claim):
        continue
    CLAIM_SPECS[_claim] = {
        "settings": _pt["settings"],
        "inputs": {"model": LM_MODEL, "corpus": _pt["corpus"], **_pt.get("inputs", {})},
        "input_flags": _lm_flags,
        "extra_inputs": dict,
        "seeds": _pt["seeds"],
        "torch": True,
        "threads": 1,
        "mem_mb": _pt["mem_mb"],
        "runtime": _pt["runtime"],
    }
