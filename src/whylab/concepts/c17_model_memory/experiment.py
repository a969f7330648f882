"""C17's measurements: exact parameter counts of the notes' architectures, and a small model
loaded in each storage format.

Measuring only: per architecture its analytic and meta-device parameter counts; per format the
bytes of the loaded model's tensors (and of its quantized layers), its parameter counts and, for
the formats asked, the resident-set growth of loading it in a fresh process. A format whose
kernels are missing here is recorded with its error. Deciding is in ``verdict.py``, drawing in
``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import ConceptContext
from whylab.memory import calculator, counting, formats
from whylab.memory import measure as mem
from whylab.memory.training import build_llama, n_params


def count_models(specs: list[counting.ModelSpec]) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        analytic = counting.analytic_params(spec)
        meta, quantizable = counting.meta_counts(spec)
        rows.append(
            {
                "model": spec.name,
                "family": spec.family,
                "analytic": analytic,
                "meta": meta,
                "match": analytic == meta,
                "quantizable": quantizable,
                "quoted": spec.quoted_params,
                "quoted_rel_err": (spec.quoted_params - meta) / meta if spec.quoted_params else None,
                "source": spec.source,
            }
        )
    return rows


def measure_format(
    ctx: ConceptContext, model_cfg: Mapping[str, Any], name: str, model: Any, rss_repeats: int
) -> dict[str, Any]:
    """One format, ``model`` loaded in it: its bytes and counts, and its resident-set growth
    ``rss_repeats`` times."""
    fmt = formats.FORMATS[name]
    seed = ctx.seeds[0]
    reference = build_llama(model_cfg, seed, "fp32")
    layer_bytes = formats.quantized_layer_bytes(model) if fmt.nominal in ("int8", "int4") else None
    rss = [
        mem.rss_peak(
            "whylab.memory.formats:load_work",
            {"model_cfg": dict(model_cfg), "fmt": name, "seed": seed},
            threads=ctx.threads,
        )["resident_delta_bytes"]
        for _ in range(rss_repeats)
    ]
    return {
        "nominal": fmt.nominal,
        "library": fmt.library,
        "packed": fmt.packed,
        "description": fmt.description,
        "nominal_bytes_per_value": calculator.dtype_bytes(fmt.nominal),
        "params": n_params(reference),
        "linear_params": formats.linear_weight_params(reference),
        "model_bytes": mem.tensor_bytes(model),
        "layer_bytes": layer_bytes,
        "rss_resident": rss,
    }


def measure(ctx: ConceptContext) -> dict[str, Any]:
    s = ctx.settings
    counts = count_models([counting.spec_from_mapping(m) for m in s["models"]])
    measured: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, str]] = []
    for name in s["formats"]:
        fmt = formats.FORMATS[name]
        try:
            model = fmt.apply(build_llama(s["model"], ctx.seeds[0], "fp32"))
        except Exception as exc:  # a format whose kernels are missing here is reported, not hidden
            failed.append({"name": name, "library": fmt.library, "error": f"{type(exc).__name__}: {exc}"})
            continue
        repeats = int(s["repeats"]) if name in s["rss_formats"] else 0
        measured[name] = measure_format(ctx, s["model"], name, model, repeats)
        del model
    return {"counts": counts, "formats": measured, "failed_formats": failed}
