"""C08's cells, read from the settings: the pre-registered primary cells and the warm-up cells
(the same cells with a linear warm-up: they decide the warm-up part). Light (no torch, no texts):
the measuring and the deciding step both read it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.errors import InputError

POSITIONS = ("pre", "post")


def cell_key(cell: Mapping[str, Any]) -> str:
    return f"{cell['depth']}L-lr{cell['lr']:g}-wu{cell['warmup']}"


def cells_of(settings: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(primary cells, warm-up cells) from the config."""
    primary = [
        {"depth": int(c["depth"]), "lr": float(c["lr"]), "warmup": 0} for c in settings["primary_cells"]
    ]
    if not primary:
        raise InputError("mechanisms.C08.primary_cells: at least one cell is needed")
    warmup = int(settings["warmup_steps"])
    steps = settings["steps"]
    if steps is not None and warmup >= int(steps):
        raise InputError(f"mechanisms.C08.warmup_steps: {warmup} must be below steps ({steps})")
    depths = {int(d) for d in settings["warmup_depths"]}
    extra = [{**c, "warmup": warmup} for c in primary if warmup > 0 and c["depth"] in depths]
    return primary, extra
