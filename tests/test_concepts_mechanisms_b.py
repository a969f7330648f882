"""C03, C04, C06: verdicts driven to every label by synthetic metrics, the synthetic tasks'
invariants, and each experiment run end to end on a tiny corpus."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from whylab.concepts import c03_embedding as c03
from whylab.concepts import c04_qk_projection as c04
from whylab.concepts import c06_value_projection as c06
from whylab.verdict import Label


def s(values: list[float]) -> dict[str, Any]:
    return {"mean": sum(values) / len(values), "std": 0.0, "values": values}


# --------------------------------------------------------------------------- C03 verdict
def c03_metrics(
    learned: list[float], frozen: list[float], change: float = 0.4, unit: list[float] | None = None
) -> dict[str, Any]:
    losses = {"learned": s(learned), "frozen": s(frozen)}
    if unit is not None:
        losses["frozen_unit"] = s(unit)
    best = min((k for k in losses if k != "learned"), key=lambda k: losses[k]["mean"])
    return {
        "eval_loss": losses,
        "best_frozen": best,
        "relative_change": {"learned": s([change] * len(learned)), "frozen": s([0.0] * len(frozen))},
        "diverged": dict.fromkeys(losses, 0),
        "thresholds": {"min_relative_change": 0.05, "min_loss_gain": 0.02},
    }


def test_c03_verdict_supported() -> None:
    v = c03.verdict(c03_metrics([4.0, 4.05, 4.02], [4.5, 4.52, 4.48]))
    assert v.label is Label.SUPPORTED
    assert "4.5" in v.reason


def test_c03_verdict_partly_when_frozen_as_good() -> None:
    assert c03.verdict(c03_metrics([4.0, 4.3, 4.1], [4.05, 4.2, 4.15])).label is Label.PARTLY


def test_c03_verdict_holds_learning_against_the_better_frozen_table() -> None:
    m = c03_metrics([4.0, 4.05, 4.02], [5.5, 5.52, 5.48], unit=[4.02, 4.06, 4.0])
    v = c03.verdict(m)
    assert v.label is Label.PARTLY
    assert "frozen unit" in v.reason


def test_c03_verdict_not_supported_when_table_does_not_move() -> None:
    assert (
        c03.verdict(c03_metrics([4.0, 4.05, 4.02], [4.5, 4.52, 4.48], change=0.001)).label
        is Label.NOT_SUPPORTED
    )


def test_c03_verdict_inconclusive() -> None:
    assert c03.verdict(c03_metrics([4.0], [4.5])).label is Label.INCONCLUSIVE
    m = c03_metrics([4.0, 4.1], [4.5, 4.6])
    m["diverged"]["frozen"] = 1
    assert c03.verdict(m).label is Label.INCONCLUSIVE


# --------------------------------------------------------------------------- C04 verdict
def c04_metrics(
    acc_l: list[float], acc_x: list[float], lm_l: list[float], lm_x: list[float]
) -> dict[str, Any]:
    return {
        "task": {"chance_accuracy": 0.125},
        "task_accuracy": {"learned": s(acc_l), "no_qk": s(acc_x)},
        "lm_eval_loss": {"learned": s(lm_l), "no_qk": s(lm_x)},
        "task_self_attention_layer1": {"learned": s([0.05] * len(acc_l)), "no_qk": s([0.6] * len(acc_x))},
        "diverged": {"learned": 0, "no_qk": 0},
        "thresholds": {"min_accuracy_gap": 0.2, "min_loss_gain": 0.0},
    }


GOOD_ACC, BAD_ACC = [0.95, 0.97, 0.96], [0.30, 0.35, 0.28]
GOOD_LM, BAD_LM = [4.0, 4.02, 4.01], [4.3, 4.32, 4.28]
SAME_LM = [4.3, 4.0, 4.15]


def test_c04_verdict_supported() -> None:
    assert c04.verdict(c04_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)).label is Label.SUPPORTED


def test_c04_verdict_partly_when_only_one_test_separates() -> None:
    assert c04.verdict(c04_metrics(GOOD_ACC, BAD_ACC, SAME_LM, GOOD_LM)).label is Label.PARTLY
    assert c04.verdict(c04_metrics(GOOD_ACC, [0.9, 0.99, 0.95], GOOD_LM, BAD_LM)).label is Label.PARTLY


def test_c04_verdict_not_supported_when_no_projection_does_as_well() -> None:
    v = c04.verdict(c04_metrics(GOOD_ACC, [0.96, 0.95, 0.97], SAME_LM, GOOD_LM))
    assert v.label is Label.NOT_SUPPORTED


def test_c04_verdict_inconclusive_when_task_not_learned_or_one_seed() -> None:
    assert c04.verdict(c04_metrics([0.15, 0.2, 0.18], BAD_ACC, GOOD_LM, BAD_LM)).label is Label.INCONCLUSIVE
    assert c04.verdict(c04_metrics([0.9], [0.3], [4.0], [4.3])).label is Label.INCONCLUSIVE


# --------------------------------------------------------------------------- C06 verdict
def c06_metrics(
    acc_l: list[float],
    acc_x: list[float],
    lm_l: list[float],
    lm_x: list[float],
    value_tv: float = 0.02,
    follows: float = 0.9,
    key_tv: float = 0.7,
    wv_acc: float = 0.12,
) -> dict[str, Any]:
    n = len(acc_l)
    jitter = [0.0, 0.01, -0.01][:n]
    return {
        "task": {"chance_accuracy": 0.125},
        "task_accuracy": {"learned": s(acc_l), "v_is_x": s(acc_x)},
        "lm_eval_loss": {"learned": s(lm_l), "v_is_x": s(lm_x)},
        "roles": {
            "accuracy": s(acc_l),
            "value_swap_attention_tv": s([value_tv + j for j in jitter]),
            "value_swap_follows_new_value": s([follows] * n),
            "key_swap_attention_tv": s([key_tv + j for j in jitter]),
            "key_swap_keeps_old_answer": s([0.1] * n),
            "wv_random_attention_tv": s([0.0] * n),
            "wv_random_accuracy": s([wv_acc + j for j in jitter]),
        },
        "diverged": {"learned": 0, "v_is_x": 0},
        "thresholds": {
            "min_accuracy_gap": 0.1,
            "min_loss_gain": 0.0,
            "min_follow_value": 0.7,
            "max_value_swap_shift": 0.2,
        },
    }


def test_c06_verdict_supported() -> None:
    assert c06.verdict(c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)).label is Label.SUPPORTED


def test_c06_verdict_partly_when_v_is_x_as_good() -> None:
    m = c06_metrics(GOOD_ACC, [0.96, 0.95, 0.97], SAME_LM, GOOD_LM)
    assert c06.verdict(m).label is Label.PARTLY


@pytest.mark.parametrize("change", [{"value_tv": 0.6}, {"follows": 0.3}, {"key_tv": 0.02}, {"wv_acc": 0.96}])
def test_c06_verdict_not_supported_when_roles_do_not_separate(change: dict[str, float]) -> None:
    m = c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM, **change)
    assert c06.verdict(m).label is Label.NOT_SUPPORTED


def test_c06_verdict_inconclusive() -> None:
    assert c06.verdict(c06_metrics([0.2, 0.15, 0.18], BAD_ACC, GOOD_LM, BAD_LM)).label is Label.INCONCLUSIVE
    m = c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)
    m2 = copy.deepcopy(m)
    m2["lm_eval_loss"]["learned"]["values"] = [float("nan")] * 3
    assert c06.verdict(m2).label is Label.INCONCLUSIVE


# --------------------------------------------------------------------------- synthetic tasks
def test_relation_task_invariants() -> None:
    task = c04.RelationTask.make(16, 6, seed=3)
    assert torch.equal(task.backward[task.forward], torch.arange(16))
    # one cycle through every entity: following σ from 0 visits all 16 before returning
    seen, a = set(), 0
    for _ in range(16):
        seen.add(a)
        a = int(task.forward[a])
    assert a == 0 and len(seen) == 16
    smp = task.sample(200, torch.Generator().manual_seed(0))
    ids, rows = smp["ids"], torch.arange(200)
    assert ids.shape == (200, 7) and int(ids.max()) < task.vocab_size
    query = ids[:, -1]
    assert torch.equal(ids[rows, smp["position"]], task.forward[query])  # σ(q) where the target says
    assert torch.equal(ids[rows, smp["reverse_position"]], task.backward[query])  # σ⁻¹(q) always there
    assert torch.equal(smp["target"], 16 + smp["position"])
    assert not bool((ids[:, :-1] == query[:, None]).any())  # the query is not in its context
    assert all(len(set(r.tolist())) == 6 for r in ids[:, :-1])  # context tokens are distinct
    again = task.sample(200, torch.Generator().manual_seed(0))
    assert torch.equal(again["ids"], ids)  # deterministic


def test_key_value_task_and_swaps() -> None:
    task = c06.KeyValueTask(n_keys=8, n_values=6, n_pairs=5)
    gen = torch.Generator().manual_seed(1)
    smp = task.sample(300, gen)
    ids, rows, pos = smp["ids"], torch.arange(300), smp["position"]
    assert ids.shape == (300, 6) and int(ids.max()) < task.vocab_size
    qkey = ids[:, -1] - task.query_offset
    assert torch.equal(ids[rows, pos] // task.n_values, qkey)  # the matched pair has the query's key
    assert torch.equal(smp["target"] - task.answer_offset, ids[rows, pos] % task.n_values)
    assert all(len(set((r // task.n_values).tolist())) == 5 for r in ids[:, :-1])  # distinct keys
    vs = task.swap_value(smp, gen)
    assert torch.equal(vs["ids"][rows, pos] // task.n_values, qkey)  # key kept
    assert not bool((vs["target"] == smp["target"]).any())  # value changed, and the target with it
    assert torch.equal(vs["target"] - task.answer_offset, vs["ids"][rows, pos] % task.n_values)
    ks = task.swap_key(smp, gen)
    new_keys = ks["ids"][:, :-1] // task.n_values
    assert not bool((new_keys == qkey[:, None]).any())  # the query key is now absent
    assert torch.equal(ks["ids"][rows, pos] % task.n_values, ids[rows, pos] % task.n_values)
    assert all(len(set(r.tolist())) == 5 for r in new_keys)


def test_c03_measures() -> None:
    before = torch.eye(4)
    after = before.clone()
    after[0] = torch.tensor([2.0, 0, 0, 0])
    assert c03.row_relative_change(before, after).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert c03.table_relative_change(before, after) == pytest.approx(0.5)
    assert c03.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    table = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert c03.nearest_neighbours(table, [0], 2) == [[1, 2]]
    assert c03.neighbour_overlap(table, table, [0, 1, 2, 3], 1) == 1.0


# --------------------------------------------------------------------------- small experiments
TINY = {
    "device": "cpu",
    "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 32},
    "train": {"steps": 8, "batch_size": 4, "seq_len": 16, "eval_every": 4, "eval_windows": 4},
    "tokenizer": {"scope": "joint", "algorithm": "bpe", "vocab_size": 800},
}
SECTIONS: dict[str, dict[str, Any]] = {
    "C03": {
        "sample_words": ["the", "법률"],
        "sample_tokens": 3,
        "n_neighbours": 3,
        "overlap_tokens": 20,
        "pair_min_count": 2,
        "frozen_unit_std": 1.0,
        "min_relative_change": 0.05,
        "min_loss_gain": 0.02,
    },
    "C04": {
        "task": {
            "n_entities": 8,
            "context_len": 4,
            "n_layers": 1,
            "n_heads": 1,
            "ffn": False,
            "init_std": 0.1,
            "steps": 10,
            "batch_size": 8,
            "lr": 3e-3,
            "eval_size": 16,
        },
        "attention_windows": 2,
        "attention_examples": 3,
        "min_accuracy_gap": 0.2,
        "min_loss_gain": 0.02,
    },
    "C06": {
        "task": {
            "n_keys": 4,
            "n_values": 4,
            "n_pairs": 3,
            "n_layers": 1,
            "steps": 10,
            "batch_size": 8,
            "lr": 3e-3,
            "eval_size": 16,
        },
        "attention_examples": 3,
        "min_accuracy_gap": 0.1,
        "min_loss_gain": 0.02,
        "min_follow_value": 0.7,
        "max_value_swap_shift": 0.2,
    },
}


@pytest.fixture(scope="module")
def lm_inputs(tiny_corpus: Path, tiny_tokenizers: Path) -> dict[str, Path]:
    inputs = {"tokenizer": tiny_tokenizers / "joint" / "bpe-800" / "tokenizer.json"}
    for lang in ("en", "ko"):
        for split in ("train", "valid"):
            inputs[f"{split}_{lang}"] = tiny_corpus / lang / f"{split}.txt"
    return inputs


def run_claim(claim: str, inputs: dict[str, Path], out: Path) -> dict[str, Any]:
    from whylab.concepts import run_concept

    settings = {**TINY, **copy.deepcopy(SECTIONS[claim]), "seeds": [0, 1]}
    return run_concept(claim, settings, inputs, out / claim / "result.json", threads=1)


def test_registered_and_schema_defaults_fill() -> None:
    from whylab.concepts import REGISTRY
    from whylab.config import check_config

    assert {"C03", "C04", "C06"} <= set(REGISTRY)
    mech = check_config({})["mechanisms"]
    for claim, section in SECTIONS.items():  # the test sections use exactly the schema's keys
        assert set(mech[claim]) == set(section), claim


@pytest.mark.parametrize("claim", ["C03", "C04", "C06"])
def test_experiment_runs_end_to_end(claim: str, lm_inputs: dict[str, Path], tmp_path: Path) -> None:
    record = run_claim(claim, lm_inputs, tmp_path)
    assert record["verdict"]["label"] in {str(label) for label in Label}
    assert record["figures"] and all((tmp_path / claim / f["path"]).is_file() for f in record["figures"])
    assert record["tables"] and record["literature"]
    m = record["metrics"]
    if claim == "C03":
        assert m["relative_change"]["frozen"]["values"] == [0.0, 0.0]  # frozen means frozen
        assert min(m["relative_change"]["learned"]["values"]) > 0.0
        if m["unseen_tokens"]:  # no gradient reaches a token that never appears as input
            assert m["unseen_token_relative_change"]["values"] == [0.0, 0.0]
    if claim == "C04":  # with Q = K = X a token's best score is with itself, from the start
        assert m["lm_self_attention_layer1"]["no_qk"]["mean"] > 2 * m["lm_self_attention_uniform"]
    if claim == "C06":  # attention weights never depend on W_v
        assert m["roles"]["wv_random_attention_tv"]["values"] == [0.0, 0.0]


def test_experiment_is_deterministic(lm_inputs: dict[str, Path], tmp_path: Path) -> None:
    first = run_claim("C04", lm_inputs, tmp_path / "a")
    second = run_claim("C04", lm_inputs, tmp_path / "b")
    assert first["metrics"] == second["metrics"]


def _task_ctx(claim: str, task: dict[str, Any]) -> Any:
    from whylab.concepts import ConceptContext

    settings = {**TINY, "model": {"d_model": 32, "n_heads": 4}, **copy.deepcopy(SECTIONS[claim])}
    settings["task"].update(task)
    return ConceptContext(claim, settings, {}, Path("."), 1, "cpu")


def test_trained_key_value_model_separates_where_from_what() -> None:
    ctx = _task_ctx(
        "C06", {"n_keys": 6, "n_values": 6, "n_pairs": 4, "steps": 200, "batch_size": 64, "eval_size": 256}
    )
    roles = c06.run_task(ctx, seed=0, v_proj=True)["interventions"]
    assert roles["accuracy"] > 0.9
    assert roles["value_swap_follows_new_value"] > 0.8 and roles["value_swap_attention_tv"] < 0.2
    assert roles["key_swap_attention_tv"] > 0.4
    assert roles["wv_random_accuracy"] < 0.6


def test_learned_projections_solve_the_relation_task_q_equals_k_does_not() -> None:
    ctx = _task_ctx(
        "C04", {"n_entities": 12, "context_len": 5, "steps": 300, "batch_size": 64, "eval_size": 256}
    )
    learned = c04.run_task(ctx, seed=0, qk_proj=True)
    plain = c04.run_task(ctx, seed=0, qk_proj=False)
    assert learned["accuracy"] > plain["accuracy"] + 0.3
    assert plain["self_attention"][0] > 0.5 > learned["self_attention"][0]
