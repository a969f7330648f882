"""The layout check every saved figure passes: no legend over data, no overlapping labels."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns

from whylab import plotting


def _labelled(ax: plt.Axes) -> None:
    ax.set_xlabel("x (units)")
    ax.set_ylabel("y (units)")


def test_legend_over_line_points_is_found() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.linspace(0, 1, 50)
    ax.plot(x, np.ones_like(x), label="flat at the top")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper right")
    problems = plotting.layout_problems(fig)
    plt.close(fig)
    assert len(problems) == 1 and "legend covers" in problems[0]


def test_legend_clear_of_data_passes() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.linspace(0, 1, 50)
    ax.plot(x, x, label="rising")
    ax.legend(loc="upper left")
    assert plotting.layout_problems(fig) == []
    plt.close(fig)


def test_legend_over_bars_and_scatter_is_found() -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
    a.bar([0, 1, 2], [3, 3, 3], label="tall bars")
    a.legend(loc="upper right")
    b.scatter([0.9, 0.95], [0.95, 0.9], label="points in the corner")
    b.set_xlim(0, 1)
    b.set_ylim(0, 1)
    b.legend(loc="upper right")
    problems = plotting.layout_problems(fig)
    plt.close(fig)
    assert len(problems) == 2 and all("legend covers" in p for p in problems)


def test_seaborn_grouped_bars_with_a_clear_legend_pass() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    df = pd.DataFrame({"x": list("abcabc"), "y": [1, 2, 3, 3, 2, 1], "h": list("pppqqq")})
    sns.barplot(df, x="x", y="y", hue="h", ax=ax)
    ax.set_ylim(0, 6)
    sns.move_legend(ax, "upper center", ncol=2)
    assert plotting.layout_problems(fig) == []
    plt.close(fig)


def test_crowded_tick_labels_are_found() -> None:
    """Like C11's y ticks that ran together ("7:0", "8:EOS")."""
    fig, ax = plt.subplots(figsize=(3, 1.5))
    ax.plot(range(10), range(10))
    ax.set_yticks(range(10), [f"{i}:EOS" for i in range(10)])
    problems = plotting.layout_problems(fig)
    plt.close(fig)
    assert problems and all("y tick label" in p and "overlaps" in p for p in problems)


def test_rotated_tick_labels_that_do_not_touch_pass() -> None:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([f"a long label {i}" for i in range(8)], range(8))
    ax.tick_params(axis="x", rotation=45)
    assert plotting.layout_problems(fig) == []
    plt.close(fig)


def test_overlapping_annotations_are_found() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.annotate("−2.1% perplexity", (0.5, 0.5))
    ax.annotate("+0.3% latency", (0.52, 0.51))
    problems = plotting.layout_problems(fig)
    plt.close(fig)
    assert any("annotation" in p and "overlaps" in p for p in problems)


def test_ticks_outside_the_view_are_not_counted() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.set_xticks([-5, -4.9, 0, 1], ["hidden", "also hidden", "0", "1"])
    ax.set_xlim(-0.1, 1.1)
    assert plotting.layout_problems(fig) == []
    plt.close(fig)


def _crowded() -> plt.Figure:
    """Two panels; the left one is full of points, so its legend has no free place, inside or out."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(6, 3))
    grid = np.linspace(0.02, 0.98, 12)
    xs, ys = np.meshgrid(grid, grid)
    left.scatter(xs.ravel(), ys.ravel(), s=4, label="everywhere")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.legend(loc="upper right")
    right.plot([0, 1], [0, 1])
    for ax in (left, right):
        _labelled(ax)
    return fig


def test_save_is_strict_in_tests_and_records_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(plotting.STRICT_ENV, "1")
    with pytest.raises(plotting.FigureLayoutError, match="legend covers"):
        plotting.save(_crowded(), tmp_path, "bad", "A bad figure", "Its legend hides data.")
    assert not (tmp_path / "figures" / "bad.png").exists()

    monkeypatch.setenv(plotting.STRICT_ENV, "0")
    ref = plotting.save(_crowded(), tmp_path, "bad", "A bad figure", "Its legend hides data.")
    problems = plotting.recorded_problems(tmp_path / ref.path)
    assert len(problems) == 1 and "legend covers" in problems[0]


def test_a_legend_over_data_is_moved_where_it_covers_none() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.linspace(0, 1, 50)
    ax.plot(x, np.ones_like(x), label="flat at the top")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper right", title="series")
    assert plotting.layout_problems(fig)
    plotting.tidy_layout(fig)
    assert plotting.layout_problems(fig) == []
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "series"
    assert [t.get_text() for t in legend.get_texts()] == ["flat at the top"]
    plt.close(fig)


def test_a_legend_with_no_room_inside_goes_right_of_the_last_panel() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["a", "b", "c", "d"], [1, 1, 1, 1], label="full height")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right")
    plotting.tidy_layout(fig)
    assert plotting.layout_problems(fig) == []
    legend = ax.get_legend()
    assert legend is not None
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1
    plt.close(fig)


def test_crowded_x_tick_labels_are_turned() -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([f"a long category {i}" for i in range(6)], range(6))
    assert plotting.layout_problems(fig)
    plotting.tidy_layout(fig)
    assert plotting.layout_problems(fig) == []
    assert all(t.get_rotation() in (30, 90) for t in ax.get_xticklabels())
    plt.close(fig)


def test_a_clean_figure_records_no_problem(tmp_path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="rising")
    ax.legend(loc="upper left")
    _labelled(ax)
    ref = plotting.save(fig, tmp_path, "good", "A good figure", "Nothing hides anything.")
    assert plotting.recorded_problems(tmp_path / ref.path) == []


@pytest.mark.browser
def test_figures_of_a_report_render_in_a_real_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small report (the glance figure, a clean figure and one with a recorded layout problem)
    screenshotted figure by figure in headless Chromium: each image loads, is drawn, is not blank,
    and the one problem the layout check recorded is shown under its figure."""
    import sys
    import types

    from browser import figure_shots
    from whylab import report
    from whylab.concepts import REGISTRY
    from whylab.concepts.context import Measured
    from whylab.concepts.deciding import decide
    from whylab.environment import environment
    from whylab.results import Evidence
    from whylab.verdict import Label, Verdict

    def draw(ctx, measured, metrics):  # type: ignore[no-untyped-def]
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1], label="rising")
        ax.legend(loc="upper left")
        _labelled(ax)
        good = plotting.save(fig, ctx.outdir, "good", "A clean figure", "Nothing hides anything.")
        fig = _crowded()
        bad = plotting.save(fig, ctx.outdir, "bad", "A bad figure", "Its legend hides data.")
        return Evidence(method="m", metrics={}, figures=[good, bad])

    # a claim package's verdict and figures drawing two figures, in C05's place: the decide step
    # imports <package>.verdict and <package>.figures, found first in sys.modules
    rule = types.ModuleType("two_figures_verdict")
    rule.summarize = lambda measured: {}  # type: ignore[attr-defined]
    rule.verdict = lambda metrics: Verdict(Label.INCONCLUSIVE, "r")  # type: ignore[attr-defined]
    drawing = types.ModuleType("two_figures_figures")
    drawing.draw = draw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"{REGISTRY['C05']}.verdict", rule)
    monkeypatch.setitem(sys.modules, f"{REGISTRY['C05']}.figures", drawing)
    monkeypatch.setenv(plotting.STRICT_ENV, "0")
    result = tmp_path / "C05" / "result.json"
    measured = Measured("C05", {"device": "cpu"}, [0], environment=environment("cpu", 1))
    decide("C05", {"seeds": [0], "device": "cpu"}, measured, result)
    page = tmp_path / "index.html"
    page.write_text(report.render({"C05": result}, config={}, title="whylab test"), encoding="utf-8")

    shots = figure_shots(page, tmp_path / "shots")
    assert [s.alt for s in shots] == [
        "The 21 claims by topic, coloured by verdict",
        "A clean figure",
        "A bad figure",
    ]
    for shot in shots:
        assert shot.loaded and shot.shown_width > 100, shot
        assert shot.distinct_colours > 16, f"{shot.alt} looks blank in the browser"
    assert [bool(s.layout_warning) for s in shots] == [False, False, True]
    assert "legend covers" in shots[2].layout_warning
    # the Korean page says the same in Korean
    from whylab.messages import english_runs

    ko = report.render({"C05": result}, config={}, title="whylab test", lang="ko")
    warning = ko[ko.index('class="layout-warning">') :].split("</p>", 1)[0]
    assert "범례가" in warning and english_runs(warning) == []
