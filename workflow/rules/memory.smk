# C17-C21: memory profiling. Each claim builds its small LlamaForCausalLM from config (no weights,
# no other rule's artifacts), measures, and writes its result; one rule per claim in REGISTRY.
from whylab.concepts import REGISTRY as _MEMORY_REGISTRY

MEMORY = config["memory"]
MEMORY_CLAIMS = [c for c in ("C17", "C18", "C19", "C20", "C21") if c in _MEMORY_REGISTRY]
# minutes a rule may take on a cluster; memory in MB for the scheduler (the models are small)
MEMORY_RUNTIME = {"C17": 15, "C18": 20, "C19": 20, "C20": 15, "C21": 15}


def memory_settings(claim_id):
    """The claim's section, the shared model with the claim's overrides, and the repeat count."""
    section = MEMORY[claim_id]
    model = {**MEMORY["model"], **section.get("model_overrides", {})}
    extra = {"plan": MEMORY["plan"]} if claim_id == "C18" else {}
    return settings_json(section, model=model, repeats=MEMORY["repeats"], **extra)


def memory_inputs(claim_id):
    recorded = MEMORY[claim_id].get("recorded_gpu_run")
    return {"recorded_gpu_run": recorded} if recorded else {}


for _claim in MEMORY_CLAIMS:
    CONCEPT_RESULTS[_claim] = concept_result(_claim)

    rule:
        name:
            f"concept_{_claim}"
        input:
            **memory_inputs(_claim),
        output:
            result=report(
                concept_result(_claim),
                caption="../report/concept.rst",
                category="Concepts",
                labels={"claim": _claim},
            ),
        log:
            f"{LOGS}/concept_{_claim}.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}.tsv"
        conda:
            CONDA_ENV
        threads: 4 if _claim == "C21" else 1  # C21's offloaded optimizer step runs on CPU threads
        resources:
            **gpu_resources(),  # accelerator memory is measured on CUDA when the run has a GPU
            mem_mb=4000,
            runtime=MEMORY_RUNTIME[_claim],
        params:
            claim=_claim,
            settings=memory_settings(_claim),
            inputs=lambda w, input: " ".join(f"--input {name}={path}" for name, path in input.items()),
        shell:
            "python -m whylab {params.claim} --settings {params.settings:q} {params.inputs}"
            " --output result={output.result} --threads {threads} > {log} 2>&1"
