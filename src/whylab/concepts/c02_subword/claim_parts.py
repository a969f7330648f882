"""C02's sentence part by part: "고빈도 단어는 단어 자체로 토큰화" (frequent words stay whole) and
"가끔 나오는 단어는 작은 단어로 토큰화" (rare words are split, fewer pieces the more frequent).

Per language, the share of judged configurations showing the part: at least ``holds_share`` ->
supported, at most 1 - ``holds_share`` -> not supported, between -> partly; the languages combine
by :func:`whylab.parts.combine`. A language whose most frequent usable band starts below
``FREQUENT_FLOOR`` occurrences (the Korean corpus: 29k training characters, so its top band is
words seen 20-99 times) cannot show what the notes' frequent words do: there a frequent-words part
that does not hold is limited, never a lower label.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts.spec import load_spec
from whylab.messages import Msg, language_name
from whylab.parts import PartVerdict, combine
from whylab.verdict import Kind, Label

FREQUENT_FLOOR = 100  # a top band starting below this many training occurrences is not "frequent"


def band_floor(band: str | None) -> int:
    """The lower bound of a band label ("20–99" -> 20, "100+" -> 100)."""
    match = re.match(r"\d+", band or "")
    return int(match.group()) if match else 0


def share_label(share: float, holds_share: float) -> Label:
    if share != share:  # nan
        return Label.INCONCLUSIVE
    if share >= holds_share:
        return Label.SUPPORTED
    return Label.NOT_SUPPORTED if share <= 1 - holds_share else Label.PARTLY


def _part(
    claim_id: str, pid: str, per_lang: Mapping[str, Mapping[str, Any]], holds_share: float
) -> PartVerdict:
    part = load_spec(claim_id).part(pid)
    labels, details = [], []
    for lang, v in sorted(per_lang.items()):
        if pid == "frequent_whole":
            share = float(v.get("share_frequent_whole", v["share_holds"]))
        else:
            share = min(float(v.get("share_rare_split", v["share_holds"])), float(v["share_monotone"]))
        label = share_label(share, holds_share)
        low = pid == "frequent_whole" and band_floor(v.get("top_band")) < FREQUENT_FLOOR
        if low and label is not Label.SUPPORTED:
            label = Label.INCONCLUSIVE
        labels.append(label)
        key = "limited" if low and label is Label.INCONCLUSIVE else "judged"
        details.append(
            Msg(
                f"C02.part.language.{key}",
                language=language_name(lang),
                share=share,
                band=v.get("top_band"),
                floor=FREQUENT_FLOOR,
            )
        )
    return PartVerdict(
        part.id, part.words, Kind.EXPERIMENT, combine(labels), Msg(f"C02.part.{pid}.run", languages=details)
    )


def build_parts(
    claim_id: str, per_lang: Mapping[str, Mapping[str, Any]], holds_share: float
) -> list[PartVerdict]:
    return [_part(claim_id, pid, per_lang, holds_share) for pid in ("frequent_whole", "rare_split")]


def failing_tokenizers(configs: Sequence[Mapping[Any, Any]], language: str) -> list[str]:
    """The judged configurations of ``language`` whose most frequent band is not mostly whole."""
    return [
        str(c["tokenizer"])
        for c in configs
        if c["language"] == language and not c["vocab_covers_word_types"] and not c["frequent_whole"]
    ]
