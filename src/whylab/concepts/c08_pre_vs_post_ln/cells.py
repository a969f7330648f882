"""C08's cells, read from the settings: the pre-registered primary cells and the warm-up cells
(primary cells run again with a linear warm-up: they decide the warm-up part). Each cell has its
own init std (the cell's, else the section's, else Xavier-like 1/√d_model). Light (no torch, no
texts): the measuring and the deciding step both read it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from whylab.errors import InputError

POSITIONS = ("pre", "post")


def cell_key(cell: Mapping[str, Any]) -> str:
    return f"{cell['depth']}L-lr{cell['lr']:g}-std{cell['init_std']:.3g}-wu{cell['warmup']}"


def cold_key(cell: Mapping[str, Any]) -> str:
    """The key of ``cell`` without warm-up: a warm-up cell's primary cell."""
    return cell_key({**cell, "warmup": 0})


def section_init_std(settings: Mapping[str, Any]) -> float:
    """The section's init std: ``init_std`` when set, else Xavier-like 1/√d_model (Xiong et al.)."""
    std = settings.get("init_std")
    if std is not None:
        return float(std)
    d_model = settings.get("d_model") or (settings.get("model") or {}).get("d_model")
    if d_model is None:
        raise InputError("mechanisms.C08: no d_model to derive the Xavier-like init std from")
    return 1.0 / math.sqrt(int(d_model))


def _warmup_of(c: Mapping[str, Any], settings: Mapping[str, Any]) -> int:
    """A primary cell's warm-up run: its own ``warmup_steps``, else the section's where its depth
    is in ``warmup_depths``; 0: none."""
    if c.get("warmup_steps") is not None:
        return int(c["warmup_steps"])
    depths = {int(d) for d in settings.get("warmup_depths") or ()}
    return int(settings.get("warmup_steps") or 0) if int(c["depth"]) in depths else 0


def cells_of(settings: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(primary cells, warm-up cells) from the config."""
    default_std = section_init_std(settings) if settings["primary_cells"] else 0.0
    primary, extra = [], []
    steps = settings.get("steps")
    for c in settings["primary_cells"]:
        std = float(c["init_std"]) if c.get("init_std") is not None else default_std
        cell = {"depth": int(c["depth"]), "lr": float(c["lr"]), "init_std": std, "warmup": 0}
        primary.append(cell)
        warmup = _warmup_of(c, settings)
        if steps is not None and warmup >= int(steps):
            raise InputError(f"mechanisms.C08: warm-up of {warmup} steps must be below steps ({steps})")
        if warmup > 0:
            extra.append({**cell, "warmup": warmup})
    if not primary:
        raise InputError("mechanisms.C08.primary_cells: at least one cell is needed")
    keys = [cell_key(c) for c in primary]
    if len(set(keys)) < len(keys):
        raise InputError(f"mechanisms.C08.primary_cells: a cell is listed twice ({keys})")
    return primary, extra
