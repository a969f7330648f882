"""Reading the quantized variants' measures.json and the real-scale step's record back (JSON only).

Light on purpose (no torch, no plotting, no message catalogues): the measure jobs of C12, C13
and C15 gather these files, and what a measure job imports decides when Snakemake re-runs it.
The tables and figures drawn from them are in :mod:`whylab.quant.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from whylab.concepts.context import ConceptContext
from whylab.errors import InputError
from whylab.files import read_json

# what C12/C13 keep of the real-scale step's measures.json, besides its models
REAL_SCALE_KEYS = (
    "cpu_features",
    "last_level_cache_bytes",
    "int8_setup",
    "int4_block_size",
    "clock",
    "threads",
)
REAL_SCALE_MODELS = ("bert", "llama")


def load_measures(variants_dir: Path, names: Sequence[str]) -> list[dict[str, Any]]:
    """The measures.json of each named variant, in the given order."""
    rows = []
    for name in names:
        path = Path(variants_dir) / name / "measures.json"
        if not path.is_file():
            raise InputError(f"{path}: missing (the quant rule for {name} did not run)")
        rows.append(read_json(path))
    return rows


def real_scale_metrics(path: Path | None) -> dict[str, Any] | None:
    """The numbers C12/C13 need from the real-scale step's measures.json (None when not given)."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise InputError(f"{path}: missing (the quant_real_scale rule did not run)")
    rec = read_json(path)
    keep = {k: rec[k] for k in REAL_SCALE_KEYS if k in rec}
    for model in REAL_SCALE_MODELS:
        if model in rec:
            keep[model] = rec[model]
    return keep


def gather(ctx: ConceptContext) -> dict[str, Any]:
    """C12's and C13's measurements: every variant's measures.json as written, the real-scale
    record (None without the ``real_scale`` input), the model folder and the device."""
    return {
        "rows": load_measures(ctx.inputs["variants"], list(ctx.settings["variants"])),
        "real_scale": real_scale_metrics(ctx.inputs.get("real_scale")),
        "model_source": str(ctx.inputs["model"]),
        "device": ctx.device,
    }
