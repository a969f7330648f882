# C17-C21: memory profiling. Each claim builds its small LlamaForCausalLM from config (no weights,
# no other rule's artifacts), measures, and writes its result; one spec per claim in REGISTRY
# (claims.smk makes the rules). A claim measures on its first seed, unless its experiment.py
# repeats over seeds (measure_seed): then it gets the claim's seeds.

MEMORY = config["memory"]
MEMORY_CLAIMS = registered_claims(["C17", "C18", "C19", "C20", "C21"])
# minutes a rule may take on a cluster; memory in MB for the scheduler (the models are small)
MEMORY_RUNTIME = {"C17": 15, "C18": 20, "C19": 20, "C20": 15, "C21": 15}


def memory_settings(claim_id):
    """The claim's section, the shared model with the claim's overrides, and the repeat count."""
    section = MEMORY[claim_id]
    model = {**MEMORY["model"], **section.get("model_overrides", {})}
    extra = {"plan": MEMORY["plan"]} if claim_id == "C18" else {}
    return {**section, "model": model, "repeats": MEMORY["repeats"], **extra}


def memory_inputs(claim_id):
    recorded = MEMORY[claim_id].get("recorded_gpu_run")
    return {"recorded_gpu_run": recorded} if recorded else {}


for _claim in MEMORY_CLAIMS:
    if not claim_wanted(_claim):
        continue
    CLAIM_SPECS[_claim] = {
        "settings": memory_settings(_claim),
        "inputs": memory_inputs(_claim),
        "extra_inputs": dict,
        "seeds": claim_seeds(MEMORY[_claim]) if measures_seeds(_claim) else first_seed(),
        "torch": True,  # accelerator memory is measured on CUDA when the run has a GPU
        "threads": 4 if _claim == "C21" else 1,  # C21's offloaded optimizer step runs on CPU threads
        "mem_mb": 4000,
        "runtime": MEMORY_RUNTIME.get(_claim, 20),
    }
