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


def test_save_is_strict_in_tests_and_records_otherwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bad() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(np.linspace(0, 1, 20), np.ones(20), label="flat")
        ax.set_ylim(0, 1.05)
        ax.legend(loc="upper right")
        _labelled(ax)
        return fig

    monkeypatch.setenv(plotting.STRICT_ENV, "1")
    with pytest.raises(plotting.FigureLayoutError, match="legend covers"):
        plotting.save(bad(), tmp_path, "bad", "A bad figure", "Its legend hides data.")
    assert not (tmp_path / "figures" / "bad.png").exists()

    monkeypatch.setenv(plotting.STRICT_ENV, "0")
    ref = plotting.save(bad(), tmp_path, "bad", "A bad figure", "Its legend hides data.")
    problems = plotting.recorded_problems(tmp_path / ref.path)
    assert len(problems) == 1 and "legend covers" in problems[0]


def test_a_clean_figure_records_no_problem(tmp_path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="rising")
    ax.legend(loc="upper left")
    _labelled(ax)
    ref = plotting.save(fig, tmp_path, "good", "A good figure", "Nothing hides anything.")
    assert plotting.recorded_problems(tmp_path / ref.path) == []
