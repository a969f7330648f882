"""C09's sentence part by part: linear layers, dropout, normalisation, activation.

Each part is a definition check (no power): how many of the traced library models hold the
component in their feed-forward layer, beside how many of the recorded sources (Vaswani et al.'s
Eq. 2 and the transformers modules' own definitions, claim.yaml) list it. "In the FFN" is read as
the notes mean it: the module a library calls its feed-forward layer. The notes list dropout and
normalisation beside the linear layers and the activation, which is what such a module holds in
code (BERT's BertOutput: dense, LayerNorm, dropout; T5's T5LayerFF: layer_norm, DenseReluDense,
dropout), while the paper's FFN (Eq. 2) has neither. The stricter reading (a norm called between
the first and the last linear layer) is given in the norm part's reason beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts.spec import load_spec
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Published
from whylab.verdict import Kind, Label

COMPONENTS = ("linear", "dropout", "norm", "activation")  # the notes' order


def share_label(count: int, n: int) -> Label:
    """All of them -> supported, none -> not supported, some -> partly (nothing: inconclusive)."""
    if n == 0:
        return Label.INCONCLUSIVE
    if count == n:
        return Label.SUPPORTED
    return Label.NOT_SUPPORTED if count == 0 else Label.PARTLY


def listed(source: Published, component: str) -> bool:
    """Whether a recorded source lists ``component`` among its FFN's parts."""
    return component in {c.strip() for c in str(source.value).split(",")}


def field_answer(component: str, published: Sequence[Published]) -> FieldAnswer:
    having = [p.source for p in published if listed(p, component)]
    lacking = [p.source for p in published if not listed(p, component)]
    return FieldAnswer(
        share_label(len(having), len(published)),
        Msg(
            "C09.part.field",
            component=Msg(f"C09.part.component.{component}"),
            count=len(having),
            n=len(published),
            having=having or ["-"],
            lacking=lacking or ["-"],
        ),
        tuple(published),
    )


def counts(rows: Sequence[Mapping[str, Any]], min_linear: int, min_act: int) -> dict[str, list[str]]:
    """Per component: the traced models whose library FFN module holds it (the norm: as grouped by
    the library; ``norm_path``: called between the first and last linear layer)."""
    has = {
        "linear": lambda r: int(r["linear"]) >= min_linear,
        "dropout": lambda r: int(r["dropout"]) >= 1,
        "norm": lambda r: bool(r.get("norm_in_library_ffn_module", False)),
        "norm_path": lambda r: bool(r["norm_between_linears"]),
        "activation": lambda r: int(r["activation"]) >= min_act,
    }
    return {k: [str(r["model"]) for r in rows if f(r)] for k, f in has.items()}


def build_parts(
    claim_id: str, rows: Sequence[Mapping[str, Any]], min_linear: int, min_act: int
) -> list[PartVerdict]:
    spec = load_spec(claim_id)
    n = len(rows)
    having = counts(rows, min_linear, min_act)
    out = []
    for component in COMPONENTS:
        part = spec.part(component)
        models = having[component]
        params: dict[str, Any] = {"count": len(models), "n": n, "models": models or ["-"]}
        key = f"C09.part.{component}.run"
        if component == "norm":
            params.update(path=len(having["norm_path"]))
        out.append(
            PartVerdict(
                part.id,
                part.words,
                Kind.DEFINITION,
                share_label(len(models), n),
                Msg(key, **params),
                None,
                field_answer(component, [Published.from_dict(p) for p in part.literature]),
            )
        )
    return out
