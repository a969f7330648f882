# The rules of the claims in CLAIM_SPECS (filled by mechanisms.smk and memory.smk; included after
# them): one job per claim, or, for a claim whose module has run_seed/combine and that is listed
# in `per_seed_jobs`, one job per seed (results/concepts/<ID>/seeds/<seed>.json) and a gather
# that combines them and decides the verdict. Adding a seed then adds that seed's job and re-runs
# only the gather; on a cluster the seeds run in parallel.
#
# A spec (claim id -> dict):
#   settings: the step's settings (seeds and device are added here), inputs: name -> path,
#   extra_inputs: a function called when the DAG is built, giving name -> path, or a function of
#     the seed (a per-seed input reaches the step as --input <name>_<seed>=path; a seed job gets
#     only its own seed's),
#   seeds: the claim's seeds (claim_seeds(section)), or first_seed() for one that uses one,
#   torch: runs torch on the run's device (GPU request with CUDA), threads, mem_mb, runtime (min).


def _claim_extra_inputs(spec, seeds):
    out = {}
    for name, value in spec["extra_inputs"]().items():
        if callable(value):
            out.update({f"{name}_{seed}": value(seed) for seed in seeds})
        else:
            out[name] = value
    return out


def _claim_inputs(claim_id, spec):
    """Inputs of the claim's one job (or its gather): every seed's extra inputs."""

    def inputs(wildcards):
        return {**spec["inputs"], **_claim_extra_inputs(spec, spec["seeds"])}

    return inputs


def _seed_inputs(claim_id, spec):
    def inputs(wildcards):
        return {**spec["inputs"], **_claim_extra_inputs(spec, [int(wildcards.seed)])}

    return inputs


def _input_flags(wildcards, input):
    """--input name=path for every named input but the code and the per-seed files."""
    return " ".join(
        f"--input {name}={path}" for name, path in input.items() if name not in ("code", "seed_files")
    )


def _seed_flags(seeds):
    def flags(wildcards, input):
        return " ".join(f"--input seed.{seed}={path}" for seed, path in zip(seeds, input.seed_files))

    return flags


CLAIM_SPECS_DONE = set()

for _claim, _spec in CLAIM_SPECS.items():
    if _claim in CLAIM_SPECS_DONE:
        continue
    CLAIM_SPECS_DONE.add(_claim)
    register_claim(_claim)
    _seeds = list(_spec["seeds"])
    _per_seed = per_seed_jobs(_claim)
    _step_settings = settings_json(_spec["settings"], torch=_spec["torch"])

    if _per_seed:

        rule:
            f"{claim_docstring(_claim)} One seed of it (measurements only)."
            name:
                f"concept_{_claim}_seed"
            input:
                unpack(_seed_inputs(_claim, _spec)),
                code=claim_code(_claim),
            output:
                seed=concept_seed_file(_claim, "{seed}"),
            log:
                f"{LOGS}/concept_{_claim}_seed{{seed}}.log",
            benchmark:
                f"{BENCHMARKS}/concept_{_claim}_seed{{seed}}.tsv"
            wildcard_constraints:
                seed=r"\d+",
            conda:
                ENV_ML if _spec["torch"] else ENV_ML_CPU
            threads: _spec["threads"]
            resources:
                **(torch_resources() if _spec["torch"] else {}),
                mem_mb=mem_mb(_spec["mem_mb"]),
                runtime=runtime(_spec["runtime"]),
            params:
                claim=_claim,
                settings=_step_settings,
                inputs=_input_flags,
            shell:
                '"$WHYLAB_PYTHON" -m whylab {params.claim} --seed {wildcards.seed} --settings {params.settings:q}'
                " {params.inputs} --output seed={output.seed} --threads {threads} > {log} 2>&1"

    rule:
        f"{claim_docstring(_claim)}"
        name:
            f"concept_{_claim}"
        input:
            unpack(_claim_inputs(_claim, _spec)),
            code=claim_code(_claim),
            seed_files=[concept_seed_file(_claim, s) for s in _seeds] if _per_seed else [],
        output:
            **claim_outputs(_claim),
        log:
            f"{LOGS}/concept_{_claim}.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}.tsv"
        conda:
            ENV_ML_CPU if _per_seed or not _spec["torch"] else ENV_ML
        threads: 1 if _per_seed else _spec["threads"]
        resources:
            # a gather only combines the seeds' files: no GPU
            **({} if _per_seed or not _spec["torch"] else torch_resources()),
            mem_mb=mem_mb(2000 if _per_seed else _spec["mem_mb"]),
            runtime=runtime(10 if _per_seed else _spec["runtime"]),
        params:
            claim=_claim,
            settings=settings_json(_spec["settings"], seeds=_seeds, torch=_spec["torch"]),
            inputs=_input_flags,
            seeds=_seed_flags(_seeds),
            captions=FigureCaptions(concept_result(_claim)),
        shell:
            '"$WHYLAB_PYTHON" -m whylab {params.claim} --settings {params.settings:q} {params.inputs} {params.seeds}'
            " --output result={output.result} --threads {threads} > {log} 2>&1"
