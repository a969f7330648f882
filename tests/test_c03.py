"""C03: the measures, the verdict driven to every label by paired metrics a run could produce, and
the experiment end to end (frozen means frozen; the learned arm is the shared baseline)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from bench_claims import TINY, comparison, lm_inputs_of, run_claim, schema_section, spread
from catalogue_checks import assert_explained, assert_in_korean, assert_record_in_korean, evidence_places
from claim_packages import assert_measuring_is_light
from whylab.concepts import REGISTRY
from whylab.concepts._bench_stats import describe
from whylab.concepts.c03_embedding import FROZEN, FROZEN_UNIT, experiment, figures
from whylab.concepts.c03_embedding import verdict as c03
from whylab.concepts.deciding import run_decide
from whylab.concepts.measuring import run_measure_seed
from whylab.messages import Msg, english_runs
from whylab.verdict import Kind, Label

torch.set_num_threads(1)


def c03_metrics(
    learned: list[float], frozen: list[float], unit: list[float], change: float = 0.4
) -> dict[str, Any]:
    losses = {"learned": learned, "frozen": frozen, "frozen_unit": unit}
    return {
        "n_seeds": len(learned),
        "eval_loss": {k: spread(v) for k, v in losses.items()},
        "paired_frozen_minus_learned": {
            k: comparison(losses[k], learned, 0.02) for k in ("frozen", "frozen_unit")
        },
        "relative_change": {
            "learned": spread([change] * len(learned)),
            "frozen": spread([0.0] * len(learned)),
        },
        "diverged": dict.fromkeys(losses, 0),
        "thresholds": {"min_relative_change": 0.05, "min_loss_gain": 0.02},
    }


LEARNED = [4.00, 4.05, 4.02, 4.10, 3.98]


def test_verdict_supported_when_learning_beats_every_frozen_table() -> None:
    v = c03.verdict(
        c03_metrics(LEARNED, [x + 0.5 for x in LEARNED], [x + 0.2 + 0.01 * i for i, x in enumerate(LEARNED)])
    )
    assert v.label is Label.SUPPORTED and v.kind is Kind.EXPERIMENT and "paired" in v.primary


def test_verdict_partly_when_a_frozen_table_is_as_good_or_better() -> None:
    same = [x + d for x, d in zip(LEARNED, [0.01, -0.02, 0.0, 0.02, -0.01], strict=True)]
    assert c03.verdict(c03_metrics(LEARNED, [x + 0.5 for x in LEARNED], same)).label is Label.PARTLY
    better = [x - 0.3 + 0.01 * i for i, x in enumerate(LEARNED)]
    v = c03.verdict(c03_metrics(LEARNED, [x + 0.5 for x in LEARNED], better))
    assert v.label is Label.PARTLY and "as well or better" in v.reason


def test_verdict_not_supported_when_the_table_does_not_move() -> None:
    m = c03_metrics(LEARNED, [x + 0.5 for x in LEARNED], [x + 0.3 for x in LEARNED], change=0.001)
    assert c03.verdict(m).label is Label.NOT_SUPPORTED


def test_verdict_inconclusive_on_one_seed_or_a_diverged_run() -> None:
    assert c03.verdict(c03_metrics([4.0], [4.5], [4.4])).label is Label.INCONCLUSIVE
    m = c03_metrics(LEARNED, [x + 0.5 for x in LEARNED], [x + 0.3 for x in LEARNED])
    m["diverged"]["frozen"] = 1
    assert c03.verdict(m).label is Label.INCONCLUSIVE


def test_measures() -> None:
    before = torch.eye(4)
    after = before.clone()
    after[0] = torch.tensor([2.0, 0, 0, 0])
    assert experiment.row_relative_change(before, after).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert experiment.table_relative_change(before, after) == pytest.approx(0.5)
    assert experiment.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    table = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert experiment.nearest_neighbours(table, [0], 2) == [[1, 2]]
    assert experiment.neighbour_overlap(table, table, [0, 1, 2, 3], 1) == 1.0


SECTION = {
    "sample_words": ["the", "법률"],
    "sample_tokens": 3,
    "n_neighbours": 3,
    "overlap_tokens": 20,
    "pair_min_count": 2,
}


def test_runs_end_to_end(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    record = run_claim("C03", copy.deepcopy(SECTION), lm_inputs_of(tiny_corpus, tiny_tokenizers), tmp_path)
    assert record["verdict"]["label"] in {str(label) for label in Label}
    assert record["verdict"]["kind"] == "experiment" and record["verdict"]["primary"]
    assert record["figures"] and all((tmp_path / "C03" / f["path"]).is_file() for f in record["figures"])
    m = record["metrics"]
    assert m["relative_change"]["frozen"]["values"] == [0.0, 0.0]  # frozen means frozen
    assert min(m["relative_change"]["learned"]["values"]) > 0.0
    if m["unseen_tokens"]:  # no gradient reaches a token that never appears as input
        assert m["unseen_token_relative_change"]["values"] == [0.0, 0.0]
    assert m["paired_frozen_minus_learned"]["frozen_unit"]["n"] == 2
    # every report text of the result file renders in Korean
    assert_record_in_korean(record, required=evidence_places(record, verdict=("reason", "takeaway")))


def test_unclear_comparisons_are_limits_not_lower_labels() -> None:
    noisy = [x + d for x, d in zip(LEARNED, [0.6, -0.5, 0.4, -0.45, 0.1], strict=True)]
    v = c03.verdict(c03_metrics(LEARNED, [x + 0.5 for x in LEARNED], noisy))
    assert v.label is Label.SUPPORTED and len(v.limited) == 1
    v = c03.verdict(c03_metrics(LEARNED, noisy, noisy))
    assert v.label is Label.INCONCLUSIVE and len(v.limited) == 2


def test_every_branch_has_a_takeaway_and_renders_in_korean() -> None:
    frozen = [x + 0.5 for x in LEARNED]
    noisy = [x + d for x, d in zip(LEARNED, [0.6, -0.5, 0.4, -0.45, 0.1], strict=True)]
    diverged = c03_metrics(LEARNED, frozen, [x + 0.3 for x in LEARNED])
    diverged["diverged"]["frozen"] = 1
    cases = [
        (c03_metrics(LEARNED, frozen, [x + 0.2 + 0.01 * i for i, x in enumerate(LEARNED)]), Label.SUPPORTED),
        (c03_metrics(LEARNED, frozen, noisy), Label.SUPPORTED),  # with a limit
        (c03_metrics(LEARNED, frozen, [x - 0.3 + 0.01 * i for i, x in enumerate(LEARNED)]), Label.PARTLY),
        (c03_metrics(LEARNED, frozen, [x + 0.3 for x in LEARNED], change=0.001), Label.NOT_SUPPORTED),
        (c03_metrics(LEARNED, noisy, noisy), Label.INCONCLUSIVE),
        (c03_metrics([4.0], [4.5], [4.4]), Label.INCONCLUSIVE),
        (diverged, Label.INCONCLUSIVE),
    ]
    branches = set()
    for m, label in cases:
        v = c03.verdict(m)
        assert v.label is label
        assert_explained(v, "C03")
        branches.add(v.branch)
    assert len(branches) == 6
    v = c03.verdict(c03_metrics(LEARNED, frozen, noisy))
    assert v.limited[0].startswith(
        "learned vs frozen unit table: the paired loss difference is neither clear"
    )
    assert (
        "the table moved by 40% (‖ΔE‖/‖E‖); frozen − learned validation loss: frozen Δ = +0.500" in v.reason
    )
    assert v.primary.endswith("(5 seeds)")


def test_evidence_texts_render_in_korean() -> None:
    comparison_ = comparison([x + 0.5 for x in LEARNED], LEARNED, 0.02)
    texts = [
        figures.method(
            {"model": {"init_std": 0.02}, "frozen_unit_std": 1.0}, ["learned", "frozen", "frozen_unit"]
        ),
        *(Msg(f"C03.table.{t}.caption", seed=0) for t in ("loss", "geometry", "neighbours")),
        Msg("C03.figure.curves.title"),
        Msg("C03.figure.curves.caption", tables=[Msg("C03.method_table.frozen", std=0.02)]),
        Msg("C03.figure.change_vs_frequency.title", seed=0),
        Msg("C03.figure.change_vs_frequency.caption"),
        Msg("C03.literature.vaswani.finding"),
        Msg(
            "C03.literature.vaswani.note",
            parts=[
                Msg(
                    "C03.literature.vaswani.part",
                    variant=figures.variant(k),
                    delta=describe(comparison_, "nats/token"),
                )
                for k in (FROZEN, FROZEN_UNIT)
            ],
        ),
    ]
    assert texts[-1].startswith(
        "This run: frozen (frozen random embedding (model init)) − learned Δ = +0.500"
    )
    for t in texts:
        assert t and english_runs(t.in_("ko")) == [], t.in_("ko")
    assert all(Msg(f"C03.variant.{k}") == name for k, name in figures.NAMES.items())


def test_measuring_is_light() -> None:
    assert REGISTRY["C03"] == "whylab.concepts.c03_embedding"
    assert_measuring_is_light("C03")


def test_seed_jobs_and_a_decide_job_give_the_in_process_result(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    """The DAG's path (one measure job per seed, then the decide job) gives what one process gives,
    and a decision setting changed after the measuring reaches the verdict without re-measuring."""
    inputs = lm_inputs_of(tiny_corpus, tiny_tokenizers)
    settings = {**copy.deepcopy(TINY), **schema_section("C03"), **copy.deepcopy(SECTION)}
    whole = run_claim("C03", copy.deepcopy(SECTION), inputs, tmp_path / "whole")
    measure = {k: v for k, v in settings.items() if k not in ("min_relative_change", "min_loss_gain")}
    flags = {}
    for seed in settings["seeds"]:
        path = tmp_path / "seeds" / f"{seed}.json"
        run_measure_seed("C03", measure, inputs, seed, path)
        flags[f"seed.{seed}"] = path
    split = run_decide("C03", settings, flags, tmp_path / "split" / "C03" / "result.json")
    assert split["metrics"] == whole["metrics"] and split["verdict"] == whole["verdict"]
    assert split["tables"] == whole["tables"] and split["figures"] == whole["figures"]
    strict = run_decide(
        "C03", {**settings, "min_loss_gain": 5.0}, flags, tmp_path / "strict" / "C03" / "result.json"
    )
    assert strict["metrics"]["thresholds"]["min_loss_gain"] == 5.0
    assert strict["metrics"]["paired_frozen_minus_learned"]["frozen"]["min_effect"] == 5.0


# --------------------------------------------------------------------------- parts


def test_parts_nn_embedding_definition_and_learned_experiment() -> None:
    m = c03_metrics(LEARNED, [x + 0.5 + 0.01 * i for i, x in enumerate(LEARNED)], [x + 0.2 for x in LEARNED])
    m["embedding"] = {"class": "Embedding", "trainable": True}
    v = c03.verdict(m)
    emb, learned = v.parts
    assert (emb.id, emb.kind, emb.run, emb.power) == ("nn_embedding", Kind.DEFINITION, Label.SUPPORTED, None)
    assert learned.id == "learned" and learned.kind is Kind.EXPERIMENT and learned.run is Label.SUPPORTED
    assert (
        learned.power is not None and learned.power.unit == "nats/token" and learned.power.predicted == 0.02
    )
    assert "frozen (frozen) − learned validation loss +0.5" in str(learned.reason) or "+0.5" in str(
        learned.reason
    )
    # the literature: Vaswani 2017 and Press & Wolf 2017 train the token embedding (claim.yaml)
    assert learned.field is not None and learned.field.label is Label.SUPPORTED
    assert "2/2 recorded sources" in str(learned.field.reason)
    assert emb.field is not None and emb.field.label is Label.SUPPORTED
    for p in v.parts:
        assert_in_korean(p.reason)
        assert p.field is not None
        assert_in_korean(p.field.reason)
    frozen_weight = {**m, "embedding": {"class": "Embedding", "trainable": False}}
    assert c03.verdict(frozen_weight).parts[0].run is Label.NOT_SUPPORTED
    assert c03.verdict({k: x for k, x in m.items() if k != "embedding"}).parts[0].run is Label.INCONCLUSIVE


def test_the_learned_part_is_limited_when_the_run_could_not_see_min_loss_gain() -> None:
    # a frozen table no better than learned, seeds too noisy to detect 0.02 nats/token: limited
    noisy = [x + d for x, d in zip(LEARNED, (0.3, -0.3, 0.25, -0.2, -0.1), strict=True)]
    v = c03.verdict(c03_metrics(LEARNED, noisy, noisy))
    learned = v.parts[1]
    assert learned.power is not None and learned.power.limited and learned.run is Label.INCONCLUSIVE
    # clearly no better and precise: contradicted -> partly (the table is trained; random served as well)
    same = [x + 0.001 * (-1) ** i for i, x in enumerate(LEARNED)]
    assert c03.verdict(c03_metrics(LEARNED, same, same)).parts[1].run is Label.PARTLY
    # the table did not move: not supported
    moved_not = c03_metrics(LEARNED, [x + 0.5 for x in LEARNED], [x + 0.5 for x in LEARNED], change=0.0)
    assert c03.verdict(moved_not).parts[1].run is Label.NOT_SUPPORTED


def test_method_names_exactly_the_frozen_tables_that_ran() -> None:
    st = {"model": {"init_std": 0.02}, "frozen_unit_std": None}
    one = str(figures.method(st, ["learned", "frozen"]))
    assert "N(0, 0.02²)" in one and "Holm" not in one and "N(0, 1" not in one
    both = str(figures.method({**st, "frozen_unit_std": 1.0}, ["learned", "frozen", "frozen_unit"]))
    assert "N(0, 1.0²)" in both and "Holm over the 2 frozen tables" in both


def test_the_default_config_controls_the_scale_and_the_gpu_profile_adds_unit_scale() -> None:
    from whylab.files import parse_yaml

    root = Path(__file__).resolve().parents[1]
    default = parse_yaml((root / "config" / "config.yaml").read_text(encoding="utf-8"))["mechanisms"]["C03"]
    gpu = parse_yaml((root / "config" / "gpu.yaml").read_text(encoding="utf-8"))["mechanisms"]["C03"]
    assert default["frozen_model_init"] is True and default["frozen_unit_std"] is None
    assert gpu["frozen_unit_std"] == 1.0
    assert experiment.frozen_plans({**default}) == {FROZEN: None}
    assert experiment.frozen_plans({**default, **gpu}) == {FROZEN: None, FROZEN_UNIT: 1.0}
