"""The shared "train until the comparison stops moving" rule (issue 20): one learning-rate grid and
one selection rule for every arm, and a stability rule on the paired difference."""

from __future__ import annotations

import math

from whylab.concepts._settle import choose_lr, difference_curve, settle, tune

STEPS = [0, 50, 100, 150, 200, 250, 300]


def curves(losses: list[list[float]]) -> list[dict[str, list[float] | list[int]]]:
    return [{"eval_steps": STEPS, "eval_loss": loss} for loss in losses]


def test_the_lowest_held_out_loss_wins_and_diverged_rates_are_skipped() -> None:
    assert choose_lr({1e-3: 5.2, 3e-3: 4.9, 1e-2: 5.0}) == 3e-3
    assert choose_lr({1e-3: 5.2, 3e-3: None, 1e-2: math.nan}) == 1e-3
    assert choose_lr({1e-3: 5.0, 3e-3: 5.0}) == 1e-3  # a tie keeps the smaller rate
    assert choose_lr({1e-3: None}) is None


def test_every_arm_gets_the_same_grid_and_rule() -> None:
    best = {"a": 3e-3, "b": 1e-2}

    def run(arm: str, lr: float) -> tuple[float | None, str]:
        return abs(math.log(lr / best[arm])), f"{arm}@{lr:g}"

    record, runs = tune(["a", "b"], [1e-3, 3e-3, 1e-2], run)
    assert record["a"]["lr"] == 3e-3 and record["b"]["lr"] == 1e-2
    assert record["a"]["grid"] == record["b"]["grid"] == [1e-3, 3e-3, 1e-2]
    assert len(record["a"]["tune_loss"]) == 3 and record["a"]["tune_loss"][1] == 0.0
    assert runs == {"a": "a@0.003", "b": "b@0.01"}  # the chosen run, reusable as the first seed's


def test_the_difference_curve_is_the_mean_paired_difference_per_evaluation() -> None:
    a = curves([[7, 6, 5, 4.5, 4.4, 4.35, 4.3], [7, 6.2, 5.2, 4.7, 4.6, 4.55, 4.5]])
    b = curves([[7, 6.5, 5.5, 5, 4.6, 4.5, 4.45], [7, 6.5, 5.5, 5, 4.8, 4.7, 4.65]])
    c = difference_curve(a, b)
    assert c["steps"] == STEPS and c["n"] == 2
    assert math.isclose(c["mean"][1], -0.4) and math.isclose(c["mean"][-1], -0.15)
    # a seed with a non-finite loss is left out, not averaged in
    broken = curves([[7, 6, 5, 4.5, 4.4, 4.35, 4.3], [7, None, 5, 4.5, 4.4, 4.35, 4.3]])  # type: ignore[list-item]
    assert difference_curve(broken, b)["n"] == 1


def test_a_settled_difference_is_judged_a_moving_one_is_not() -> None:
    settled = {"steps": STEPS, "mean": [0.0, 0.6, 0.1, -0.4, -0.5, -0.51, -0.505]}
    s = settle(settled, 0.02, 3)
    assert s["settled"] and s["from_step"] == 200 and s["to_step"] == 300 and s["span"] < 0.02
    # still closing by 0.05 over the window: moving, so the part is a limit
    closing = {"steps": STEPS, "mean": [0.0, 0.6, 0.4, 0.3, 0.25, 0.2, 0.15]}
    m = settle(closing, 0.02, 3)
    assert not m["settled"] and math.isclose(m["span"], 0.1)
    # the ranking flips inside the window: moving
    flips = {"steps": STEPS, "mean": [0.0, 0.1, 0.05, 0.02, 0.01, -0.01, -0.02]}
    assert not settle(flips, 0.02, 3)["settled"]
    assert settle(flips, 0.05, 3)["settled"]  # the same curve, a wider margin
    # too few evaluations to tell
    short = settle({"steps": [0, 10], "mean": [0.0, 0.1]}, 0.02, 3)
    assert not short["settled"] and short["span"] is None
