"""Reading back what :mod:`whylab.thirdparty.llmcompressor_check` wrote, in the main environment.

C15's and C16's experiments put one part of ``results/thirdparty/llmcompressor.json`` into their
measurements (``gptq`` or ``smoothquant``), with the versions it ran with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def llmcompressor_part(path: Path | str | None, part: str) -> dict[str, Any]:
    """The ``part`` check of llmcompressor's result file, with ``versions`` and ``python`` beside it;
    ``{"ran": False}`` (no ``why_not``: the texts say "not measured") when the file is not given."""
    if path is None:
        return {"ran": False}
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    found = dict(record.get(part) or {"ran": False, "why_not": f"no {part!r} check in {path}"})
    return found | {"versions": record.get("versions", {}), "python": record.get("python")}
