"""Why a comparison of :mod:`whylab.concepts._settle` is not judged yet, in words. Deciding code
only: the measuring steps import ``_settle`` (numbers), never the texts, so a text edit re-runs no
training."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.messages import Msg


def still_moving(st: Mapping[str, Any], window: int, margin: float, too_few_key: str, moving_key: str) -> Msg:
    """Too few evaluations for the stability window (``too_few_key``), or the difference still
    spanning ``margin`` or more over it (``moving_key``); ``st`` is :func:`~whylab.concepts._settle.settle`'s."""
    if st["span"] is None:
        return Msg(too_few_key, window=window)
    return Msg(
        moving_key, span=float(st["span"]), from_step=st["from_step"], to_step=st["to_step"], margin=margin
    )
