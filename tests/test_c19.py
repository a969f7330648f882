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


REAL = c19.real_scale()


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
        "measured_activation_saving_min": 0.45,
        "measured_activation_saving_max": 0.72,
        "saving_points": 5,
        "saving_sd": 0.14,
        "saving_mean": 0.55,
        "predicted_saving_min": 0.42,
        "real_scale": REAL,
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
    assert "predicted a 40–70% activation saving, and the activations at the" in v.reason
    assert "fell by 45–72%, within 4 points" in v.reason
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


# --------------------------------------------------------------------------- parts


def test_c19_part_labels_are_reachable_and_power_gates_them() -> None:
    (part,) = c19.verdict(_c19()).parts
    assert part.run is Label.SUPPORTED and part.power is not None and not part.power.limited
    # the sd over points gives the detectable saving; 5 points, sd 0.14: (2.776 + 0.941) 0.14 / sqrt 5
    assert abs(part.power.detectable - 0.2327) < 1e-3
    assert c19.verdict(_c19(share_points_saving=0.5, min_saving=0.02)).parts[0].run is Label.PARTLY
    nowhere = _c19(share_points_saving=0.0, min_saving=-0.01, max_saving=0.05)
    assert c19.verdict(nowhere).parts[0].run is Label.NOT_SUPPORTED
    # a run whose spread over points hides the predicted saving is limited, never lower
    noisy = c19.verdict(nowhere | {"saving_sd": 0.6}).parts[0]
    assert noisy.power is not None and noisy.power.limited and noisy.run is Label.INCONCLUSIVE
    flat = c19.verdict(nowhere | {"saving_sd": 0.0}).parts[0]
    assert flat.power is not None and flat.power.zero_spread and flat.run is Label.INCONCLUSIVE
    assert c19.verdict(_c19(grad_rel_max_diff=0.1)).parts[0].run is Label.INCONCLUSIVE


def test_c19_literature_is_computed_from_chen_et_al() -> None:
    field = c19.field_answer(0.1)
    assert [p.value for p in field.published] == [48, 7, 30]
    assert field.label is Label.SUPPORTED and "85% saved" in field.reason
    assert c19.field_answer(0.9).label is Label.NOT_SUPPORTED  # 85% < 90%: the rule reads the numbers


def test_c19_real_scale_says_activations_fall_but_the_peak_does_not() -> None:
    assert REAL["activation_saving"] > 0.9 and abs(REAL["peak_saving"]) < 1e-9
    (part,) = c19.verdict(_c19()).parts
    assert "11.4 to 0.9 GiB" in part.reason and "100.4 to 100.4 GiB (0% saved)" in part.reason
    assert part.field is not None
    for text in (part.reason, part.field.reason):
        assert isinstance(text, Msg) and english_runs(text.in_("ko")) == [], text
    not_judged = c19.verdict(_c19(checked_modes=[], min_saving=None)).parts[0].reason
    assert isinstance(not_judged, Msg) and not_judged.in_("ko")


def test_c19_interleaves_the_timing_arms() -> None:
    from whylab.concepts.c19_checkpointing.experiment import interleaved_times

    calls: list[str] = []
    steps = {m: (lambda m=m: calls.append(m)) for m in ("none", "per_layer", "sqrt")}
    times = interleaved_times(steps, 3, "cpu")
    assert {m: len(t) for m, t in times.items()} == {"none": 3, "per_layer": 3, "sqrt": 3}
    timed = calls[3:]  # after one warm-up each
    assert timed == ["none", "per_layer", "sqrt", "per_layer", "sqrt", "none", "sqrt", "none", "per_layer"]
