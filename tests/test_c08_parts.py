"""C08's warm-up part (judged from the warm-up cell, paired, Holm with the primary cells), each
cell's own init std and warm-up, the default config's cells, and the placement part by init std.
The shared fixtures (metrics of realistic cells) are test_c08.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_c08 import NOISE, PRE, STALL, XAVIER, c08_metrics, cell, shift
from whylab.concepts.c08_pre_vs_post_ln import verdict as c08
from whylab.concepts.c08_pre_vs_post_ln.cells import cell_key, cells_of, cold_key
from whylab.errors import InputError
from whylab.messages import Msg, english_runs
from whylab.verdict import Label

WARMUP_STEPS = 120  # the default config's warm-up cell (init 0.02, lr 2e-2): steps of linear warm-up


def measured_with_warmup(
    cold: dict[str, list[float]], warm: dict[str, list[float]], diverged_cold_post: int = 0
) -> Any:
    """Per-seed records of the default config's init-0.02 cell (6 layers, lr 2e-2) without and with
    its own 80-step warm-up, beside the Xavier-like cell (Pre-LN clearly better), as the measuring
    step writes them, so ``summarize`` builds the Holm family itself."""
    from whylab.concepts.context import Measured

    settings = {
        "primary_cells": [
            {"depth": 6, "lr": 1e-2},
            {"depth": 6, "lr": 2e-2, "init_std": 0.02, "warmup_steps": 80},
        ],
        "warmup_depths": [],
        "warmup_steps": 20,
        "steps": 160,
        "d_model": 32,
        "init_std": None,
        "min_loss_gain": 0.05,
        "min_grad_log_ratio": 0.405,
        "grad_probe_depths": [2, 6],
    }
    primary, (warm_cell,) = cells_of(settings)
    xavier, cold_cell = (cell_key(c) for c in primary)
    norms = {pos: {"2": [1.0, 1.0], "6": [1.0, 1.2, 1.5, 2.0, 2.5, 3.0]} for pos in ("pre", "post")}
    norms["pre"]["6"] = [1.0, 1.0, 1.05, 0.95, 1.0, 1.02]
    per_seed = []
    for i in range(5):
        runs = {}
        for key, losses in (
            (xavier, {"pre": PRE, "post": STALL}),
            (cold_cell, cold),
            (cell_key(warm_cell), warm),
        ):
            runs[key] = {
                pos: {
                    "final_eval_loss": losses[pos][i],
                    "diverged": key == cold_cell and pos == "post" and i < diverged_cold_post,
                    "curve": {},
                }
                for pos in ("pre", "post")
            }
        per_seed.append(
            {
                "seed": i,
                "runs": runs,
                "grad_norms_at_init": norms,
                "vocab_size": 1000,
                "init_std": XAVIER,
                "steps": 160,
            }
        )
    return Measured("C08", settings, list(range(5)), per_seed=per_seed)


def test_the_warmup_part_is_judged_from_the_warmup_cell() -> None:
    """Issue 20: "Post-LN needs warm-up here; Pre-LN does not", from the paired warm-up cell."""
    near = [p + 0.3 * n for p, n in zip(PRE, NOISE, strict=True)]
    warm_post = [x - 0.95 + 0.5 * n for x, n in zip(STALL, NOISE, strict=True)]
    rescued = c08.summarize(
        measured_with_warmup({"pre": PRE, "post": STALL}, {"pre": near, "post": warm_post})
    )
    (w,) = rescued["warmup_cells"]
    assert w["holm_rejected"] and w["rescue"]["test"]["mean_diff"] > 0.9  # warm-up rescues Post-LN
    assert w["pre_need"]["equivalent"] and not w["pre_need_holm_rejected"]  # Pre-LN does not need it
    part = {p.id: p for p in c08.verdict(rescued).parts}["warmup"]
    assert part.run is Label.SUPPORTED and part.power is not None and not part.power.limited
    assert "warm-up rescues Post-LN" in str(part.reason) and "Pre-LN does not need it" in str(part.reason)
    assert part.field is not None and part.field.label is Label.SUPPORTED
    # the default corpus's finding: Post-LN stalls with warm-up too -> the cell cannot show what
    # warm-up cures: a limit (never "not needed"), even though Pre-LN needs none
    stalled = c08.summarize(
        measured_with_warmup({"pre": PRE, "post": STALL}, {"pre": near, "post": STALL[::-1]})
    )
    assert stalled["warmup_cells"][0]["rescue"]["equivalent"]
    part = {p.id: p for p in c08.verdict(stalled).parts}["warmup"]
    assert part.run is Label.INCONCLUSIVE and "Post-LN fails with warm-up too" in str(part.reason)
    assert part.believe.label is Label.SUPPORTED and str(part.believe.source) == "the literature"
    # warm-up rescues Post-LN but Pre-LN gains as much from it: the second half fails -> partly
    helped = [x - 0.5 for x in near]
    mixed = c08.summarize(
        measured_with_warmup({"pre": near, "post": STALL}, {"pre": helped, "post": warm_post})
    )
    assert {p.id: p for p in c08.verdict(mixed).parts}["warmup"].run is Label.PARTLY
    # Post-LN failing with warm-up too and Pre-LN helped by it: the second half fails -> not supported
    both = c08.summarize(
        measured_with_warmup({"pre": shift(0.5), "post": STALL}, {"pre": PRE, "post": STALL[::-1]})
    )
    assert {p.id: p for p in c08.verdict(both).parts}["warmup"].run is Label.NOT_SUPPORTED
    # Post-LN fine without warm-up: nothing to rescue, a limit
    fine = c08.summarize(measured_with_warmup({"pre": PRE, "post": PRE}, {"pre": near, "post": PRE}))
    part = {p.id: p for p in c08.verdict(fine).parts}["warmup"]
    assert part.run is Label.INCONCLUSIVE and "nothing for warm-up" in str(part.reason)
    assert part.believe.label is Label.SUPPORTED  # then the literature's answer


def test_the_warmup_tests_join_the_holm_family() -> None:
    """A borderline rescue clear on its own is not clear beside the primary cell and Pre-LN's test."""
    borderline = [x - 0.1 - d for x, d in zip(STALL, [0.09, -0.08, 0.1, -0.07, 0.02], strict=True)]
    m = c08.summarize(measured_with_warmup({"pre": STALL, "post": STALL}, {"pre": STALL, "post": borderline}))
    (w,) = m["warmup_cells"]
    assert w["rescue"]["test"]["p"] < 0.05 and not w["holm_rejected"]


def test_the_warmup_part_renders_in_korean() -> None:
    m = c08.summarize(measured_with_warmup({"pre": PRE, "post": STALL}, {"pre": PRE, "post": STALL[::-1]}))
    part = {p.id: p for p in c08.verdict(m).parts}["warmup"]
    assert part.field is not None
    for text in (part.reason, part.field.reason):
        assert isinstance(text, Msg) and english_runs(text.in_("ko")) == [], text.in_("ko")


def test_each_cell_names_its_own_init_std_and_warmup() -> None:
    """A primary cell's init_std (absent: the section's, else 1/√d_model) and warmup_steps (absent:
    the section's where its depth is in warmup_depths) round-trip through cells_of, and its key
    tells the cells apart."""
    settings: dict[str, Any] = {
        "primary_cells": [
            {"depth": 6, "lr": 1e-2},
            {"depth": 6, "lr": 1e-2, "init_std": 0.02},
            {"depth": 6, "lr": 2e-2, "init_std": 0.02, "warmup_steps": 80},
        ],
        "warmup_depths": [6],
        "warmup_steps": 40,
        "steps": 160,
        "d_model": None,
        "model": {"d_model": 32},
        "init_std": None,
    }
    primary, extra = cells_of(settings)
    assert [c["init_std"] for c in primary] == [XAVIER, 0.02, 0.02]
    assert [(c["lr"], c["init_std"], c["warmup"]) for c in extra] == [
        (1e-2, XAVIER, 40),
        (1e-2, 0.02, 40),
        (2e-2, 0.02, 80),
    ]
    assert len({cell_key(c) for c in primary + extra}) == 6
    assert cell_key(primary[1]) == "6L-lr0.01-std0.02-wu0" and cold_key(extra[2]) == cell_key(primary[2])
    # the section's init std fills the cells without their own; warmup_steps 0 opts a cell out
    settings["init_std"] = 0.05
    settings["primary_cells"][1]["warmup_steps"] = 0
    primary, extra = cells_of(settings)
    assert [c["init_std"] for c in primary] == [0.05, 0.02, 0.02] and len(extra) == 2
    settings["primary_cells"][2]["warmup_steps"] = 160
    with pytest.raises(InputError, match="below steps"):
        cells_of(settings)
    settings["primary_cells"] = [{"depth": 6, "lr": 1e-2}, {"depth": 6, "lr": 1e-2, "init_std": 0.05}]
    with pytest.raises(InputError, match="twice"):
        cells_of(settings)


def test_the_default_config_runs_the_intended_cells() -> None:
    """config/config.yaml: the Xavier-like stress cell (the paper part and the placement evidence
    rest on it), the same cell at GPT-2's init std 0.02, and init 0.02 at lr 2e-2 with its own
    warm-up, the cell that decides the warm-up part."""
    from whylab.config import load_config

    mech = load_config(Path(__file__).parents[1] / "config" / "config.yaml")["mechanisms"]
    section = {**mech["C08"], "model": mech["model"]}
    primary, extra = cells_of(section)
    assert [(c["depth"], c["lr"], round(c["init_std"], 4), c["warmup"]) for c in primary] == [
        (6, 1e-2, round(XAVIER, 4), 0),
        (6, 1e-2, 0.02, 0),
        (6, 2e-2, 0.02, 0),
    ]
    assert [(c["lr"], c["init_std"], c["warmup"]) for c in extra] == [(2e-2, 0.02, WARMUP_STEPS)]
    assert section["steps"] == 160 and section["beta2"] == 0.999


def realistic_cells() -> list[dict[str, Any]]:
    """The default corpus's three primary cells: Post-LN stalls near the unigram loss at the
    Xavier-like init (lr 1e-2) and at init 0.02 with lr 2e-2, and trains at init 0.02 with lr 1e-2,
    where it ends clearly below Pre-LN."""
    return [
        cell(6, STALL, shift(0.6)),
        cell(6, shift(-0.2), [p + 0.8 for p in PRE], init_std=0.02),
        cell(6, STALL, shift(0.8), lr=2e-2, init_std=0.02),
    ]


def test_the_placement_part_says_by_init_whether_pre_ln_wins() -> None:
    """Pre-LN's advantage at both inits, or not: said from the measured cells, with the same-lr
    cell that shows Post-LN's failure coming with the initialisation."""
    v = c08.verdict(c08_metrics(realistic_cells()))
    placement = {p.id: p for p in v.parts}["placement"]
    text = str(placement.reason)
    assert v.label is Label.PARTLY and "each placement ends clearly lower" in text
    assert "at init std 0.177 Pre-LN ends clearly lower in 1 of 1 cells, Post-LN in 0" in text
    assert "at init std 0.02 Pre-LN ends clearly lower in 1 of 2 cells, Post-LN in 1" in text
    assert "does not hold at every init std measured" in text
    assert "At 6 layers and lr 0.01 Post-LN fails without warm-up at init std 0.177" in text
    assert "ends below Pre-LN on 5 of 5 seeds" in text
    assert placement.power is not None and placement.power.detectable > 0
    assert isinstance(placement.reason, Msg) and english_runs(placement.reason.in_("ko")) == []
    # Pre-LN clearly better at both inits: it holds, and the label is supported
    both = realistic_cells()
    both[1] = cell(6, shift(0.3), init_std=0.02)
    v = c08.verdict(c08_metrics(both))
    placement = {p.id: p for p in v.parts}["placement"]
    assert placement.run is Label.SUPPORTED and "holds at every init std measured" in str(placement.reason)
    assert "comes with the initialisation" not in str(placement.reason)
    # one init std only: no per-init sentence
    one = c08.verdict(c08_metrics([cell(6, STALL, shift(0.6))]))
    assert "By init std" not in str(one.parts[0].reason)


def test_a_found_pre_ln_gain_from_warmup_stands_at_low_power() -> None:
    """The default run's warm-up cell: both placements gain clearly from warm-up, with seed noise
    large enough that the predicted 0.05 is below what the run can detect. Low power limits what a
    run can miss, not what it finds: the part is partly supported (the paper's second half fails
    at this lr), with the why, never turned inconclusive."""
    noisy = [0.2, -0.25, 0.1, -0.05, 0.0]
    warm_post = [x - 1.4 + n for x, n in zip(STALL, noisy, strict=True)]
    near = [p + 0.3 * n for p, n in zip(PRE, NOISE, strict=True)]
    helped = [x - 0.45 + 0.4 * n for x, n in zip(near, noisy[::-1], strict=True)]
    m = c08.summarize(measured_with_warmup({"pre": near, "post": STALL}, {"pre": helped, "post": warm_post}))
    (w,) = m["warmup_cells"]
    assert w["holm_rejected"] and w["pre_need_holm_rejected"]
    part = {p.id: p for p in c08.verdict(m).parts}["warmup"]
    assert part.power is not None and part.power.limited
    assert part.run is Label.PARTLY
    text = str(part.reason)
    assert "Pre-LN needs warm-up too" in text and "low power limits" in text
    assert "Pre-LN needs warm-up less, not never" in text
    assert (
        part.believe.label is Label.PARTLY and str(part.believe.source) == "this run, against the literature"
    )


def test_the_takeaway_does_not_promise_pre_ln_at_every_init() -> None:
    """Pre-LN clearly better at the Xavier-like init only: the claim's takeaway says it is not
    better at every init (a branch of its own), and with every init it keeps the plain one."""
    cells = realistic_cells()
    cells[1] = cell(6, shift(0.0), init_std=0.02)  # no clear difference at init 0.02
    cells[2] = cell(6, shift(0.0), lr=2e-2, init_std=0.02)
    v = c08.verdict(c08_metrics(cells))
    assert "not better at every init" in str(v.takeaway)
    both = realistic_cells()
    both[1] = cell(6, shift(0.3), init_std=0.02)
    both[2] = cell(6, shift(0.3), lr=2e-2, init_std=0.02)
    assert "not better at every init" not in str(c08.verdict(c08_metrics(both)).takeaway)
