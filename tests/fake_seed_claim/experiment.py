"""Four standard-normal draws per seed (the runner seeds torch before each call)."""

from __future__ import annotations

from typing import Any

import torch

from whylab.concepts.context import ConceptContext


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    draw = torch.randn(4)
    return {
        "seed": seed,
        "draw": draw.tolist(),
        "mean": float(draw.mean()),
        "scale": float(ctx.settings.get("scale", 1.0)),
    }
