"""C17's parts: each line of the notes' model-memory block judged on its own (``claim.yaml``).

Pure: metrics in, :class:`~whylab.parts.PartVerdict` out. All parts are definition checks (bytes of
tensors built by torch, torchao, bitsandbytes; exact counts of transformers' classes). The float
sizes are torch's element sizes, true by construction: shown, they decide nothing of substance. The
quantized lines are judged on the quantized layers (``INT8 = 1``, ``INT4 = 0.5``) and the rule
itself (``기본_메모리 = 파라미터_수 * 데이터타입_크기``) on whole models of the notes' BERT-base and
GPT-3 from exact counts, where the embeddings, norms and head stay in 16-bit (the small model loaded
here, with a fifth of its parameters outside its Linear layers, is reported beside them).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from whylab.concepts.spec import load_spec
from whylab.files import parse_yaml
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Published
from whylab.verdict import Kind, Label

SPEC = load_spec("C17")
S, P, N, U = Label.SUPPORTED, Label.PARTLY, Label.NOT_SUPPORTED, Label.INCONCLUSIVE
# the notes' model name -> (the notes' parameter count, the count's row in metrics["counts"])
QUOTED = {"bert_numbers": ("bert-base", 110e6), "gpt3_numbers": ("gpt3-175b", 175e9)}


@cache
def literature(part_id: str) -> tuple[Published, ...]:
    raw = parse_yaml(files(__package__).joinpath("claim.yaml").read_text(encoding="utf-8"))
    part = next(p for p in raw["parts"] if p["id"] == part_id)
    return tuple(Published.from_dict(x) for x in part.get("literature") or ())


def ratio_label(ratios: Mapping[str, float], tol: float) -> Label:
    """All within ``tol`` of the nominal bytes: supported; none: not supported; a mix: partly."""
    if not ratios:
        return U
    ok = [abs(r - 1) <= tol for r in ratios.values()]
    return S if all(ok) else N if not any(ok) else P


def notes_label(err: float | None, tol_notes: float) -> Label:
    if err is None:
        return U
    return S if err <= tol_notes else N if err > SPEC.threshold("notes_numbers_off") else P


def _part(pid: str, run: Label, reason: Msg, field: FieldAnswer | None = None) -> PartVerdict:
    return PartVerdict(pid, SPEC.part(pid).words, Kind.DEFINITION, run, reason, None, field)


def _ratios(m: Mapping[str, Any], nominal: str, key: str) -> dict[str, float]:
    fmts = m.get("formats") or {}
    return {k: v[key] for k, v in fmts.items() if v["nominal"] == nominal and v.get("packed", True)}


def _listed(ratios: Mapping[str, float]) -> list[Msg]:
    return [Msg("C17.part.ratio_item", name=k, ratio=r) for k, r in ratios.items()]


def _float_parts(m: Mapping[str, Any], tol_f: float) -> list[PartVerdict]:
    out = []
    for pid, nominals in (("fp32", ("fp32",)), ("fp16", ("fp16", "bf16"))):
        ratios = {k: v for n in nominals for k, v in _ratios(m, n, "model_ratio").items()}
        reason = Msg("C17.part.float.run", items=_listed(ratios)) if ratios else Msg("C17.part.unmeasured")
        out.append(_part(pid, ratio_label(ratios, tol_f), reason))
    return out


def _notes_scale(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The whole-model rows (``whole_at_scale``) of the notes' own models, BERT-base and GPT-3."""
    notes = {model for model, _ in QUOTED.values()}
    return [r for r in m.get("whole_at_scale") or [] if r["model"] in notes]


def scale_items(m: Mapping[str, Any], notes_only: bool = False) -> list[Msg]:
    """Each counted architecture's (or only the notes' models') whole-model ratios in INT8 and INT4
    (16-bit for the rest)."""
    rows = _notes_scale(m) if notes_only else m.get("whole_at_scale") or []
    return [
        Msg(
            "C17.part.model_memory.scale_item",
            model=r["model"],
            int8=r["int8"],
            int4=r["int4"],
            share=r["share_outside"],
        )
        for r in rows
    ]


def _model_memory(m: Mapping[str, Any], tol_q: float) -> PartVerdict:
    """The rule on whole models: decided at the notes' scale (their two models, exact counts, the
    Linear weights quantized and the rest 16-bit); the small model loaded here is what this run
    measured in memory, where a fifth of the parameters sit outside the Linear layers."""
    whole = {**_ratios(m, "int8", "model_ratio"), **_ratios(m, "int4", "model_ratio")}
    fmts = m.get("formats") or {}
    share = next((1 - v["linear_params"] / v["params"] for v in fmts.values() if v.get("params")), None)
    small = (
        Msg("C17.part.model_memory.run", items=_listed(whole), share=share)
        if whole and share is not None
        else Msg("C17.part.unmeasured")
    )
    notes = _notes_scale(m)
    if not notes:  # no exact counts of the notes' models: the small model decides
        return _part("model_memory", ratio_label(whole, tol_q), small)
    held = {r["model"]: all(abs(r[f] - 1) <= tol_q for f in ("int8", "int4")) for r in notes}
    ratios = {f"{r['model']} {f}": r[f] for r in notes for f in ("int8", "int4")}
    ok, bad = [k for k, v in held.items() if v], [k for k, v in held.items() if not v]
    verdict = Msg(
        f"C17.part.model_memory.scale_verdict.{'all' if not bad else 'none' if not ok else 'some'}",
        ok=ok,
        bad=bad,
    )
    reason = Msg("C17.part.model_memory.scale", items=scale_items(m), tol=tol_q, verdict=verdict, small=small)
    return _part("model_memory", ratio_label(ratios, tol_q), reason)


def _quant_parts(m: Mapping[str, Any], tol_q: float) -> list[PartVerdict]:
    int8 = _ratios(m, "int8", "layer_ratio")
    int4 = _ratios(m, "int4", "layer_ratio")
    qlora = literature("int4_half_byte")[0]
    qlora_ratio = float(qlora.value) / 8 / 0.5
    return [
        _model_memory(m, tol_q),
        _part(
            "int8",
            ratio_label(int8, tol_q),
            Msg("C17.part.layers.run", items=_listed(int8)) if int8 else Msg("C17.part.unmeasured"),
        ),
        _part(
            "int4_half_byte",
            ratio_label(int4, tol_q),
            Msg("C17.part.int4_half_byte.run", items=_listed(int4), bits=8 * 0.5 * max(int4.values()))
            if int4
            else Msg("C17.part.unmeasured"),
            FieldAnswer(
                ratio_label({"nf4": qlora_ratio}, tol_q),
                Msg("C17.part.int4_half_byte.field", bits=float(qlora.value), ratio=qlora_ratio),
                (qlora,),
            ),
        ),
    ]


def _count_parts(m: Mapping[str, Any], tol_n: float) -> list[PartVerdict]:
    counts = {c["model"]: c for c in m.get("counts") or []}
    rows = m.get("notes_rows") or []
    out = []
    for pid, (model, quoted) in QUOTED.items():
        errs = [abs(r["rel_err_decimal"]) for r in rows if r["model"] == model]
        err = max(errs) if errs else None
        exact = counts.get(model, {}).get("meta")
        reason = (
            Msg(f"C17.part.{pid}.run", exact=exact, err=err)
            if err is not None and exact
            else Msg("C17.part.unmeasured")
        )
        paper = literature(pid)[0]
        lit_err = abs(quoted - float(paper.value)) / float(paper.value)
        agree = lit_err <= SPEC.threshold("quoted_count_agreement")
        field = FieldAnswer(
            S if agree else N,
            Msg(
                f"C17.part.{pid}.field",
                paper=float(paper.value),
                notes=quoted,
                err=lit_err,
            ),
            (paper,),
        )
        out.append(_part(pid, notes_label(err, tol_n), reason, field))
    return out


def build_parts(m: Mapping[str, Any]) -> list[PartVerdict]:
    made = {
        p.id: p
        for p in [
            *_quant_parts(m, float(m["tolerance_quant"])),
            *_float_parts(m, float(m["tolerance_float"])),
            *_count_parts(m, float(m["tolerance_notes"])),
        ]
    }
    return [made[p.id] for p in SPEC.parts]
