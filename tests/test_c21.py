"""C21's verdict driven to every label it can return from synthetic metrics and from a run on a CPU (with and without a recorded GPU run); its texts render in Korean; its measuring step stays light."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from catalogue_checks import assert_explained, assert_in_korean
from claim_packages import assert_measuring_is_light
from whylab.concepts import ConceptContext
from whylab.concepts.c21_offloading import figures as c21_figures
from whylab.concepts.c21_offloading import verdict as c21
from whylab.concepts.measuring import measure_in_process
from whylab.files import jsonable
from whylab.messages import Msg
from whylab.results import Evidence
from whylab.verdict import Label


def test_c21_measuring_is_light() -> None:
    assert_measuring_is_light("C21")


# --------------------------------------------------------------------------- C21


def _c21(acc: dict[str, Any] | None, **eq: float) -> dict[str, Any]:
    equivalence = {
        "optimizer_offload_max_param_diff": 0.0,
        "optimizer_offload_diff_over_update": 0.0,
        "plain_rerun_diff_over_update": 0.0,
        "optimizer_offload_equivalent": True,
        "layer_offload_max_logit_diff": 0.0,
    }
    equivalence.update(eq)
    return {
        "equivalence": equivalence,
        "min_saving": 0.1,
        "accelerator": acc,
        "accelerator_source": "test",
        "computed": {
            "optimizer_state_leaving_accelerator_bytes": 8 * 2**20,
            "estimated_train_saving": 0.3,
            "transfer_per_step_bytes": 8 * 2**20,
            "offload_layers": 2,
        },
    }


def _acc(train: float, infer: float) -> dict[str, Any]:
    return {"train_saving": train, "infer_saving": infer, "train_time_ratio": 3.0, "infer_time_ratio": 2.0}


def test_c21_inconclusive_without_accelerator() -> None:
    v = c21.verdict(_c21(None))
    assert v.label == Label.INCONCLUSIVE and "No accelerator" in v.reason and "8.0 MiB" in v.reason


def test_c21_inconclusive_when_not_equivalent() -> None:
    v = c21.verdict(
        _c21(_acc(0.5, 0.5), optimizer_offload_max_param_diff=0.1, optimizer_offload_equivalent=False)
    )
    assert v.label == Label.INCONCLUSIVE
    assert c21.verdict(_c21(_acc(0.5, 0.5), layer_offload_max_logit_diff=0.1)).label == Label.INCONCLUSIVE


def test_c21_labels_from_accelerator_numbers() -> None:
    assert c21.verdict(_c21(_acc(0.4, 0.3))).label == Label.SUPPORTED
    assert c21.verdict(_c21(_acc(0.4, 0.01))).label == Label.PARTLY
    assert c21.verdict(_c21(_acc(0.02, -0.01))).label == Label.NOT_SUPPORTED


def test_c21_measured_saving_is_held_against_the_prediction() -> None:
    as_predicted = {**_acc(0.62, 0.3), "predicted_train_saving": 0.66}
    v = c21.verdict(_c21(as_predicted))
    assert v.label == Label.SUPPORTED and "predicted a 66%" in v.reason and "as predicted" in v.reason
    off = {**_acc(0.25, 0.3), "predicted_train_saving": 0.66}
    v = c21.verdict(_c21(off))
    assert (
        v.label == Label.PARTLY
        and "not as predicted" in v.reason
        and "not the one the calculator" in v.reason
    )
    assert v.primary and not v.limited
    assert c21.verdict(_c21(None)).limited


def _c21_branches() -> dict[str, tuple[Label, dict[str, Any]]]:
    """Hand-made metrics that reach each C21 verdict branch."""
    return {
        "not_equivalent": (Label.INCONCLUSIVE, _c21(_acc(0.5, 0.5), optimizer_offload_equivalent=False)),
        "no_accelerator": (Label.INCONCLUSIVE, _c21(None)),
        "supported": (Label.SUPPORTED, _c21({**_acc(0.62, 0.3), "predicted_train_saving": 0.66})),
        "off_prediction": (Label.PARTLY, _c21({**_acc(0.25, 0.3), "predicted_train_saving": 0.66})),
        "only_training": (Label.PARTLY, _c21(_acc(0.4, 0.01))),
        "only_layers": (Label.PARTLY, _c21(_acc(0.01, 0.4))),
        "neither": (Label.NOT_SUPPORTED, _c21(_acc(0.02, -0.01))),
    }


def test_c21_every_branch_has_a_takeaway_and_renders_in_korean() -> None:

    for branch, (label, metrics) in _c21_branches().items():
        v = c21.verdict(metrics)
        assert v.label is label and v.branch == f"C21.verdict.{branch}"
        assert_explained(v, "C21", branch, differs_from_english=True)


def test_c21_corrections_name_what_did_not_save() -> None:
    branches = _c21_branches()
    only_training = c21.verdict(branches["only_training"][1]).correction
    assert (
        "optimizer state" in only_training and "2 decoder layers" in only_training and "10%" in only_training
    )
    off = c21.verdict(branches["off_prediction"][1]).correction
    assert "saved 25%" in off and "predicted 66%" in off
    assert "decoder layers" in c21.verdict(branches["neither"][1]).correction


CFG = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}


def _evidence(settings: dict[str, Any], inputs: dict[str, Path], outdir: Path) -> Evidence:
    """C21 measured here on the CPU, then summarized and drawn as its decide step does."""
    measured = measure_in_process("C21", {**settings, "device": "cpu"}, inputs)
    metrics = jsonable(c21.summarize(measured))
    outdir.mkdir(parents=True, exist_ok=True)
    evidence = c21_figures.draw(ConceptContext("C21", settings, {}, outdir, 1, "cpu"), measured, metrics)
    evidence.metrics = metrics
    return evidence


def test_c21_report_texts_render_in_korean(tmp_path: Path) -> None:
    """C21's run on a CPU (no accelerator), then with a recorded GPU run: method, skipped notes,
    table and figure captions, literature and verdict all come from the catalogue and render in
    Korean."""
    settings = {
        "model": CFG,
        "batch_size": 2,
        "seq_len": 8,
        "precision": "mixed_bf16",
        "offload_layers": 1,
        "steps": 1,
        "min_saving": 0.1,
        "repeats": 1,
    }

    def texts(ev: Any) -> list[Any]:
        v = c21.verdict(ev.metrics)
        return [
            ev.method,
            *ev.skipped,
            *(t.caption for t in ev.tables),
            *(x for f in ev.figures for x in (f.title, f.caption)),
            *(x for lit in ev.literature for x in (lit.finding, lit.note)),
            *(x for x in (v.reason, v.takeaway, v.primary, v.correction, *v.limited) if x),
        ]

    def check(found: list[Any]) -> None:
        for text in found:
            assert isinstance(text, Msg), text
            assert_in_korean(text)

    cpu = _evidence(settings, {}, tmp_path / "cpu")
    # no GPU: the definition part decides (accelerate moves whole layers; the training offload moves none)
    on_cpu = c21.verdict(cpu.metrics)
    assert cpu.skipped and on_cpu.label is Label.PARTLY and on_cpu.kind.value == "definition check"
    layers, saves = on_cpu.parts
    assert layers.run is Label.PARTLY and saves.run is Label.INCONCLUSIVE and saves.power is None
    placement = cpu.metrics["layer_placement"]
    assert placement["decoder_layers_on_cpu"] == 1 and placement["layers_placed_whole"]
    check(texts(cpu))
    check([x for part in on_cpu.parts for x in (part.reason, part.field.reason if part.field else None) if x])
    table = next(t for t in cpu.tables if t.name == "computed")
    dtypes = {row[0]: row[table.columns.index("dtype")] for row in table.rows}
    assert dtypes["transfer_per_step_bytes"].startswith("bf16") and dtypes[
        "layer_weights_offloaded_bytes"
    ].startswith("fp32")

    acc = {
        f"{kind}_{what}_{case}": value
        for kind in ("train", "infer")
        for case in ("plain", "offload")
        for what, value in (("peak", 100 * 2**20 if case == "plain" else 50 * 2**20), ("time", 0))
    }
    acc.update(
        {
            f"{k}_time_{c}_{s}_s": 0.01
            for k in ("train", "infer")
            for c in ("plain", "offload")
            for s in ("mean", "std")
        }
    )
    acc.update(train_saving=0.5, infer_saving=0.5, train_time_ratio=2.0, infer_time_ratio=1.5)
    recorded = tmp_path / "C21_recorded.json"
    recorded.write_text(
        json.dumps(
            {
                "claim_id": "C21",
                "metrics": {"accelerator": acc, "computed": {"estimated_train_saving": 0.45}},
                "config": {"model": CFG, "offload_layers": 1},
                "environment": {"device": "cuda (NVIDIA H100)"},
                "finished_at": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    gpu = _evidence(settings, {"recorded_gpu_run": recorded}, tmp_path / "gpu")
    v = c21.verdict(gpu.metrics)
    assert v.label is Label.SUPPORTED and "recorded GPU run (cuda (NVIDIA H100)" in v.reason
    assert [p.run for p in v.parts] == [Label.PARTLY, Label.SUPPORTED]
    assert v.parts[1].power is not None and v.parts[1].power.limited  # one deterministic measurement
    check([x for part in v.parts for x in (part.reason, part.field.reason if part.field else None) if x])
    assert "기록된 GPU 실행" in v.reason.in_("ko")
    assert any(t.name == "accelerator" for t in gpu.tables) and len(gpu.figures) == 2
    check(texts(gpu))


# --------------------------------------------------------------------------- parts


PLACED = {
    "library": "accelerate 1.15.0",
    "decoder_layers": 4,
    "decoder_layers_on_cpu": 2,
    "decoder_layers_on_accelerator": 2,
    "layers_placed_whole": True,
}


def test_c21_layers_part_is_a_definition_check_with_every_label() -> None:
    m = _c21(None, optimizer_offload_bytes_to_host_per_step=2 * 2**20) | {"layer_placement": PLACED}
    layers = c21.layers_part(m)
    assert layers.kind.value == "definition check" and layers.run is Label.PARTLY
    assert "moves no layer" in layers.reason and "2.00 MiB of BF16 gradients" in layers.reason
    m_no_training = _c21(None) | {"layer_placement": PLACED}
    assert c21.layers_part(m_no_training).run is Label.SUPPORTED
    assert (
        c21.layers_part(m | {"layer_placement": PLACED | {"decoder_layers_on_cpu": 0}}).run
        is Label.NOT_SUPPORTED
    )
    assert (
        c21.layers_part(m | {"layer_placement": PLACED | {"decoder_layers_on_cpu": 4}}).run
        is Label.NOT_SUPPORTED
    )
    assert c21.layers_part(_c21(None)).run is Label.INCONCLUSIVE
    v = c21.verdict(m)
    assert v.label is Label.PARTLY and "A definition check on accelerate" in v.reason
    assert_explained(v, "C21")
    assert c21.verdict(m_no_training).label is Label.SUPPORTED


def test_c21_literature_is_computed_from_the_recorded_sources() -> None:
    layers = c21.layers_field()
    assert [p.value for p in layers.published] == [1, 0] and layers.label is Label.PARTLY
    assert "1 of 2 published descriptions move layers" in layers.reason
    saves = c21.saves_field(0.1)
    assert [p.value for p in saves.published] == [13, 10] and saves.label is Label.SUPPORTED
    assert c21.saves_field(0.95).label is Label.NOT_SUPPORTED  # 10x < 1 / (1 - 0.95) = 20x


def test_c21_saves_part_is_limited_without_a_gpu_and_names_the_7b_planner() -> None:
    part = c21.saves_part(_c21(None), Label.INCONCLUSIVE)
    assert part.run is Label.INCONCLUSIVE and "100.4 to 24.7 GiB" in part.reason
    seen = c21.saves_part(_c21(_acc(0.4, 0.3)) | {"real_scale": c21.real_scale()}, Label.SUPPORTED)
    assert seen.run is Label.SUPPORTED
    missed = c21.saves_part(_c21(_acc(0.01, 0.02)), Label.NOT_SUPPORTED)
    assert missed.run is Label.INCONCLUSIVE  # one deterministic measurement: limited, never lower
