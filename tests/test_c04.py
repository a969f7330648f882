"""C04: the relation task, the verdict driven to every label by paired metrics, and the experiment
end to end (deterministic; Q = K = X looks at itself)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from bench_claims import TINY, comparison, lm_inputs_of, run_claim, schema_section, spread
from catalogue_checks import assert_explained, assert_in_korean, assert_record_in_korean
from claim_packages import assert_measuring_is_light
from whylab.concepts import ConceptContext
from whylab.concepts.c04_qk_projection import experiment
from whylab.concepts.c04_qk_projection import judged as c04_judged
from whylab.concepts.c04_qk_projection import verdict as c04
from whylab.concepts.c04_qk_projection.tasks import PairTask
from whylab.concepts.deciding import run_decide
from whylab.concepts.measuring import run_measure_seed
from whylab.verdict import Label

torch.set_num_threads(1)

CHANCE = 1 / 6
# realistic per-seed values (the default run: accuracy and probability of the right answer near 1 for
# a model that solved a task, ~0.6-0.75 for Q = K = X on the directed task, ~chance when unsolved)
SOLVED = [0.99998, 0.99997, 0.99999, 0.99996, 0.99998]
SOLVED_TOO = [0.99996, 0.99998, 0.99997, 0.99999, 0.99995]
PARTIAL = [0.597, 0.666, 0.684, 0.693, 0.676]
NOISY = [0.9, 0.45, 0.97, 0.4, 0.85]
NOISY_OTHER = [0.6, 0.75, 0.5, 0.8, 0.55]
UNSOLVED = [0.17, 0.18, 0.16, 0.17, 0.19]
GOOD_LM = [4.0, 4.05, 4.02, 4.08, 4.01]
BAD_LM = [g + d for g, d in zip(GOOD_LM, [0.3, 0.31, 0.3, 0.29, 0.305], strict=True)]  # paired: small spread
NOISY_LM = [4.5, 3.6, 4.4, 3.7, 4.1]
STEPS_FAIR = 800  # updates the small symmetric-task check gives both arms
SAME_LM = [4.001, 4.052, 4.018, 4.083, 4.012]  # within ±0.02 of GOOD_LM: no difference that matters


def _mechanism(n: int, partner: list[float] | None = None) -> dict[str, Any]:
    partner = partner or [0.9] * n
    most = [1.0 if v > 0.5 else 0.0 for v in partner]
    least = [0.0 if v > 0.5 else 1.0 for v in partner]
    seeds = list(range(n))
    return {
        "seeds": seeds,
        "partner_attention": partner,
        "self_attention": [0.05] * n,
        "partner_most": most,
        "partner_least": least,
        "groups": c04_judged.mechanism_groups(seeds, most, least, 0.5),
    }


def c04_metrics(
    sym: tuple[list[float], list[float]],
    dirc: tuple[list[float], list[float]],
    lm: tuple[list[float], list[float]],
    partner: list[float] | None = None,
) -> dict[str, Any]:
    """Metrics as summarize writes them, from per-seed (learned, Q = K = X) values: the symmetric
    and the directed task's probability of the right answer (accuracy the same), the LM loss."""
    n = len(sym[0])
    out: dict[str, Any] = {
        "n_seeds": n,
        "task": {"chance_accuracy": CHANCE},
        "thresholds": {"min_accuracy_gap": 0.2, "min_loss_gain": 0.02},
        "learned_below": {"loss": 0.1, "window": 20},
        "diverged": {"learned": 0, "no_qk": 0},
        "mechanism": {
            t: {k: _mechanism(n, partner) for k in ("learned", "no_qk")} for t in ("task", "symmetric")
        },
        "paired_lm_loss": comparison(lm[1], lm[0], 0.02),
    }
    for task, (learned, plain) in (("symmetric", sym), ("task", dirc)):
        out[f"{task}_accuracy"] = {"learned": spread(learned), "no_qk": spread(plain)}
        out[f"{task}_steps_to_learn"] = {"learned": [120] * n, "no_qk": [650] * n}
        out[f"paired_{task}_probability"] = comparison(learned, plain, 0.2)
        out[f"{task}_self_attention_layer1"] = {"learned": spread([0.05] * n), "no_qk": spread([0.8] * n)}
    return out


def test_each_part_reaches_every_label() -> None:
    """Each part (similar tokens, directed relation, LM) reaches supported, not supported and
    inconclusive from realistic metrics, Holm over the three."""
    cases = {
        ("similar", Label.SUPPORTED): c04_metrics((SOLVED, UNSOLVED), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)),
        ("similar", Label.NOT_SUPPORTED): c04_metrics(
            (SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)
        ),
        ("similar", Label.INCONCLUSIVE): c04_metrics(
            (NOISY, NOISY_OTHER), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)
        ),
        ("directed", Label.SUPPORTED): c04_metrics(
            (SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)
        ),
        ("directed", Label.NOT_SUPPORTED): c04_metrics(
            (SOLVED, SOLVED_TOO), (PARTIAL, SOLVED), (GOOD_LM, BAD_LM)
        ),
        ("directed", Label.INCONCLUSIVE): c04_metrics(
            (SOLVED, SOLVED_TOO), (NOISY, NOISY_OTHER), (GOOD_LM, BAD_LM)
        ),
        ("lm", Label.SUPPORTED): c04_metrics((SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)),
        ("lm", Label.NOT_SUPPORTED): c04_metrics((SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (BAD_LM, GOOD_LM)),
        ("lm", Label.INCONCLUSIVE): c04_metrics((SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, NOISY_LM)),
    }
    for (part, label), m in cases.items():
        v = c04.verdict(m)
        assert [p.id for p in v.parts] == ["similar", "directed", "lm"]
        got = {p.id: p for p in v.parts}[part]
        assert got.run is label, (part, label, got.run, got.reason)
        assert got.power is not None and got.power.n == 5
    # equivalence on the LM (a 95% CI inside ±0.02) is "not supported" too
    v = c04.verdict(c04_metrics((SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, SAME_LM)))
    assert v.parts[2].run is Label.NOT_SUPPORTED


def test_a_task_the_learned_model_did_not_solve_is_limited() -> None:
    v = c04.verdict(c04_metrics((UNSOLVED, UNSOLVED), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)))
    similar = v.parts[0]
    assert similar.run is Label.INCONCLUSIVE and "stayed near chance" in similar.reason
    assert v.label is Label.SUPPORTED  # a limited part never lowers the label


def test_claim_labels_and_the_expected_split() -> None:
    """Q = K = X finds the partner but not the direction: partly, with the notes' "because" named as
    wrong for similarity; all three won: supported; all three lost: not supported."""
    v = c04.verdict(c04_metrics((SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)))
    assert v.label is Label.PARTLY and v.branch == "C04.verdict.partly_directed"
    assert "wrong for similarity" in v.reason and "direction" in v.correction
    v = c04.verdict(c04_metrics((SOLVED, UNSOLVED), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)))
    assert v.label is Label.SUPPORTED
    v = c04.verdict(c04_metrics((SOLVED, SOLVED_TOO), (PARTIAL, SOLVED), (BAD_LM, GOOD_LM)))
    assert v.label is Label.NOT_SUPPORTED
    v = c04.verdict(c04_metrics((SOLVED, UNSOLVED), (SOLVED, PARTIAL), (BAD_LM, GOOD_LM)))
    assert v.label is Label.PARTLY and v.branch == "C04.verdict.partly"
    v = c04.verdict(c04_metrics((NOISY, NOISY_OTHER), (NOISY, NOISY_OTHER), (GOOD_LM, NOISY_LM)))
    assert v.label is Label.INCONCLUSIVE and v.branch == "C04.verdict.inconclusive"
    lm = v.parts[2]
    assert lm.field is not None and lm.field.label is Label.SUPPORTED and "Vaswani" in lm.field.reason


def test_per_seed_mechanism_groups_are_reported() -> None:
    """The default run's learned models split: some seeds attend to the token looked for, the
    others leave it out (least attention) and read the answer from where the attention is missing."""
    partner = [0.024, 0.028, 0.984, 0.024, 0.984]
    m = c04_metrics((SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM), partner)
    v = c04.verdict(m)
    assert "seed(s) 2, 4 attend to the token it looks for (0.98, 0.98" in v.reason
    assert "seed(s) 0, 1, 3 leave that token out (0.02, 0.03, 0.02" in v.reason
    assert "leave that token out" in v.takeaway
    group = c04_judged.mechanism_group
    assert group(1.0, 0.0, 0.5) == "toward" and group(0.0, 1.0, 0.5) == "away"
    assert group(0.56, 0.22, 0.5) == "toward" and group(0.0, 0.18, 0.5) == "mixed"


def test_steps_to_learn() -> None:
    loss = [2.0] * 50 + [0.05] * 30
    assert experiment.steps_to_learn(loss, window=20, below=0.1) == 70  # the first all-low window
    assert experiment.steps_to_learn([1.0] * 100) is None


def test_pair_task_invariants() -> None:
    task = PairTask.make(16, 6, seed=3)
    assert torch.equal(task.partner[task.partner], torch.arange(16))
    assert not bool((task.partner == torch.arange(16)).any())
    smp = task.sample(200, torch.Generator().manual_seed(0))
    ids, rows = smp["ids"], torch.arange(200)
    query = ids[:, -1]
    assert torch.equal(ids[rows, smp["position"]], task.partner[query])
    assert torch.equal(smp["target"], 16 + smp["position"])
    assert not bool((ids[:, :-1] == query[:, None]).any())
    context = ids[:, :-1].sort(dim=1).values
    assert bool((context[:, 1:] != context[:, :-1]).all())  # distinct entities per row


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


def test_q_equals_k_learns_the_symmetric_task_given_the_updates() -> None:
    """The symmetric task is fair to Q = K = X: with enough updates it finds the query's partner
    (by making partners' vectors alike), though later than learned W_q, W_k."""
    section = schema_section("C04")
    section["task"].update(n_entities=8, context_len=4, steps=STEPS_FAIR, batch_size=64, eval_size=256)
    settings = {**TINY, "model": {"d_model": 32, "n_heads": 4}, **section}
    ctx = ConceptContext("C04", settings, {}, Path("."), 1, "cpu")
    learned = experiment.run_task(ctx, seed=0, qk_proj=True, kind="symmetric")
    plain = experiment.run_task(ctx, seed=0, qk_proj=False, kind="symmetric")
    assert learned["accuracy"] > 0.95 and plain["accuracy"] > 0.95, (learned["accuracy"], plain["accuracy"])
    assert plain["steps_to_learn"] is not None and learned["steps_to_learn"] is not None
    assert plain["steps_to_learn"] > learned["steps_to_learn"]


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
    ok = ((SOLVED, SOLVED_TOO), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM))
    cases = {
        "C04.verdict.partly_directed": c04_metrics(*ok),
        "C04.verdict.supported": c04_metrics((SOLVED, UNSOLVED), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM)),
        "C04.verdict.partly": c04_metrics((SOLVED, UNSOLVED), (SOLVED, PARTIAL), (BAD_LM, GOOD_LM)),
        "C04.verdict.not_supported": c04_metrics((SOLVED, SOLVED_TOO), (PARTIAL, SOLVED), (BAD_LM, GOOD_LM)),
        "C04.verdict.inconclusive": c04_metrics(
            (NOISY, NOISY_OTHER), (NOISY, NOISY_OTHER), (GOOD_LM, NOISY_LM)
        ),
        "C04.verdict.too_few": c04_metrics(([0.9], [0.3]), ([0.9], [0.3]), ([4.0], [4.3])),
    }
    diverged = c04_metrics(*ok)
    diverged["diverged"]["no_qk"] = 1
    cases["C04.verdict.diverged"] = diverged
    # a part that was not learned, and a mixed mechanism, render too
    unsolved = c04_metrics(
        (UNSOLVED, UNSOLVED), (SOLVED, PARTIAL), (GOOD_LM, BAD_LM), [0.3, 0.9, 0.02, 0.3, 0.3]
    )
    cases["C04.verdict.supported"] = unsolved
    for branch, m in cases.items():
        v = c04.verdict(m)
        assert v.branch == branch, (branch, v.branch)
        assert_explained(v, "C04", differs_from_english=True)
        for part in v.parts:
            assert_in_korean(part.reason, differs_from_english=True)
            if part.field is not None:
                assert_in_korean(part.field.reason, differs_from_english=True)


def test_method_figures_tables_and_literature_render_in_korean() -> None:
    from whylab.messages import Msg, english_runs

    texts = [
        Msg(
            "C04.method",
            context_len=5,
            n_heads=2,
            ffn=Msg(f"C04.method_part.ffn_{w}"),
            init_std=0.02,
            steps=1000,
        )
        for w in ("with", "without")
    ]
    texts += [
        Msg("C04.table.summary.caption"),
        Msg("C04.table.paired.caption"),
        Msg("C04.table.mechanism.caption", share=0.5),
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

    shapes: list[dict[str, Any]] = [
        {"vocab_size": 50, "d_model": 32, "n_heads": 4, "n_layers": 2},
        {"vocab_size": 50, "d_model": 32, "n_heads": 4, "n_layers": 1, "init_std": 0.1},
        {"vocab_size": 50, "d_model": 32, "n_heads": 4, "n_layers": 2, "qk_init_std": 0.125},
        # the default run's task model and LM
        {
            "vocab_size": 22,
            "d_model": 64,
            "n_heads": 1,
            "n_layers": 1,
            "ffn": False,
            "init_std": 0.1,
            "max_len": 7,
        },
        {"vocab_size": 1000, "d_model": 64, "n_heads": 4, "n_layers": 2, "max_len": 256},
    ]
    for over in shapes:
        learned = build_model(BenchConfig(**over), 3, "cpu").state_dict()
        plain = build_model(BenchConfig(qk_proj=False, **over), 3, "cpu").state_dict()
        assert set(plain) < set(learned) and all(
            "q_proj" in k or "k_proj" in k for k in set(learned) - set(plain)
        )
        assert all(torch.equal(learned[k], plain[k]) for k in plain)
