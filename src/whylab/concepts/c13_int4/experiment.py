"""C13's measurements: the quantized variants' measures.json and the real-scale step's record.

The variants are quantized and measured by their own jobs (``quant_<family>``: size, perplexity,
latency vs FP32) and the real-scale step times BERT-base and a Llama-2-7B-width layer; this step
gathers those records as they were written. Deciding is in ``verdict.py``, drawing in
``figures.py``.
"""

from __future__ import annotations

from typing import Any

from whylab.concepts.context import ConceptContext
from whylab.quant.variant_records import gather


def measure(ctx: ConceptContext) -> dict[str, Any]:
    return gather(ctx)
