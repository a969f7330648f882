# C12, C13, C15: the trained LM quantized every way the notes name, one job per family of variants
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
# every variant family job runs torch / ONNX Runtime on the run's device: torch_resources(), torch=True


def variant_measures(name):
    return f"{VARIANTS_DIR}/{name}/measures.json"


def variant_models(name):
    """The variant's model files: measured (size) by its own job, read by no other: temporary."""
    return f"{VARIANTS_DIR}/{name}/model"


# One rule per family (references, half precision, INT8, INT4), one job each; the job builds and
# measures all of the family's variants in one process (whylab.quant.variant_jobs: the tokenizer,
# the token blocks and each FP32 reference made once) and writes every variant's measures.json,
# all at once at its end. Latency is timed against the FP32 reference inside the job, variant by
# variant, so parallel jobs do not bias speed-ups. Few, longer jobs keep a cluster's quant group
# within twice its use: Snakemake counts whole minutes, at least one a job (README: A cluster).
_QUANT_FAMILIES = {
    "reference": [n for n in QUANT_VARIANTS if _parse_variant(n).is_reference],
    "half": [n for n in QUANT_VARIANTS if _parse_variant(n).family == "half"],
    "int8": [n for n in QUANT_VARIANTS if _parse_variant(n).family == "int8"],
    "int4": [n for n in QUANT_VARIANTS if _parse_variant(n).family == "int4"],
}
# Each variant's wall seconds in a default run (one job each, 2 shared cores;
# tests/cluster/default_run_benchmarks.tsv, rounded up), peak RSS 0.33-0.50 GB each. A family
# job's runtime is their sum rounded up to whole minutes, at least one (a variant the table lacks,
# e.g. another INT4 block size, counts as its family's longest), doubled on each retry. Its
# memory is a variant job's: the model, its FP32 reference and ONNX session, the quantized copy
# (6 copies, x1.5, +1 GB); one variant is held at a time, beside the reference it is timed against
# (the four family jobs on the default config peaked at 0.42-0.58 GB, 10-45 s each, run alone).
_VARIANT_SECONDS = {
    "ort-fp32": 5,
    "torch-fp32": 28,
    "ort-fp16": 18,
    "torch-bf16": 27,
    "torch-fp16": 6,
    "ort-int8-dynamic": 29,
    "ort-int8-static": 30,
    "torchao-int8-dynamic": 23,
    "torchao-int8-weight-only": 25,
    "ort-int4-awq-b128": 16,
    "ort-int4-awq-b32": 51,
    "ort-int4-gptq-b128": 30,
    "ort-int4-gptq-b32": 12,
    "ort-int4-hqq-b128": 29,
    "ort-int4-hqq-b32": 45,
    "ort-int4-rtn-b128": 29,
    "ort-int4-rtn-b32": 10,
}


def _family_minutes(names):
    """The family job's runtime (minutes, attempt 1) from its variants' recorded seconds."""
    families = {_parse_variant(n).family for n in names}
    longest = max(s for n, s in _VARIANT_SECONDS.items() if _parse_variant(n).family in families)
    seconds = sum(_VARIANT_SECONDS.get(n, longest) for n in names)
    return max(1, -(-seconds // 60))


def _family_references(names):
    """measures.json of the FP32 references the family's variants are measured against."""
    refs = {_parse_variant(n).reference for n in names if not _parse_variant(n).is_reference}
    return [variant_measures(r) for r in sorted(refs)]


def _family_flags(names):
    def flags(wildcards, input, output):
        parts = [
            f"--input model={input.model}",
            f"--input onnx={input.onnx}",
            f"--input corpus={Path(input.valid[0]).parents[1]}",
        ]
        parts += [f"--input reference.{Path(p).parent.name}={p}" for p in input.references]
        for name, measures, models in zip(names, output.measures, output.models, strict=True):
            parts += [f"--output measures.{name}={measures}", f"--output models.{name}={models}"]
        return " ".join(parts)

    return flags


for _family, _names in _QUANT_FAMILIES.items():
    if not _names:
        continue

    rule:
        f"Quantize the trained LM as every {_family} variant and measure each (size, perplexity, latency vs its FP32 reference)."
        name:
            f"quant_{_family}"
        input:
            **LM_CORPUS,
            model=LM_MODEL,
            onnx=LM_ONNX_FP32,
            references=_family_references(_names),
            code=step_code("quant_variant"),
        output:
            measures=[variant_measures(n) for n in _names],
            # each variant's model files: measured (size) by this job, read by no other
            models=[temp(directory(variant_models(n))) for n in _names],
        log:
            f"{LOGS}/quant_{_family}.log",
        benchmark:
            f"{BENCHMARKS}/quant_{_family}.tsv"
        group:
            cluster_group("quant")
        conda:
            ENV_ML
        threads: 1
        resources:
            **torch_resources(),
            mem_mb=mem_mb(lm_copies_mem_mb(6)),
            runtime=runtime(_family_minutes(_names)),
        params:
            settings=settings_json(
                quantization=QUANT_SETTINGS,
                variants=_names,
                languages=LM_LANGS_TRAINED,
                seeds=first_seed(),
                torch=True,
            ),
            flags=_family_flags(_names),
        shell:
            '"$WHYLAB_PYTHON" -m whylab quant_variant --settings {params.settings:q} {params.flags}'
            " --threads {threads} > {log} 2>&1"


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
    # measured on the default config: C12/C13 gather the variants' records (~20 s, 0.3 GB),
    # C15 re-runs GPTQ under the autograd probe (~60 s, 0.55 GB)
    "C12": ({"real_scale": REAL_SCALE, "model": LM_MODEL}, [], 1000, 1),
    "C13": ({"real_scale": REAL_SCALE, "model": LM_MODEL}, [], 1000, 1),
    # C15 reads its group size from claim.yaml; the GPTQ re-run holds a few copies of the model
    # and llmcompressor's GPTQ run in its own environment (llmcompressor.smk), which decides
    "C15": (
        {**LM_CORPUS, "model": LM_MODEL, "llmcompressor": LLMC_RESULT},
        [_quant_claim_spec("C15")],
        lm_copies_mem_mb(6),
        2,
    ),
}


def _quant_measure_flags(wildcards, input):
    flags = [f"--input variants={Path(input.measures[0]).parents[1]}", f"--input model={input.model}"]
    if "real_scale" in input.keys():
        flags.append(f"--input real_scale={input.real_scale}")
    if "valid" in input.keys():
        flags.append(f"--input corpus={Path(input.valid[0]).parents[1]}")
    if "llmcompressor" in input.keys():
        flags.append(f"--input llmcompressor={input.llmcompressor}")
    return " ".join(flags)


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
            cluster_group("quant")
        conda:
            ENV_ML_CPU
        threads: 1
        resources:
            mem_mb=mem_mb(_mem),
            runtime=runtime(_minutes),
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
            measurements=concept_measurements(_claim),
        output:
            **claim_outputs(_claim),
        log:
            f"{LOGS}/concept_{_claim}.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}.tsv"
        group:
            cluster_group("quant")
        conda:
            ENV_ML_CPU
        threads: 1
        resources:
            # a decide job reads JSON and draws: ~10-30 s and 0.2 GB on the default config
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


def _lm_flags(wildcards, input):
    """--input model=<the LM folder> --input corpus=<the corpus root> (<root>/<lang>/<split>.txt),
    and C16's --input llmcompressor=<llmcompressor's SmoothQuant factors> (llmcompressor.smk)."""
    extra = f" --input llmcompressor={input.llmcompressor}" if "llmcompressor" in input.keys() else ""
    return f"--input model={input.model} --input corpus={Path(input.corpus[0]).parents[1]}{extra}"


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
