"""C19's verdict driven to every label it can return from synthetic metrics; its texts render in Korean; its measuring step stays light."""

from __future__ import annotations

from typing import Any

from catalogue_checks import assert_explained
from claim_packages import assert_measuring_is_light
from whylab.concepts.c19_checkpointing import figures as c19_figures
from whylab.concepts.c19_checkpointing import verdict as c19
from whylab.messages import Msg, english_runs
from whylab.verdict import Label


def test_c19_measuring_is_light() -> None:
    assert_measuring_is_light("C19")


# --------------------------------------------------------------------------- C19


def _c19(**kw: Any) -> dict[str, Any]:
    m = {
        "checked_modes": ["per_layer"],
        "min_saving": 0.38,
        "max_saving": 0.74,
        "share_points_saving": 1.0,
        "time_overhead_min": 0.12,
        "time_overhead_max": 0.6,
        "grad_rel_max_diff": 0.0,
        "min_saving_threshold": 0.1,
    }
    m.update(kw)
    return m


def test_c19_supported() -> None:
    v = c19.verdict(_c19())
    assert v.label == Label.SUPPORTED and "38–74%" in v.reason


def test_c19_partly_and_not_supported() -> None:
    assert c19.verdict(_c19(share_points_saving=0.5, min_saving=0.02)).label == Label.PARTLY
    assert (
        c19.verdict(_c19(share_points_saving=0.0, min_saving=-0.01, max_saving=0.05)).label
        == Label.NOT_SUPPORTED
    )


def test_c19_inconclusive() -> None:
    assert c19.verdict(_c19(grad_rel_max_diff=0.1)).label == Label.INCONCLUSIVE
    assert c19.verdict(_c19(checked_modes=[], min_saving=None)).label == Label.INCONCLUSIVE


def test_c19_every_branch_has_a_takeaway_and_renders_in_korean() -> None:
    for m, label in (
        (_c19(), Label.SUPPORTED),
        (
            _c19(prediction_max_abs_gap=0.04, predicted_saving_min=0.4, predicted_saving_max=0.7),
            Label.SUPPORTED,
        ),
        (_c19(share_points_saving=0.5, min_saving=0.02), Label.PARTLY),
        (_c19(share_points_saving=0.0, min_saving=-0.01, max_saving=0.05), Label.NOT_SUPPORTED),
        (_c19(grad_rel_max_diff=0.1), Label.INCONCLUSIVE),
        (_c19(checked_modes=[], min_saving=None), Label.INCONCLUSIVE),
    ):
        v = c19.verdict(m)
        assert v.label == label
        assert_explained(v, "C19")
    v = c19.verdict(_c19(prediction_max_abs_gap=0.04, predicted_saving_min=0.4, predicted_saving_max=0.7))
    assert "predicted a 40–70% activation saving, within 4 points" in v.reason
    assert "each step takes +12% to +60% longer" in v.reason
    assert "10%" in c19.verdict(_c19(share_points_saving=0.0, max_saving=0.05)).correction


def test_c19_evidence_texts_render_in_korean() -> None:

    texts = [
        Msg("C19.method"),
        *(
            Msg("C19.table.checkpointing.caption", batch=2, method=c19_figures.measure_method(m), repeats=3)
            for m in c19_figures.MEASURE_METHODS
        ),
        Msg("C19.literature.chen.finding"),
        Msg("C19.literature.chen.note", lo=10, hi=40, none_growth=3.9, sqrt_growth=2.1, first=2, last=8),
        Msg("C19.literature.chen.no_run"),
        *(Msg(f"C19.figure.checkpointing_{n}.{p}") for n in ("memory", "time") for p in ("title", "caption")),
    ]
    assert "MemTracker (dispatch-level live tensor bytes)" in texts[1]
    for t in texts:
        assert t and english_runs(t.in_("ko")) == [], t.in_("ko")
    assert c19_figures.measure_method("something else") == "something else"
