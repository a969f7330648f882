"""C11's parts (VALIDITY 7-9), both definition checks on the library encoder–decoders (T5, BART):
"the decoder has cross-attention" and "it uses the encoder's output as query and key". Each has
this run's label from ``verdict.library_verdict_roles`` and the literature's label computed from
``claim.yaml``'s record of Vaswani et al. 2017, section 3.2.3. Pure: numbers in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, published_numbers
from whylab.verdict import Kind, Label

SPEC = load_spec("C11")


def _source(role: Mapping[str, bool], p: str) -> str:
    if role.get(f"{p}_from_encoder"):
        return "encoder"
    return "decoder" if role.get(f"{p}_from_decoder") else "unread"


def field_has_cross() -> FieldAnswer:
    """Vaswani et al.: the recorded number of cross-attention sub-layers per decoder layer; one or
    more -> supported, none -> not supported."""
    (paper,) = published_numbers(SPEC.part("has_cross_attention"))
    value = float(paper.value)
    label = Label.SUPPORTED if value >= 1 else Label.NOT_SUPPORTED
    return FieldAnswer(label, Msg("C11.part.has_cross_attention.field", value=value), (paper,))


def field_query_key() -> FieldAnswer:
    """Vaswani et al.: where the recorded queries and keys come from; both the encoder ->
    supported, keys from the encoder but queries from the decoder -> not supported (the notes
    name the query's side wrongly), anything else -> inconclusive."""
    papers = published_numbers(SPEC.part("query_key"))
    by_role = {p.unit: str(p.value) for p in papers}
    query, key = by_role.get("query source"), by_role.get("key source")
    if query == "encoder" and key == "encoder":
        label = Label.SUPPORTED
    elif (key == "encoder" and query == "decoder") or key == "decoder":
        label = Label.NOT_SUPPORTED
    else:
        label = Label.INCONCLUSIVE
    reason = Msg("C11.part.query_key.field", query=query or "-", key=key or "-")
    return FieldAnswer(label, reason, papers)


def has_cross_part(lib: Mapping[str, Any]) -> PartVerdict:
    """Cross-attention in every decoder layer of every traced encoder–decoder -> supported; no
    encoder–decoder with any -> not supported; some layers only -> partly."""
    models = list(lib["models"])
    if not models:
        label, key = Label.NOT_SUPPORTED, "none"
    elif lib["every_layer"]:
        label, key = Label.SUPPORTED, "every_layer"
    else:
        label, key = Label.PARTLY, "some_layers"
    reason = Msg(
        f"C11.part.has_cross_attention.run.{key}", names=models or ["-"], without=lib["without"] or ["-"]
    )
    part = SPEC.part("has_cross_attention")
    return PartVerdict(part.id, part.words, Kind.DEFINITION, label, reason, None, field_has_cross())


def query_key_part(lib: Mapping[str, Any]) -> PartVerdict:
    """Queries and keys both from the encoder output -> supported; keys from the encoder and
    queries from the decoder, or keys not from the encoder -> not supported; the queries' side
    unread -> inconclusive (the same reading as the claim's label)."""
    roles = lib["roles"]
    query, key, value = (_source(roles, p) for p in ("q", "k", "v"))
    if key != "encoder":
        label = Label.NOT_SUPPORTED
    elif query == "encoder":
        label = Label.SUPPORTED
    elif query == "decoder":
        label = Label.NOT_SUPPORTED
    else:
        label = Label.INCONCLUSIVE
    reason = Msg(
        "C11.part.query_key.run",
        names=lib["models"] or ["-"],
        query=Msg(f"C11.part.side.{query}"),
        key=Msg(f"C11.part.side.{key}"),
        value=Msg(f"C11.part.side.{value}"),
    )
    part = SPEC.part("query_key")
    return PartVerdict(part.id, part.words, Kind.DEFINITION, label, reason, None, field_query_key())


def judged_parts(lib: Mapping[str, Any]) -> list[PartVerdict]:
    return [has_cross_part(lib), query_key_part(lib)]
