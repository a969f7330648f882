"""C04: the relation task, the verdict driven to every label by paired metrics, and the experiment
end to end (deterministic; Q = K = X looks at itself)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from bench_claims import TINY, comparison, lm_inputs_of, run_claim, schema_section, spread
from catalogue_checks import assert_explained, assert_record_in_korean
from claim_packages import assert_measuring_is_light
from whylab.concepts import ConceptContext
from whylab.concepts.c04_qk_projection import experiment
from whylab.concepts.c04_qk_projection import verdict as c04
from whylab.concepts.deciding import run_decide
from whylab.concepts.measuring import run_measure_seed
from whylab.verdict import Label

torch.set_num_threads(1)

GOOD_ACC = [0.95, 0.9, 0.97, 0.93, 0.96]
BAD_ACC = [0.35, 0.3, 0.33, 0.31, 0.36]
GOOD_LM = [4.0, 4.05, 4.02, 4.08, 4.01]
BAD_LM = [4.3, 4.33, 4.29, 4.4, 4.31]
NOISY_LM = [4.5, 3.6, 4.4, 3.7, 4.1]


def c04_metrics(
    acc_l: list[float], acc_x: list[float], lm_l: list[float], lm_x: list[float]
) -> dict[str, Any]:
    return {
        "n_seeds": len(acc_l),
        "task": {"chance_accuracy": 1 / 6},
        "task_accuracy": {"learned": spread(acc_l), "no_qk": spread(acc_x)},
        "task_partner_attention_layer1": {"learned": spread([0.9] * len(acc_l))},
        "task_self_attention_layer1": {
            "learned": spread([0.1] * len(acc_l)),
            "no_qk": spread([0.8] * len(acc_l)),
        },
        "paired_task_accuracy": comparison(acc_l, acc_x, 0.2),
        "paired_lm_loss": comparison(lm_x, lm_l, 0.02),
        "diverged": {"learned": 0, "no_qk": 0},
        "thresholds": {"min_accuracy_gap": 0.2, "min_loss_gain": 0.02},
    }


def test_verdict_every_label() -> None:
    """Issue 20: the directed task (which Q = K = X is built to lose) never decides; the LM loss,
    which either arm could win, does."""
    v = c04.verdict(c04_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM))
    assert v.label is Label.SUPPORTED and [p.id for p in v.parts] == ["lm"]
    assert v.parts[0].power is not None and v.parts[0].power.unit == "nats/token"
    # the task alone (LM unclear) no longer gives "supported"
    assert c04.verdict(c04_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, NOISY_LM)).label is Label.INCONCLUSIVE
    # Q = K = X clearly better as an LM: not supported, whatever the task says
    v = c04.verdict(c04_metrics(GOOD_ACC, BAD_ACC, BAD_LM, GOOD_LM))
    assert v.label is Label.NOT_SUPPORTED
    assert c04.verdict(c04_metrics([0.9], [0.3], [4.0], [4.3])).label is Label.INCONCLUSIVE


def test_per_seed_attention_clusters_are_reported() -> None:
    m = c04_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)
    m["task_partner_attention_layer1"] = {"learned": spread([0.024, 0.028, 0.984, 0.024, 0.984])}
    v = c04.verdict(m)
    assert "0.024, 0.028, 0.984, 0.024, 0.984" in v.reason and "3 solve the task" in v.reason


def test_relation_task_invariants() -> None:
    task = experiment.RelationTask.make(16, 6, seed=3)
    assert torch.equal(task.backward[task.forward], torch.arange(16))
    seen, a = set(), 0
    for _ in range(16):
        seen.add(a)
        a = int(task.forward[a])
    assert a == 0 and len(seen) == 16
    smp = task.sample(200, torch.Generator().manual_seed(0))
    ids, rows = smp["ids"], torch.arange(200)
    query = ids[:, -1]
    assert torch.equal(ids[rows, smp["position"]], task.forward[query])
    assert torch.equal(ids[rows, smp["reverse_position"]], task.backward[query])
    assert torch.equal(smp["target"], 16 + smp["position"])
    assert not bool((ids[:, :-1] == query[:, None]).any())


def test_learned_projections_solve_the_relation_task_q_equals_k_does_not() -> None:
    section = schema_section("C04")
    section["task"].update(n_entities=12, context_len=5, steps=300, batch_size=64, eval_size=256)
    settings = {**TINY, "model": {"d_model": 32, "n_heads": 4}, **section}
    ctx = ConceptContext("C04", settings, {}, Path("."), 1, "cpu")
    learned = experiment.run_task(ctx, seed=0, qk_proj=True)
    plain = experiment.run_task(ctx, seed=0, qk_proj=False)
    assert learned["accuracy"] > plain["accuracy"] + 0.3
    assert plain["self_attention"][0] > 0.5 > learned["self_attention"][0]


def test_runs_end_to_end_and_is_deterministic(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    section = schema_section("C04")
    section["task"].update(n_entities=8, context_len=4, steps=10, batch_size=8, eval_size=16)
    section.update(attention_windows=2, attention_examples=3)
    inputs = lm_inputs_of(tiny_corpus, tiny_tokenizers)
    a = run_claim("C04", copy.deepcopy(section), inputs, tmp_path / "a")
    # again, the DAG's way: one measure job per seed (without the decision's settings), then decide
    settings = {**copy.deepcopy(TINY), **schema_section("C04"), **copy.deepcopy(section)}
    measure = {k: v for k, v in settings.items() if k not in ("min_accuracy_gap", "min_loss_gain")}
    flags = {}
    for seed in settings["seeds"]:
        flags[f"seed.{seed}"] = tmp_path / "seeds" / f"{seed}.json"
        run_measure_seed("C04", measure, inputs, seed, flags[f"seed.{seed}"])
    b = run_decide("C04", settings, flags, tmp_path / "b" / "C04" / "result.json")
    assert a["metrics"] == b["metrics"] and a["verdict"] == b["verdict"] and a["tables"] == b["tables"]
    m = a["metrics"]
    assert m["lm_self_attention_layer1"]["no_qk"]["mean"] > 2 * m["lm_self_attention_uniform"]
    assert m["paired_lm_loss"]["n"] == 2 and a["verdict"]["primary"]
    # every text of the record is a catalogue message that renders in Korean
    ko = assert_record_in_korean(a)
    assert len(ko) >= 1 + 3 + 3 * 2 + 2 + 2  # method, tables, figures, literature, verdict
    assert {"method", "reason", "takeaway", "primary"} <= {
        name for part in (a, a["verdict"]) for name in part.get("messages", {})
    }


def test_every_branch_has_a_takeaway_and_renders_in_korean() -> None:
    cases = {
        Label.SUPPORTED: c04_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM),
        Label.NOT_SUPPORTED: c04_metrics(GOOD_ACC, BAD_ACC, BAD_LM, GOOD_LM),
    }
    for label, m in cases.items():
        v = c04.verdict(m)
        assert v.label is label
        assert_explained(v, "C04", differs_from_english=True)
    diverged = c04_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)
    diverged["diverged"]["no_qk"] = 1
    inconclusive = {
        "C04.verdict.too_few": c04_metrics([0.9], [0.3], [4.0], [4.3]),
        "C04.verdict.diverged": diverged,
        "C04.verdict.inconclusive": c04_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, NOISY_LM),
    }
    for branch, m in inconclusive.items():
        v = c04.verdict(m)
        assert v.label is Label.INCONCLUSIVE and v.branch == branch
        assert_explained(v, "C04", differs_from_english=True)


def test_method_figures_tables_and_literature_render_in_korean() -> None:
    from whylab.messages import Msg, english_runs

    texts = [
        Msg("C04.method", context_len=5, n_heads=2, ffn=Msg(f"C04.method_part.ffn_{w}"), init_std=0.02)
        for w in ("with", "without")
    ]
    texts += [
        Msg("C04.table.summary.caption"),
        Msg("C04.table.paired.caption"),
        Msg("C04.table.illustration_ko.caption", seed=0),
        Msg("C04.figure.lm_curves.title"),
        Msg("C04.figure.lm_curves.caption"),
        Msg("C04.figure.relation_task.title"),
        Msg("C04.figure.relation_task.caption", chance=0.2),
        Msg("C04.figure.attention_maps.title", seed=0),
        Msg("C04.figure.attention_maps.caption"),
        Msg("C04.literature.vaswani.finding"),
    ]
    for text in texts:
        assert english_runs(text.in_("ko")) == [], text.in_("ko")


def test_measuring_is_light() -> None:
    assert_measuring_is_light("C04")


def test_the_two_arms_start_from_the_same_shared_weights() -> None:
    """Same seed, with and without W_q, W_k: every layer both arms have starts with the same
    numbers (the arm without the projections draws and drops theirs), for the task model and the LM."""
    from whylab.bench.lab import build_model
    from whylab.bench.model_config import BenchConfig

    for over in ({"n_layers": 2}, {"n_layers": 1, "init_std": 0.1}, {"n_layers": 2, "qk_init_std": 0.125}):
        learned = build_model(
            BenchConfig(vocab_size=50, d_model=32, n_heads=4, **over), 3, "cpu"
        ).state_dict()
        plain = build_model(
            BenchConfig(vocab_size=50, d_model=32, n_heads=4, qk_proj=False, **over), 3, "cpu"
        ).state_dict()
        assert set(plain) < set(learned) and all(
            "q_proj" in k or "k_proj" in k for k in set(learned) - set(plain)
        )
        assert all(torch.equal(learned[k], plain[k]) for k in plain)
