"""C11: the notes' wiring is a real, trainable module that fails at unequal lengths; the library
roles are read from hooks; the verdict can give every label from realistic metrics."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import pytest
import torch

from catalogue_checks import assert_catalogue_in_korean, assert_explained, assert_record_in_korean
from claim_packages import assert_measuring_is_light
from whylab.bench.model import EncoderDecoder
from whylab.concepts import REGISTRY, run_concept
from whylab.concepts.c11_cross_attention import CLAIM_ID, wiring
from whylab.concepts.c11_cross_attention import experiment as c11x
from whylab.concepts.c11_cross_attention import figures as c11f
from whylab.concepts.c11_cross_attention import verdict as c11
from whylab.concepts.context import ConceptContext
from whylab.messages import Msg, english_runs
from whylab.verdict import Kind, Label

torch.set_num_threads(1)


def test_registered_as_a_package_with_seeds() -> None:
    assert REGISTRY["C11"] == "whylab.concepts.c11_cross_attention" and CLAIM_ID == c11.CLAIM_ID == "C11"
    assert hasattr(c11x, "measure_seed") and hasattr(c11x, "measure")


def test_measuring_imports_no_plotting_texts_or_verdicts() -> None:
    assert_measuring_is_light("C11")


def test_sequence_task() -> None:
    task = c11x.SequenceTask(length=4, symbols=5)
    src, tgt = task.sample(3, torch.Generator().manual_seed(0))
    assert src.shape == (3, 4) and tgt.shape == (3, 5)
    assert torch.equal(tgt[:, :4], src.flip(1)) and (tgt[:, 4] == task.eos_id).all()
    dec_in = task.decoder_input(tgt)
    assert (dec_in[:, 0] == task.bos).all() and torch.equal(dec_in[:, 1:], tgt[:, :-1])
    assert [task.source_position(t) for t in range(4)] == [3, 2, 1, 0]
    assert c11x.SequenceTask(4, 5, reverse=False).source_position(1) == 1
    equal = c11x.SequenceTask(4, 5, eos=False)
    assert equal.sample(2, torch.Generator().manual_seed(0))[1].shape == (2, 4)


def _model(task: c11x.SequenceTask, notes: bool, seed: int = 0) -> EncoderDecoder:
    s = {"d_model": 16, "n_heads": 2, "n_layers": 2}
    return c11x.build(s, task, seed, notes=notes)


def test_notes_wiring_reads_q_and_k_from_the_memory_and_v_from_the_decoder() -> None:
    task = c11x.SequenceTask(length=5, symbols=6, eos=False)
    standard, notes = _model(task, False), _model(task, True)
    # the same parameters, the same initial weights
    assert [n for n, _ in standard.named_parameters()] == [n for n, _ in notes.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(standard.parameters(), notes.parameters(), strict=True))
    src, tgt = task.sample(4, torch.Generator().manual_seed(1))
    dec_in = task.decoder_input(tgt)
    notes.eval()
    memory = notes.encode(src)
    with c11x.capture_qkv(notes) as seen:
        notes.decode(dec_in, memory)
    assert seen["Q_in"][0] == seen["K_in"][0] == [4, 5, 16]
    # the memory moves Q and K of the first layer, the decoder input moves only V
    changed = dec_in.clone()
    changed[:, 2] = (changed[:, 2] + 1) % task.symbols
    with c11x.capture_qkv(notes) as by_memory:
        notes.decode(
            dec_in, memory + 0.5 * torch.randn(memory.shape, generator=torch.Generator().manual_seed(2))
        )
    with c11x.capture_qkv(notes) as by_decoder:
        notes.decode(changed, memory)
    for part, memory_moves in (("Q", True), ("K", True), ("V", False)):
        assert (not torch.equal(seen[part][0], by_memory[part][0])) is memory_moves, part
        assert torch.equal(seen[part][0], by_decoder[part][0]) is memory_moves, part


def test_notes_wiring_is_causal_over_the_decoder_positions() -> None:
    task = c11x.SequenceTask(length=6, symbols=6, eos=False)
    model = _model(task, True).eval()
    src, tgt = task.sample(2, torch.Generator().manual_seed(3))
    dec_in = task.decoder_input(tgt)
    changed = dec_in.clone()
    changed[:, 4] = (changed[:, 4] + 1) % task.symbols
    with torch.no_grad():
        a, b = model(src, dec_in).logits, model(src, changed).logits
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.equal(a[:, 4:], b[:, 4:])


def test_notes_wiring_fails_at_unequal_lengths_where_weights_meet_values() -> None:
    task = c11x.SequenceTask(length=5, symbols=6, eos=True)
    src, tgt = task.sample(2, torch.Generator().manual_seed(0))
    out = wiring.failure_at_unequal_lengths(_model(task, True), src, task.decoder_input(tgt))
    assert out["runs"] is False and (out["source_length"], out["target_length"]) == (5, 6)
    assert out["error"].startswith("RuntimeError") and "whylab/bench/attention.py" in out["where"]
    assert "in attention" in out["where"] and "weights @ v" in out["where"]
    ok = wiring.failure_at_unequal_lengths(_model(task, False), src, task.decoder_input(tgt))
    assert ok["runs"] is True and ok["error"] == ""


def test_notes_ceiling() -> None:
    # 8 positions, 10 symbols: 7 positions can be right, the first is right 1 time in 10
    assert c11.notes_ceiling(8, 10) == pytest.approx((7 + 0.1) / 8)


def test_greedy_accuracy_of_a_model_that_copies_the_answer() -> None:
    """accuracy() counts what it says: an untrained model is near chance, both wirings decode."""
    task = c11x.SequenceTask(length=4, symbols=5, eos=False)
    src, tgt = task.sample(32, torch.Generator().manual_seed(0))
    for notes in (False, True):
        acc = c11x.accuracy(_model(task, notes), task, src, tgt)
        assert 0.0 <= acc["sequence_accuracy"] <= acc["token_accuracy"] <= 0.6


def test_standard_interventions_and_cross_attention_off() -> None:
    task = c11x.SequenceTask(length=5, symbols=6, eos=False)
    model = _model(task, False)
    src, tgt = task.sample(8, torch.Generator().manual_seed(1))
    res = c11x.interventions(model, task, src, tgt, 0.5, torch.Generator().manual_seed(2))
    ch = res["changes"]
    assert ch["memory"]["Q"][0] == 0.0 and ch["memory"]["Q"][1] > 0
    assert min(ch["memory"]["K"]) > 0 and max(ch["decoder"]["K"]) == 0.0 and max(ch["decoder"]["V"]) == 0.0
    assert res["shapes"]["q_input"] == [8, 3, 16] and res["shapes"]["k_input"] == [8, 5, 16]
    with c11x.cross_attention_off(model):
        off = model(src, task.decoder_input(tgt)).logits
        off2 = model(src.roll(1, 0), task.decoder_input(tgt)).logits
    assert torch.allclose(off, off2)


@pytest.fixture(scope="module")
def library() -> list[dict[str, Any]]:
    return [wiring.library_roles(lib, 0) for lib in wiring.library_models()]


def test_library_roles_from_hooks(library: list[dict[str, Any]]) -> None:
    by = {r["model"]: r for r in library}
    for name in ("T5", "BART"):
        roles = c11.roles(by[name])
        assert roles["has_cross_attention"] and roles["q_from_decoder"] and not roles["q_from_encoder"]
        assert roles["k_from_encoder"] and roles["v_from_encoder"]
        assert by[name]["cross_attention_layers"] == by[name]["decoder_layers"] == 2
        assert by[name]["q_vs_encoder_output"] is None and by[name]["k_vs_encoder_output"] == 0.0
    assert by["GPT-2"]["cross_attention_layers"] == 0 and not c11.roles(by["GPT-2"])["has_cross_attention"]


def test_roles_read_a_notes_style_library_row() -> None:
    """If a library fed the encoder output to W_q, roles() would say so (the check can fail)."""
    row = {
        "cross_attention_layers": 2,
        "source_length": 7,
        "target_length": 5,
        **{f"{p}_input_length": 7 for p in "qk"},
        "v_input_length": 5,
        **{f"{p}_vs_encoder_output": 0.0 for p in "qk"},
        "v_vs_encoder_output": None,
        **{f"{p}_moved_by_source": 1.0 for p in "qk"},
        "v_moved_by_source": 0.0,
        **{f"{p}_moved_by_decoder": 0.0 for p in "qk"},
        "v_moved_by_decoder": 2.0,
    }
    roles = c11.roles(row)
    assert roles["q_from_encoder"] and roles["k_from_encoder"] and roles["v_from_decoder"]
    assert not roles["q_from_decoder"]


# --------------------------------------------------------------------------- verdict


def _lib_row(
    name: str, q: str = "decoder", k: str = "encoder", layers: int = 2, cross: int = 2
) -> dict[str, Any]:
    src_len, tgt_len = 7, 5

    def side(p: str, where: str) -> dict[str, Any]:
        enc = where == "encoder"
        return {
            f"{p}_input_length": src_len if enc else tgt_len,
            f"{p}_vs_encoder_output": 0.0 if enc else None,
            f"{p}_moved_by_source": 2.9 if enc else 0.0,
            f"{p}_moved_by_decoder": 0.0 if enc else 3.7,
        }

    row: dict[str, Any] = {"model": name, "cross_attention_layers": cross, "decoder_layers": layers}
    if cross:
        row.update(
            source_length=src_len, target_length=tgt_len, **side("q", q), **side("k", k), **side("v", k)
        )
    return row


def _metrics(
    std: float = 1.0,
    notes: float = 0.18,
    q: str = "decoder",
    k: str = "encoder",
    cross: int = 2,
    seeds: int = 3,
    library: bool = True,
) -> dict[str, Any]:
    def per_seed(first: float, later: float) -> list[list[float]]:
        return [[first, later] for _ in range(seeds)]

    jitter = [0.0, 0.01, -0.012, 0.006, -0.004][:seeds]
    return {
        "task": "reverse",
        "symbols": 10,
        "n_seeds": seeds,
        "min_accuracy": 0.9,
        "min_effect": 0.05,
        "chance_accuracy": 0.1,
        "notes_ceiling": 0.8875,
        "alignment_chance": 0.125,
        "token_accuracy": {
            "standard": [min(1.0, std - abs(j)) for j in jitter],
            "notes": [notes + j for j in jitter[::-1]],
        },
        "sequence_accuracy": {"standard": [std] * seeds, "notes": [0.0] * seeds},
        "token_accuracy_cross_off": [0.1] * seeds,
        "alignment": [[0.79, 0.68]] * seeds,
        "shapes": {
            "q_input": [256, 6, 32],
            "k_input": [256, 8, 32],
            "v_input": [256, 8, 32],
            "source_length": 8,
            "target_length": 6,
        },
        "changes": {
            "memory": {
                "Q": per_seed(0.0, 0.5),
                "K": per_seed(0.15, 0.2),
                "V": per_seed(0.4, 0.3),
                "weights": per_seed(0.1, 0.1),
            },
            "decoder": {
                "Q": per_seed(0.08, 0.1),
                "K": per_seed(0.0, 0.0),
                "V": per_seed(0.0, 0.0),
                "weights": per_seed(0.04, 0.02),
            },
        },
        "unequal_lengths": {
            "source_length": 8,
            "target_length": 9,
            "runs": False,
            "error": "RuntimeError: Expected size for first two dimensions of batch2 tensor to be: [8, 8] but got: [8, 9].",
            "where": "whylab/bench/attention.py, line 43, in attention: return weights @ v, weights",
        },
        "library": (
            [
                _lib_row("T5", q, k, cross=cross),
                _lib_row("BART", q, k, cross=cross),
                _lib_row("GPT-2", cross=0),
            ]
            if library
            else []
        ),
    }


def test_verdict_every_label() -> None:
    v = c11.verdict(_metrics())  # the real run: queries from the decoder, the notes' wiring fails
    assert v.label is Label.PARTLY and v.kind is Kind.DEFINITION and v.primary and v.correction
    assert "queries come from the decoder" in v.reason and "clearly worse" in v.reason and "GPT-2" in v.reason
    assert "does not run" in v.reason and v.limited == () and "best possible 0.887" in v.reason
    assert c11.verdict(_metrics(q="encoder")).label is Label.SUPPORTED
    assert c11.verdict(_metrics(k="decoder")).label is Label.NOT_SUPPORTED
    assert c11.verdict(_metrics(cross=0)).label is Label.NOT_SUPPORTED
    assert c11.verdict(_metrics(library=False)).label is Label.INCONCLUSIVE
    assert c11.verdict(_metrics(seeds=1)).label is Label.INCONCLUSIVE
    mixed = _metrics()
    for row in mixed["library"][:2]:  # a query input moved by both sides: its source cannot be read
        row["q_moved_by_source"] = 1.2
    assert c11.verdict(mixed).label is Label.INCONCLUSIVE


def test_verdict_reports_the_experiment_without_letting_it_lower_the_label() -> None:
    same = c11.verdict(_metrics(notes=1.0))  # the notes' wiring as good: still partly, said so
    assert same.label is Label.PARTLY and "as well as" in same.reason
    better = c11.verdict(_metrics(std=0.95, notes=1.0 + 0.2))
    assert better.label is Label.PARTLY and "clearly better" in better.reason
    unlearned = c11.verdict(_metrics(std=0.5))  # the standard model did not learn: limited, not lowered
    assert unlearned.label is Label.PARTLY and unlearned.limited and "did not learn" in unlearned.limited[0]
    noisy = _metrics(notes=0.97)
    noisy["token_accuracy"]["notes"] = [0.9, 1.0, 0.85]
    unclear = c11.verdict(noisy)
    assert unclear.label is Label.PARTLY and unclear.limited and "not clear" in unclear.limited[0]


def _values_from_the_decoder() -> dict[str, Any]:
    """Library rows whose W_v reads the decoder (queries from the decoder, keys from the encoder)."""
    m = _metrics()
    for row in m["library"][:2]:
        row.update(v_input_length=5, v_vs_encoder_output=None, v_moved_by_source=0.0, v_moved_by_decoder=3.7)
    return m


def _mixed() -> dict[str, Any]:
    m = _metrics()
    for row in m["library"][:2]:
        row["q_moved_by_source"] = 1.2
    return m


def _noisy() -> dict[str, Any]:
    m = _metrics(notes=0.97)
    m["token_accuracy"]["notes"] = [0.9, 1.0, 0.85]
    return m


# every verdict branch, and the experiment's outcomes inside the partly branch
BRANCHES: dict[str, tuple[Any, Label, str]] = {
    "real run": (_metrics, Label.PARTLY, "queries_from_decoder"),
    "as well": (lambda: _metrics(notes=1.0), Label.PARTLY, "queries_from_decoder"),
    "better": (lambda: _metrics(std=0.95, notes=1.2), Label.PARTLY, "queries_from_decoder"),
    "unlearned": (lambda: _metrics(std=0.5), Label.PARTLY, "queries_from_decoder"),
    "unclear": (_noisy, Label.PARTLY, "queries_from_decoder"),
    "values elsewhere": (_values_from_the_decoder, Label.PARTLY, "queries_from_decoder_values_elsewhere"),
    "supported": (lambda: _metrics(q="encoder"), Label.SUPPORTED, "queries_from_encoder"),
    "keys": (lambda: _metrics(k="decoder"), Label.NOT_SUPPORTED, "keys_not_from_encoder"),
    "no cross": (lambda: _metrics(cross=0), Label.NOT_SUPPORTED, "no_cross_attention"),
    "library off": (lambda: _metrics(library=False), Label.INCONCLUSIVE, "library_off"),
    "one seed": (lambda: _metrics(seeds=1), Label.INCONCLUSIVE, "too_few_seeds"),
    "unread": (_mixed, Label.INCONCLUSIVE, "queries_unread"),
}


@pytest.mark.parametrize("case", list(BRANCHES))
def test_every_branch_has_its_texts_in_korean(case: str) -> None:
    make, label, branch = BRANCHES[case]
    v = c11.verdict(make())
    assert v.label is label and v.branch == f"C11.verdict.{branch}"
    assert_explained(v, "C11", branch, differs_from_english=True)


def test_partly_correction_puts_queries_on_the_decoder_side() -> None:
    v = c11.verdict(_metrics())
    assert v.correction == (
        "A decoder in an encoder–decoder has cross-attention, which uses the decoder's states as queries "
        "and the encoder output as keys and values (decoder-only models such as GPT have no cross-attention)."
    )
    assert "디코더의 상태를 쿼리로, 인코더 출력을 키와 값으로" in v.correction.in_("ko")
    elsewhere = c11.verdict(_values_from_the_decoder())  # the correction follows what was measured
    assert "keys and values" not in elsewhere.correction and "its values do not come" in elsewhere.correction
    assert "but the values do not" in elsewhere.reason


def test_catalogue_is_korean() -> None:
    """Every C11 text in the Korean catalogue (also those no test run reaches) has no English
    prose, and the English has the same keys and placeholders."""
    assert_catalogue_in_korean("C11")


def test_literature_reads_our_model() -> None:
    lit = c11f.literature(_metrics())
    assert lit[0].agrees is True and lit[1].agrees is True
    assert (
        lit[0].note
        == "Our trained model: Q from the decoder True, K from the encoder True, V from the encoder True."
    )
    for check in lit:
        for text in (check.finding, check.note):
            assert isinstance(text, Msg) and english_runs(text.in_("ko")) == []
    m = _metrics()
    m["changes"]["memory"]["Q"] = [[0.3, 0.5]] * 3
    assert c11f.literature(m)[0].agrees is False
    assert math.isclose(m["alignment_chance"], 1 / 8)


# --------------------------------------------------------------------------- end to end, tiny


SETTINGS: dict[str, Any] = {
    "seeds": [0, 1],
    "device": "cpu",
    "task": "reverse",
    "length": 4,
    "symbols": 5,
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 1,
    "steps": 60,
    "batch_size": 16,
    "lr": 3e-3,
    "eval_size": 32,
    "noise": 0.5,
    "min_accuracy": 0.9,
    "min_effect": 0.05,
    "library_check": True,
}


def test_runs_end_to_end_and_pairs_by_seed(tmp_path: Path) -> None:
    rec = run_concept("C11", copy.deepcopy(SETTINGS), {}, tmp_path / "C11" / "result.json")
    m = rec["metrics"]
    assert len(m["token_accuracy"]["standard"]) == len(m["token_accuracy"]["notes"]) == 2
    assert m["paired_standard_minus_notes"]["n"] == 2 and m["unequal_lengths"]["runs"] is False
    assert rec["verdict"]["kind"] == "definition check" and Label(rec["verdict"]["label"]) in set(Label)
    assert {f["path"] for f in rec["figures"]} >= {"figures/wirings.png", "figures/cross_attention_maps.png"}
    # every fixed text of the record is a catalogue message and renders in Korean
    korean = assert_record_in_korean(
        rec, required=("method", "verdict.reason", "verdict.takeaway", "verdict.primary")
    )
    for section, fields in (
        ("tables", ("caption",)),
        ("figures", ("title", "caption")),
        ("literature", ("finding", "note")),
    ):
        for i, item in enumerate(rec[section]):
            for f in fields:
                assert f"{section}.{i}.{f}" in korean or not item[f], (section, i, f)
    wirings = next(f for f in rec["figures"] if f["path"] == "figures/wirings.png")
    assert "{" not in wirings["caption"] and "standard − notes: " in wirings["caption"]
    one = c11x.measure_seed(ConceptContext("C11", copy.deepcopy(SETTINGS), {}, tmp_path, 1, "cpu"), 1)
    assert one["notes"]["token_accuracy"] == m["token_accuracy"]["notes"][1]  # a seed's numbers are its own


def test_map_tick_labels_do_not_overlap() -> None:
    """Issue 13: the target tick labels ("7:0", "8:EOS") ran together; every tick label must have
    its own box."""
    task = c11x.SequenceTask(length=8, symbols=10, eos=False)
    maps = [torch.rand(8, 8).softmax(-1).numpy() for _ in range(2)]
    fig = c11f.draw_maps(maps, list(range(8)), task.reverse)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        for labels in (ax.get_yticklabels(), ax.get_xticklabels()):
            boxes = [t.get_window_extent(renderer) for t in labels if t.get_text()]
            assert len(boxes) == 8
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    assert not a.overlaps(b), (a, b)
        assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())


def test_accuracy_thresholds_are_decision_settings() -> None:
    """min_accuracy and min_effect are read by the decision only: changing them re-runs no training."""
    from whylab.concepts.spec import measure_settings

    measured = measure_settings("C11", copy.deepcopy(SETTINGS))
    assert "min_accuracy" not in measured and "min_effect" not in measured and "steps" in measured


# --------------------------------------------------------------------------- parts (VALIDITY 7-9)


def test_parts_from_the_library_roles_and_vaswani() -> None:
    """The decoder has cross-attention (supported); the encoder output as query and key: the keys
    come from it but the queries from the decoder (not supported), as in Vaswani et al. 3.2.3."""
    v = c11.verdict(_metrics())
    assert [p.id for p in v.parts] == ["has_cross_attention", "query_key"]
    has, qk = v.parts
    assert has.run is Label.SUPPORTED and qk.run is Label.NOT_SUPPORTED and v.label is Label.PARTLY
    assert has.field is not None and has.field.label is Label.SUPPORTED
    assert qk.field is not None and qk.field.label is Label.NOT_SUPPORTED
    assert qk.believe.label is Label.NOT_SUPPORTED and str(qk.believe.source) == "run and literature agree"
    assert "queries come from the decoder" in qk.reason and "keys from the encoder output" in qk.reason
    assert "previous decoder layer" in qk.field.reason
    assert c11.verdict(_metrics(q="encoder")).parts[1].run is Label.SUPPORTED
    assert c11.verdict(_metrics(k="decoder")).parts[1].run is Label.NOT_SUPPORTED
    none = c11.verdict(_metrics(cross=0)).parts
    assert none[0].run is Label.NOT_SUPPORTED
    some = _metrics()
    some["library"][0]["decoder_layers"] = 3  # cross-attention in 2 of 3 layers
    assert c11.verdict(some).parts[0].run is Label.PARTLY
    mixed = _metrics()
    for row in mixed["library"][:2]:
        row["q_moved_by_source"] = 1.2
    assert c11.verdict(mixed).parts[1].run is Label.INCONCLUSIVE
    assert c11.verdict(_metrics(seeds=1)).parts == ()


def test_literature_rule_reads_the_recorded_sources() -> None:
    from whylab.concepts.c11_cross_attention import judged

    qk = judged.field_query_key()
    assert {p.unit: p.value for p in qk.published} == {"query source": "decoder", "key source": "encoder"}
    assert all(p.url == "https://arxiv.org/abs/1706.03762" for p in qk.published)
    assert judged.field_has_cross().label is Label.SUPPORTED


def test_part_texts_render_in_korean() -> None:
    for m in (_metrics(), _metrics(q="encoder"), _metrics(cross=0)):
        for part in c11.verdict(m).parts:
            assert part.field is not None
            for text in (part.reason, part.field.reason):
                assert isinstance(text, Msg)
                ko = text.in_("ko")
                assert ko != str(text) and english_runs(ko) == [], ko
