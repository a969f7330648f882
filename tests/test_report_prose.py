"""Words that say what was measured (issue 22, item 5): no setting name in any sentence a claim
or the report writes, and each claim's scale line as its result's settings say it ran."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from page_text import fixed_text
from setting_names import SETTINGS, setting_names_in
from whylab import claims
from whylab.messages import LANGUAGES, catalogue, text
from whylab.report_scale import claim_scale


def _literal(template: str) -> str:
    """A catalogue text without its parameters (``{min_loss_gain:g}`` is a value, not a name) and
    without code spans."""
    parts = [literal for literal, _, _, _ in string.Formatter().parse(template)]
    return re.sub(r"`[^`]*`", " ", " ".join(parts))


def test_the_setting_names_are_the_configs_keys() -> None:
    assert {"min_loss_gain", "min_accuracy_gap", "memory.C18.notes_models", "init_std"} <= SETTINGS
    assert {"warmup_depths", "n_heads", "offload_layers", "lm.train_languages", "memory.plan"} <= SETTINGS
    assert setting_names_in("past min_loss_gain nats/token") == ["min_loss_gain"]
    assert setting_names_in("(memory.C18.notes_models points)") == ["memory.C18.notes_models"]
    assert setting_names_in("past 0.02 nats/token, whylab.memory.planner, ÷√d_model") == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_catalogue_text_names_a_setting(lang: str) -> None:
    """Every text of every claim (and of the report), with its parameters taken out: the values
    come in as parameters, a setting's name never stands in the sentence."""
    found = {
        key: names
        for key, template in catalogue(lang).items()
        if (names := setting_names_in(_literal(template)))
    }
    assert found == {}


def _prose(html: str) -> str:
    """The page's own sentences: without the notes (quoted verbatim, code lines and all), code,
    preformatted settings and data tables (:func:`page_text.fixed_text`), whose cells name the
    metrics they hold (C21's ``offload_layers`` row): a table's identifiers, not a sentence."""
    notes = html.index('<section id="notes">')
    return fixed_text(html[:notes] + html[html.index("</section>", notes) :], data_tables=False)


@pytest.mark.e2e
def test_no_setting_name_in_the_pages_of_a_real_run(test_dag_run: Path) -> None:
    """Both pages of a real run: every claim's texts with the parameters its run gave them."""
    pages = sorted((test_dag_run / "reports").glob("index*.html"))
    assert len(pages) == len(LANGUAGES)
    for page in pages:
        prose = _prose(page.read_text(encoding="utf-8"))
        assert "C08" in prose and setting_names_in(prose) == [], page.name


# --------------------------------------------------------------------------- the scale line

# what each claim trains, as its experiment reads it from its settings (dotted paths in the
# result's ``config``): its seeds, its training steps, and its model's layers and width
SEEDS = {"C20": "repeats"}  # C20 draws a fresh model and batch per repeat: seeds[0] + i
STEPS = {
    **dict.fromkeys(("C03",), "train.steps"),  # the shared bench model, trained once per seed
    **dict.fromkeys(("C04", "C06"), "task.steps"),
    **dict.fromkeys(("C05", "C07", "C08", "C09", "C10", "C11", "C14", "C21"), "steps"),
}
MODEL = {
    **dict.fromkeys(("C03", "C05", "C07", "C09", "C10"), ("model.n_layers", "model.d_model")),
    **dict.fromkeys(("C04", "C06"), ("task.n_layers", "model.d_model")),
    "C08": ("primary_cells.depth", "d_model"),  # its own width; each cell's depth
    "C11": ("n_layers", "d_model"),  # its own task model, not the bench transformer
    **dict.fromkeys(("C17", "C18", "C19", "C20", "C21"), ("model.num_layers", "model.hidden_size")),
}
SCALE_LINE = re.compile(
    r"This claim's run: (?P<seeds>\d+) seeds?"
    r"(?:, (?P<steps>\d+) training steps?)?"
    r"(?:, a model of (?P<layers>[\d–]+) layers?, width (?P<width>\d+))?\.$"
)


def _at(config: Mapping[str, Any], path: str) -> Any:
    value: Any = config
    for key in path.split("."):
        if isinstance(value, list):  # C08's primary cells: each cell's depth
            depths = sorted({int(item[key]) for item in value})
            return str(depths[0]) if len(depths) == 1 else f"{depths[0]}–{depths[-1]}"
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def expected_scale(claim_id: str, config: Mapping[str, Any]) -> dict[str, str | None]:
    """The scale line's numbers as the claim's settings give them (None: the line has none)."""
    seeds = _at(config, SEEDS.get(claim_id, "seeds"))
    count = seeds if isinstance(seeds, int) else len(seeds or [0])
    steps = _at(config, STEPS[claim_id]) if claim_id in STEPS else None
    layers, width = (_at(config, path) for path in MODEL[claim_id]) if claim_id in MODEL else (None, None)
    return {
        "seeds": str(count),
        "steps": None if steps is None else str(steps),
        "layers": None if layers is None else str(layers),
        "width": None if width is None else str(width),
    }


def scale_numbers(record: Mapping[str, Any]) -> dict[str, str | None]:
    line = text(claim_scale(record), "en")
    match = SCALE_LINE.match(line)
    assert match, line
    return match.groupdict()


@pytest.mark.e2e
def test_each_claims_scale_line_agrees_with_its_settings(test_dag_run: Path) -> None:
    records = sorted((test_dag_run / "results" / "concepts").glob("C*/result.json"))
    assert {r.parent.name for r in records} == {c.id for c in claims.CLAIMS}
    for path in records:
        record = json.loads(path.read_text(encoding="utf-8"))
        claim_id, config = record["claim_id"], record["config"]
        assert scale_numbers(record) == expected_scale(claim_id, config), claim_id
        assert len(record["seeds"]) == int(expected_scale(claim_id, config)["seeds"] or 0), claim_id


BENCH = {"model": {"d_model": 64, "n_layers": 2, "n_heads": 4}, "train": {"steps": 200}}


@pytest.mark.parametrize(
    ("claim_id", "config", "seeds", "numbers"),
    [
        # C03 trains the shared bench model for train.steps
        ("C03", {**BENCH, "seeds": [0, 1, 2, 3, 4]}, [0, 1, 2, 3, 4], ("5", "200", "2", "64")),
        # C05 and C07 train their own number of steps on the bench model
        ("C07", {**BENCH, "seeds": [0, 1], "steps": 100}, [0, 1], ("2", "100", "2", "64")),
        # C08: its own width, its cells' depth (not the bench model's 2 layers, 64 wide)
        (
            "C08",
            {
                **BENCH,
                "seeds": [0, 1, 2],
                "steps": 160,
                "d_model": 32,
                "primary_cells": [{"depth": 6, "lr": 0.01}],
            },
            [0, 1, 2],
            ("3", "160", "6", "32"),
        ),
        (
            "C08",
            {**BENCH, "steps": 8, "d_model": 16, "primary_cells": [{"depth": 2}, {"depth": 12}]},
            [0],
            ("1", "8", "2–12", "16"),
        ),
        # C11's task model, beside the bench model its config also carries
        (
            "C11",
            {**BENCH, "seeds": [0, 1, 2], "steps": 300, "n_layers": 1, "d_model": 32},
            [0, 1, 2],
            ("3", "300", "1", "32"),
        ),
        # C04's task: one layer, the bench model's width, the task's steps
        (
            "C04",
            {**BENCH, "seeds": [0, 1], "task": {"n_layers": 1, "steps": 300}},
            [0, 1],
            ("2", "300", "1", "64"),
        ),
        # the memory claims' small Llama; C20's repeats are its seeds
        (
            "C20",
            {"seeds": [0], "repeats": 3, "model": {"num_layers": 2, "hidden_size": 128}},
            [0, 1, 2],
            ("3", None, "2", "128"),
        ),
        ("C21", {"steps": 3, "model": {"num_layers": 4, "hidden_size": 128}}, [0], ("1", "3", "4", "128")),
        # a tokenizer claim trains no model
        ("C02", {"tokenizers": {"vocab_sizes": [1000]}}, [0], ("1", None, None, None)),
    ],
)
def test_the_scale_line_of_a_record(
    claim_id: str, config: dict[str, Any], seeds: list[int], numbers: tuple[str | None, ...]
) -> None:
    record = {"claim_id": claim_id, "config": config, "seeds": seeds}
    want = dict(zip(("seeds", "steps", "layers", "width"), numbers, strict=True))
    assert scale_numbers(record) == want == expected_scale(claim_id, config)


def test_a_record_without_seeds_steps_or_model_has_no_scale_line() -> None:
    assert claim_scale({"config": {}, "seeds": []}) == ""


@pytest.mark.e2e
def test_memory_measured_on_a_cpu_says_so_where_the_notes_speak_of_a_gpu(test_dag_run: Path) -> None:
    """The notes' memory lines are about a GPU (C14, C19, C20): a run on the CPU names what it
    measured instead (live tensor bytes or the process's RSS)."""
    html = (test_dag_run / "reports" / "index.html").read_text(encoding="utf-8")
    for claim_id in ("C14", "C19", "C20"):
        record = json.loads(
            (test_dag_run / "results" / "concepts" / claim_id / "result.json").read_text("utf-8")
        )
        start = html.index(f'<section id="{claim_id}">')
        section = fixed_text(html[start : html.index("</section>", start)], data_tables=False)
        named = "Measured on this run's CPU as" in section and "the notes speak of GPU memory" in section
        assert named == (record["config"]["device"] == "cpu"), claim_id
