# The rules of the claims in CLAIM_SPECS (filled by the other rules files; included after them).
#
# A claim package (whylab/concepts/<claim>/: experiment.py, verdict.py, figures.py, claim.yaml)
# gets measure jobs and one decide job:
#   concept_<ID>_measure  experiment.measure (and every seed's measure_seed unless split)
#                         -> results/concepts/<ID>/measurements.json
#   concept_<ID>_seed     one seed's measure_seed, when the claim is in `per_seed_jobs`
#                         -> results/concepts/<ID>/seeds/<seed>.json
#   concept_<ID>          verdict.py + figures.py on those files -> result.json and figures (CPU,
#                         seconds; a local rule: on a cluster it runs where Snakemake runs)
# The measure jobs' code inputs are only what experiment.py imports, and their settings leave out
# claim.yaml's decision_settings: editing a verdict rule, a figure or a text re-runs the decide job.
#
# A spec (claim id -> dict):
#   settings: the step's settings (seeds and device are added here), inputs: name -> path,
#   extra_inputs: a function called when the DAG is built, giving name -> path, or a function of
#     the seed (a per-seed input reaches the step as --input <name>_<seed>=path; a seed job gets
#     only its own seed's),
#   seeds: the claim's seeds (claim_seeds(section)), or first_seed() for one that uses one,
#   torch: runs torch on the run's device (GPU request with CUDA), threads, mem_mb, runtime (min);
#   optional: input_flags (a params function giving the step's --input flags; default: one per
#     named input), group (a job group for short cluster jobs, cluster_group()).


def _claim_extra_inputs(spec, seeds):
    out = {}
    for name, value in spec["extra_inputs"]().items():
        if callable(value):
            out.update({f"{name}_{seed}": value(seed) for seed in seeds})
        else:
            out[name] = value
    return out


def _claim_inputs(claim_id, spec):
    """Inputs of the claim's measure job: every seed's extra inputs."""

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
    # None: a claim without seeds (its settings get no `seeds`)
    _seeds = None if _spec["seeds"] is None else list(_spec["seeds"])
    _per_seed = per_seed_jobs(_claim)

    _decide_only = set(decision_settings(_claim))
    _measure_settings = settings_json(
        {k: v for k, v in _spec["settings"].items() if k not in _decide_only}, torch=_spec["torch"]
    )
    _measure_files = [concept_measurements(_claim)] if measures_whole(_claim) or not _per_seed else []

    if _per_seed:

        rule:
            f"{claim_docstring(_claim)} One seed of it (measurements only)."
            name:
                f"concept_{_claim}_seed"
            input:
                unpack(_seed_inputs(_claim, _spec)),
                code=measure_code(_claim),
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
                **sized(f"concept_{_claim}_seed*.tsv", _spec["runtime"], _spec["mem_mb"]),
            params:
                claim=_claim,
                settings=_measure_settings,
                inputs=_spec.get("input_flags", _input_flags),
            shell:
                '"$WHYLAB_PYTHON" -m whylab {params.claim} --seed {wildcards.seed} --settings {params.settings:q}'
                " {params.inputs} --output seed={output.seed} --threads {threads} > {log} 2>&1"

    if _measure_files:

        rule:
            f"{claim_docstring(_claim)} Its measurements."
            name:
                f"concept_{_claim}_measure"
            input:
                unpack(_claim_inputs(_claim, _spec)),
                code=measure_code(_claim),
            output:
                measurements=concept_measurements(_claim),
            log:
                f"{LOGS}/concept_{_claim}_measure.log",
            benchmark:
                f"{BENCHMARKS}/concept_{_claim}_measure.tsv"
            group:
                cluster_group(_spec["group"]) if "group" in _spec else None
            conda:
                ENV_ML if _spec["torch"] else ENV_ML_CPU
            threads: _spec["threads"]
            resources:
                **(torch_resources() if _spec["torch"] else {}),
                **sized(f"concept_{_claim}_measure.tsv", _spec["runtime"], _spec["mem_mb"]),
            params:
                claim=_claim,
                settings=settings_json(
                    {k: v for k, v in _spec["settings"].items() if k not in _decide_only},
                    seeds=_seeds,
                    torch=_spec["torch"],
                ),
                which="whole" if _per_seed else "all",
                inputs=_spec.get("input_flags", _input_flags),
            shell:
                '"$WHYLAB_PYTHON" -m whylab {params.claim} --measure {params.which} --settings {params.settings:q}'
                " {params.inputs} --output measurements={output.measurements} --threads {threads} > {log} 2>&1"

    rule:
        f"{claim_docstring(_claim)} Its verdict and figures, from the measurements."
        name:
            f"concept_{_claim}"
        input:
            code=decide_code(_claim),
            drawn=DRAWN_TRANSLATIONS,
            measurements=_measure_files,
            seed_files=[concept_seed_file(_claim, s) for s in _seeds] if _per_seed else [],
        output:
            **claim_outputs(_claim),
        log:
            f"{LOGS}/concept_{_claim}.log",
        benchmark:
            f"{BENCHMARKS}/concept_{_claim}.tsv"
        # reads JSON and draws (1-5 s, 0.2 GB on the default config): on a cluster it runs where
        # Snakemake runs, as the report does, not as a job of its own (a minute asked, a queue wait)
        localrule: True
        conda:
            ENV_ML_CPU
        threads: 1
        resources:
            mem_mb=mem_mb(1000),
            runtime=runtime(1),
        params:
            claim=_claim,
            settings=settings_json(_spec["settings"], seeds=_seeds, torch=_spec["torch"]),
            measurements=lambda wildcards, input: " ".join(
                f"--input measurements={path}" for path in input.measurements
            ),
            seeds=_seed_flags(_seeds or []),
            captions=FigureCaptions(concept_result(_claim)),
        shell:
            '"$WHYLAB_PYTHON" -m whylab {params.claim} --settings {params.settings:q} {params.measurements}'
            " {params.seeds} --output result={output.result} > {log} 2>&1"
