"""A report of all 21 claims from fake results, for the tests of the page's structure, links, length
and prose: claims with parts (each mark of a part's three) and claims without, as today's are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from fake_decisions import decide_fake
from whylab import claims, plotting
from whylab.messages import Msg
from whylab.parts import FieldAnswer, PartVerdict, Power, Published
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict

XIONG = Published("Xiong et al. 2020", "Figure 3", 0.4, "nats", "https://arxiv.org/abs/2002.04745")
VASWANI = Published("Vaswani et al. 2017", "section 3.2.1", "√d_k", "", "")


def _draw(ctx):  # type: ignore[no-untyped-def]
    refs = []
    for name in ("first", "second"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([0, 1], [0, 1])
        ax.set_xlabel("x (units)")
        ax.set_ylabel("y (units)")
        refs.append(plotting.save(fig, ctx.outdir, name, f"The {name} figure", "A caption."))
    return Evidence(
        method=Msg("report.scale.intro"),
        metrics={"gap": 0.1},
        tables=[Table("t", Msg("report.run.rule_times"), ["arm", "loss"], [["a", 1.0], ["b", 2.0]])],
        figures=refs,
        literature=[
            LiteratureCheck("Vaswani et al. 2017, section 3.2.1", Msg("report.notes.intro"), True),
            LiteratureCheck("Sennrich et al. 2016; Kudo 2018", Msg("report.notes.intro"), None),
        ],
    )


def _verdict(metrics):  # type: ignore[no-untyped-def]
    return Verdict(Label.SUPPORTED, Msg("report.glance.caption"), takeaway=Msg("report.glance.title"))


def parts_for(case: int) -> list[PartVerdict]:
    """Parts whose "what to believe" varies with ``case``: 0 both agree (supported), 1 the run is
    limited and the literature finds it wrong (the badge comes from the literature), 2 the run
    finds one part wrong and one right (partly supported), 3 none decides."""
    sure = Power.paired(0.02, 5, "nats", predicted=0.4)
    weak = Power.paired(0.5, 3, "nats", predicted=0.1)
    lit_yes = FieldAnswer(Label.SUPPORTED, Msg("report.claim.agrees"), (XIONG,))
    lit_no = FieldAnswer(Label.NOT_SUPPORTED, Msg("report.claim.disagrees"), (XIONG, VASWANI))
    yes = Msg("report.claim.agrees")
    if case == 0:
        return [PartVerdict("a", "임베딩 차원", Kind.EXPERIMENT, Label.SUPPORTED, yes, sure, lit_yes)]
    if case == 1:
        return [PartVerdict("a", "기울기 소실", Kind.EXPERIMENT, Label.INCONCLUSIVE, yes, weak, lit_no)]
    if case == 2:
        return [
            PartVerdict("a", "임베딩 차원", Kind.EXPERIMENT, Label.NOT_SUPPORTED, yes, sure),
            PartVerdict("b", "기울기 소실", Kind.DEFINITION, Label.SUPPORTED, yes, None, lit_yes),
        ]
    return [PartVerdict("a", "임베딩 차원", Kind.EXPERIMENT, Label.INCONCLUSIVE, yes, weak)]


def verdict_of(case: int) -> dict[str, Any]:
    """The verdict of fake claim number ``case``: cases 0-3 have parts (see :func:`parts_for`),
    the others none, with one label each."""
    labels = [Label.SUPPORTED, Label.INCONCLUSIVE, Label.PARTLY, Label.INCONCLUSIVE]
    if case < 4:
        label, parts = labels[case], tuple(parts_for(case))
    else:
        label, parts = list(Label)[case % 4], ()
    correction = Msg("report.notes.intro") if label in (Label.PARTLY, Label.NOT_SUPPORTED) else ""
    return Verdict(
        label,
        Msg("report.glance.caption"),
        primary=Msg("report.scale.intro"),
        takeaway=Msg("report.glance.title"),
        correction=correction,
        parts=parts,
    ).to_dict()


def all_claims(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A result for each of the 21 claims: claim number i (from 0) gets :func:`verdict_of` (i)."""
    first = decide_fake(monkeypatch, "C01", root / "first" / "C01" / "result.json", _draw, _verdict)
    record = json.loads(first.read_text(encoding="utf-8"))
    record["seeds"] = [0, 1, 2]
    record["config"] = {"seeds": [0, 1, 2], "train": {"steps": 200}, "model": {"d_model": 32, "n_layers": 2}}
    out = {}
    for i, claim in enumerate(claims.CLAIMS):
        path = root / claim.id / "result.json"
        (path.parent / "figures").mkdir(parents=True)
        for fig in record["figures"]:
            for png in [fig["path"], *(t["path"] for t in (fig.get("translations") or {}).values())]:
                (path.parent / png).parent.mkdir(parents=True, exist_ok=True)
                (path.parent / png).write_bytes((first.parent / png).read_bytes())
        path.write_text(
            json.dumps(record | {"claim_id": claim.id, "verdict": verdict_of(i)}), encoding="utf-8"
        )
        out[claim.id] = path
    return out
