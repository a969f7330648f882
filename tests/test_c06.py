"""C06: the key–value task, the roles decided by paired key-vs-value swaps (random W_v only an
illustration), the W_v ablation at one head without W_o, every label, and the run end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench_claims import TINY, comparison, lm_inputs_of, run_claim, schema_section, spread
from catalogue_checks import assert_explained, assert_record_in_korean
from claim_packages import assert_measuring_is_light
from whylab.concepts import ConceptContext
from whylab.concepts._settle import settle
from whylab.concepts.c06_value_projection import experiment as c06x
from whylab.concepts.c06_value_projection import verdict as c06
from whylab.verdict import Label

torch.set_num_threads(1)

N = 5
GOOD_ACC = [0.95, 0.9, 0.97, 0.93, 0.96]
BAD_ACC = [0.35, 0.3, 0.33, 0.31, 0.36]
GOOD_LM = [4.0, 4.05, 4.02, 4.08, 4.01]
BAD_LM = [4.3, 4.33, 4.29, 4.4, 4.31]


def c06_metrics(
    acc_v: list[float],
    acc_x: list[float],
    lm_v: list[float],
    lm_x: list[float],
    value_tv: list[float] | None = None,
    key_tv: list[float] | None = None,
    follow: float = 0.9,
    moving: bool = False,
) -> dict[str, Any]:
    """Metrics as ``summarize`` gives them; ``moving``: the mean paired LM difference still moved by
    0.1 nats/token over the last three evaluations (else it stayed flat there)."""
    value_tv = value_tv or [0.02, 0.03, 0.01, 0.02, 0.04]
    key_tv = key_tv or [0.7, 0.8, 0.75, 0.72, 0.78]
    roles = {
        "accuracy": spread(acc_v),
        "value_swap_attention_tv": spread(value_tv),
        "value_swap_follows_new_value": spread([follow] * N),
        "key_swap_attention_tv": spread(key_tv),
    }
    end = sum(lm_x) / N - sum(lm_v) / N
    tail = [end + 0.1, end + 0.05, end] if moving else [end, end, end]
    curve = {"steps": [0, 50, 100, 150, 200, 250, 300], "mean": [0.0, -0.1, -0.05, end, *tail], "n": N}
    tuning = {
        k: {"grid": [1e-3, 3e-3, 1e-2], "tune_loss": [5.5, 4.4, 4.6], "lr": 3e-3} for k in ("w_v", "v_is_x")
    }
    return {
        "n_seeds": N,
        "lm_eval_loss": {"w_v": spread(lm_v), "v_is_x": spread(lm_x)},
        "tuning": tuning,
        "lm_steps": 300,
        "difference_curve": curve,
        "settle": settle(curve, 0.02, 3),
        "settle_evals": 3,
        "task": {"chance_accuracy": 1 / 8},
        "task_accuracy": {"w_v": spread(acc_v), "v_is_x": spread(acc_x)},
        "roles": roles,
        "paired_key_minus_value_shift": comparison(key_tv, value_tv, 0.2),
        "paired_task_accuracy": comparison(acc_v, acc_x, 0.1),
        "paired_lm_loss": comparison(lm_x, lm_v, 0.02),
        "diverged": {"w_v": 0, "v_is_x": 0, "v_is_x_wo": 0},
        "thresholds": {
            "min_accuracy_gap": 0.1,
            "min_loss_gain": 0.02,
            "min_follow_value": 0.7,
            "max_value_swap_shift": 0.2,
        },
    }


def test_verdict_supported_when_roles_separate_and_w_v_helps() -> None:
    v = c06.verdict(c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM))
    assert v.label is Label.SUPPORTED and not v.limited and "W_o" in v.primary


def test_verdict_partly_when_v_is_x_is_as_good() -> None:
    same_acc = [a - 0.005 * (-1) ** i for i, a in enumerate(GOOD_ACC)]
    same_lm = [x + 0.002 * (-1) ** i for i, x in enumerate(GOOD_LM)]
    v = c06.verdict(c06_metrics(GOOD_ACC, same_acc, GOOD_LM, same_lm))
    assert v.label is Label.PARTLY and v.correction


def test_unclear_ablation_is_a_limit_not_a_lower_label() -> None:
    noisy_acc = [0.9, 0.5, 0.97, 0.4, 0.95]
    noisy_lm = [4.5, 3.6, 4.4, 3.7, 4.1]
    v = c06.verdict(c06_metrics(GOOD_ACC, noisy_acc, GOOD_LM, noisy_lm))
    assert v.label is Label.SUPPORTED and v.limited


def test_verdict_not_supported_when_roles_do_not_separate() -> None:
    v = c06.verdict(c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM, follow=0.3))
    assert v.label is Label.NOT_SUPPORTED
    moved = [0.5, 0.6, 0.55, 0.52, 0.58]  # changing the value moves attention as much as the key
    v = c06.verdict(c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM, value_tv=moved, key_tv=moved[::-1]))
    assert v.label is Label.NOT_SUPPORTED


def test_verdict_inconclusive() -> None:
    assert (
        c06.verdict(c06_metrics([0.2, 0.15, 0.18, 0.2, 0.19], BAD_ACC, GOOD_LM, BAD_LM)).label
        is Label.INCONCLUSIVE
    )
    m = c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)
    m["diverged"]["v_is_x"] = 1
    assert c06.verdict(m).label is Label.INCONCLUSIVE
    # the value swap behaves, but the key swap is not clearly larger at this seed count
    unclear = c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM, key_tv=[0.9, 0.0, 0.8, 0.01, 0.5])
    assert c06.verdict(unclear).label is Label.INCONCLUSIVE


def test_key_value_task_and_swaps() -> None:
    task = c06x.KeyValueTask(n_keys=8, n_values=6, n_pairs=5)
    gen = torch.Generator().manual_seed(1)
    smp = task.sample(300, gen)
    ids, rows, pos = smp["ids"], torch.arange(300), smp["position"]
    qkey = ids[:, -1] - task.query_offset
    assert torch.equal(ids[rows, pos] // task.n_values, qkey)
    vs = task.swap_value(smp, gen)
    assert torch.equal(vs["ids"][rows, pos] // task.n_values, qkey)
    assert not bool((vs["target"] == smp["target"]).any())
    ks = task.swap_key(smp, gen)
    assert not bool((ks["ids"][:, :-1] // task.n_values == qkey[:, None]).any())


def test_trained_one_head_model_without_w_o_separates_where_from_what() -> None:
    section = schema_section("C06")
    section["task"].update(n_keys=6, n_values=6, n_pairs=4, steps=200, batch_size=64, eval_size=256)
    ctx = ConceptContext(
        "C06", {**TINY, "model": {"d_model": 32, "n_heads": 4}, **section}, {}, Path("."), 1, "cpu"
    )
    roles = c06x.run_task(ctx, seed=0, v_proj=True, o_proj=False)["interventions"]
    assert roles["accuracy"] > 0.9
    assert roles["value_swap_follows_new_value"] > 0.8 and roles["value_swap_attention_tv"] < 0.2
    assert roles["key_swap_attention_tv"] > 0.4
    assert roles["wv_random_attention_tv"] == 0.0  # one layer: attention cannot depend on W_v


def test_runs_end_to_end(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    section = schema_section("C06")
    section["task"].update(n_keys=4, n_values=4, n_pairs=3, steps=10, batch_size=8, eval_size=16)
    section["attention_examples"] = 3
    section.update(lm_steps=6, eval_every=2, lr_grid=[3e-3, 1e-2])
    rec = run_claim("C06", section, lm_inputs_of(tiny_corpus, tiny_tokenizers), tmp_path)
    m = rec["metrics"]
    assert set(m["task_accuracy"]) == {"w_v", "v_is_x", "v_is_x_wo"}
    assert m["task"]["n_heads"] == 1 and m["paired_lm_loss"]["n"] == 2
    assert set(m["lm_eval_loss"]) == {"w_v", "v_is_x", "baseline"}
    assert {t["lr"] for t in m["tuning"].values()} <= {3e-3, 1e-2} and m["difference_curve"]["steps"] == [
        0,
        2,
        4,
        6,
    ]
    assert len(rec["tables"]) == 3 and any(f["path"].endswith("settle.png") for f in rec["figures"])
    assert all((tmp_path / "C06" / f["path"]).is_file() for f in rec["figures"])
    # every text of the record is a catalogue message that renders in Korean
    ko = assert_record_in_korean(rec)
    assert len(ko) >= 1 + 2 + 4 * 2 + 2 + 2  # method, tables, figures, literature, verdict


def test_measuring_imports_no_plotting_texts_or_verdicts() -> None:
    assert_measuring_is_light("C06")


def test_decision_settings_change_the_decision_not_the_measurements(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    """Every C06 threshold is a decision setting: the same measurements decided with another
    min_accuracy_gap give other comparisons, and measure_seed ran once per seed."""
    import copy

    from whylab.concepts.deciding import decide
    from whylab.concepts.measuring import measure_in_process
    from whylab.concepts.spec import load_spec

    section = schema_section("C06")
    section["task"].update(n_keys=4, n_values=4, n_pairs=3, steps=4, batch_size=8, eval_size=16)
    section["attention_examples"] = 2
    section.update(lm_steps=4, eval_every=2, lr_grid=[3e-3])
    settings = {**copy.deepcopy(TINY), **section}
    measured = measure_in_process("C06", settings, lm_inputs_of(tiny_corpus, tiny_tokenizers))
    assert [r["seed"] for r in measured.per_seed] == TINY["seeds"]
    assert [r["seed"] for r in measured.whole["per_seed"]] == TINY["seeds"]  # the LM, tuned first
    assert set(load_spec("C06").decision_settings) == {*c06.THRESHOLDS, "settle_evals"}
    rec = decide("C06", {**settings, "min_accuracy_gap": 0.5}, measured, tmp_path / "C06" / "result.json")
    assert rec["metrics"]["thresholds"]["min_accuracy_gap"] == 0.5
    assert rec["metrics"]["paired_task_accuracy"]["min_effect"] == 0.5
    assert rec["metrics"]["roles"] == c06.summarize(measured)["roles"]


# --------------------------------------------------------------------------- catalogue texts
def test_every_branch_has_a_takeaway_and_renders_in_korean() -> None:
    same_acc = [a - 0.005 * (-1) ** i for i, a in enumerate(GOOD_ACC)]
    same_lm = [x + 0.002 * (-1) ** i for i, x in enumerate(GOOD_LM)]
    too_few = c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)
    too_few["n_seeds"] = 1
    diverged = c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)
    diverged["diverged"]["v_is_x_wo"] = 1
    cases = {
        "w_v_helps": (Label.SUPPORTED, c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)),
        "w_v_not_needed": (Label.PARTLY, c06_metrics(GOOD_ACC, same_acc, GOOD_LM, same_lm)),
        "w_v_unclear": (
            Label.SUPPORTED,
            c06_metrics(GOOD_ACC, [0.9, 0.5, 0.97, 0.4, 0.95], GOOD_LM, [4.5, 3.6, 4.4, 3.7, 4.1]),
        ),
        "not_separated": (Label.NOT_SUPPORTED, c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM, follow=0.3)),
        "too_few": (Label.INCONCLUSIVE, too_few),
        "diverged": (Label.INCONCLUSIVE, diverged),
        "not_learned": (
            Label.INCONCLUSIVE,
            c06_metrics([0.2, 0.15, 0.18, 0.2, 0.19], BAD_ACC, GOOD_LM, BAD_LM),
        ),
        "key_unclear": (
            Label.INCONCLUSIVE,
            c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM, key_tv=[0.9, 0.0, 0.8, 0.01, 0.5]),
        ),
    }
    for branch, (label, m) in cases.items():
        v = c06.verdict(m)
        assert v.label is label and v.branch == f"C06.verdict.{branch}"
        assert_explained(v, "C06", differs_from_english=True)
    helps = c06.verdict(cases["w_v_helps"][1])
    assert "clearly helps on task and the LM" in helps.reason
    assert c06.verdict(cases["w_v_unclear"][1]).limited


def test_every_w_v_label_is_reachable_and_the_limits_render_in_korean() -> None:
    """The W_v part from realistic metrics: a clear gain (supported), equivalence by TOST once
    settled (partly), still moving or within the seed noise (inconclusive, with the reason)."""
    same_acc = [a - 0.005 * (-1) ** i for i, a in enumerate(GOOD_ACC)]
    same_lm = [x + 0.002 * (-1) ** i for i, x in enumerate(GOOD_LM)]
    noisy_lm = [4.5, 3.6, 4.4, 3.7, 4.1]
    cases = {
        Label.SUPPORTED: c06_metrics(GOOD_ACC, same_acc, GOOD_LM, BAD_LM),
        Label.PARTLY: c06_metrics(GOOD_ACC, same_acc, GOOD_LM, same_lm),
        Label.INCONCLUSIVE: c06_metrics(GOOD_ACC, same_acc, GOOD_LM, noisy_lm),
    }
    for label, m in cases.items():
        assert c06.verdict(m).parts[1].run is label
    # an LM gain still moving does not count: only the task's could
    moving = c06.verdict(c06_metrics(GOOD_ACC, same_acc, GOOD_LM, BAD_LM, moving=True))
    assert moving.parts[1].run is Label.INCONCLUSIVE and moving.limited[0].key == "C06.limited.w_v_moving"
    noisy = c06.verdict(cases[Label.INCONCLUSIVE])
    assert noisy.limited[0].key == "C06.limited.w_v" and "varies by" in str(noisy.limited[0])
    for v in (moving, noisy, c06.verdict(cases[Label.PARTLY])):
        assert_explained(v, "C06", differs_from_english=True)


def test_method_figures_tables_and_literature_render_in_korean() -> None:
    from whylab.messages import Msg, english_runs

    texts = [
        Msg("C06.method", n_pairs=4, n_keys=6, n_values=6),
        Msg("C06.table.roles.caption"),
        Msg("C06.table.ablation.caption", n_heads=4),
        Msg("C06.literature.vaswani.finding"),
        Msg("C06.literature.vaswani.note", value_tv=0.01, follow=0.9, key_tv=0.7),
        Msg("C06.figure.ablation.caption", chance=0.125),
        Msg("C06.figure.attention_map.title", seed=0),
    ]
    texts += [Msg(f"C06.figure.{f}.{part}") for f in ("roles", "lm_curves") for part in ("title", "caption")]
    texts += [Msg("C06.figure.ablation.title"), Msg("C06.figure.attention_map.caption")]
    texts += [Msg("C06.figure.settle.title"), Msg("C06.figure.settle.caption", margin=0.02)]
    texts += [Msg("C06.table.tuning.caption")]
    for text in texts:
        assert english_runs(text.in_("ko")) == [], text.in_("ko")


def test_parts_tost_ceiling_and_optimisation_effect() -> None:
    """Issue 20: 'adds nothing' needs TOST inside the margin; a ceiling (both arms 1.000 on every
    seed) is a limit; V = X clearly better is an optimisation effect, not evidence against W_v."""
    from whylab.messages import english_runs

    ceiling = [1.0] * N
    same_lm = [x + 0.002 * (-1) ** i for i, x in enumerate(GOOD_LM)]
    v = c06.verdict(c06_metrics(ceiling, ceiling, GOOD_LM, same_lm))
    roles, w_v = v.parts
    assert roles.run is Label.SUPPORTED and roles.field is not None and roles.field.label is Label.SUPPORTED
    # the task cannot tell the arms apart (a limit of the task): the LM's TOST decides alone
    assert (
        w_v.run is Label.PARTLY
        and "ceiling" in str(w_v.reason)
        and "LM comparison decides" in str(w_v.reason)
    )
    assert v.label is Label.PARTLY
    # ... but not while the LM difference is still moving
    v = c06.verdict(c06_metrics(ceiling, ceiling, GOOD_LM, same_lm, moving=True))
    assert v.parts[1].run is Label.INCONCLUSIVE and "had not stopped moving" in str(v.parts[1].reason)
    assert v.label is Label.SUPPORTED and [x.key for x in v.limited] == ["C06.limited.w_v_moving"]
    better_x = [x - 0.25 + 0.01 * (-1) ** i for i, x in enumerate(GOOD_LM)]
    v = c06.verdict(c06_metrics(ceiling, ceiling, GOOD_LM, better_x))
    assert v.parts[1].run is Label.INCONCLUSIVE and "effect of optimisation" in str(v.parts[1].reason)
    assert [x.key for x in v.limited] == ["C06.limited.w_v_lower"]
    assert v.label is Label.SUPPORTED  # no longer "partly" from V = X winning a short run
    same_acc = [a - 0.005 * (-1) ** i for i, a in enumerate(GOOD_ACC)]
    v = c06.verdict(c06_metrics(GOOD_ACC, same_acc, GOOD_LM, same_lm))
    assert v.parts[1].run is Label.PARTLY and v.label is Label.PARTLY
    assert c06.verdict(c06_metrics(GOOD_ACC, BAD_ACC, GOOD_LM, BAD_LM)).parts[1].run is Label.SUPPORTED
    for part in v.parts:
        assert part.field is not None
        for text in (part.reason, part.field.reason):
            assert english_runs(text.in_("ko")) == [], text.in_("ko")
