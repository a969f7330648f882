"""C09: the traced structure of library FFNs decides (definition check); the bench ablations pair
by seed and only illustrate; the verdict can give every label from realistic metrics."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from catalogue_checks import assert_explained, assert_in_korean, assert_record_in_korean, evidence_places
from claim_packages import assert_measuring_is_light
from whylab.concepts import REGISTRY, run_concept
from whylab.concepts.c09_feed_forward import CLAIM_ID
from whylab.concepts.c09_feed_forward import experiment as c09x
from whylab.concepts.c09_feed_forward import figures as c09f
from whylab.concepts.c09_feed_forward import verdict as c09
from whylab.concepts.context import ConceptContext
from whylab.messages import Msg, english_runs
from whylab.verdict import Kind, Label

torch.set_num_threads(1)

BASE_LOSS = [5.00, 5.10, 4.95]
NO_FFN_LOSS = [5.30, 5.41, 5.24]  # +0.3 nats/token in every seed: clear when paired
NOISY = [5.05, 4.98, 5.15]  # no consistent shift


def spread(values: list[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"mean": mean, "std": std, "values": values}


def test_registered_as_a_package_with_seeds() -> None:
    assert REGISTRY["C09"] == "whylab.concepts.c09_feed_forward" and CLAIM_ID == c09.CLAIM_ID == "C09"
    assert hasattr(c09x, "measure_seed") and hasattr(c09x, "measure")


def test_measuring_imports_no_plotting_texts_or_verdicts() -> None:
    assert_measuring_is_light("C09")


def test_module_kind() -> None:
    assert c09x.module_kind(torch.nn.Linear(2, 2)) == "linear"
    assert c09x.module_kind(torch.nn.GELU()) == "activation"
    assert c09x.module_kind(torch.nn.Dropout(0.1)) == "dropout"
    assert c09x.module_kind(torch.nn.LayerNorm(2)) == "norm"
    assert c09x.module_kind(torch.nn.Embedding(2, 2)) is None


@pytest.fixture(scope="module")
def structure() -> dict[str, dict[str, Any]]:
    return {r.name: c09x.analyse_structure(r) for r in c09x.references()}


def test_traced_structure_of_standard_models(structure: dict[str, dict[str, Any]]) -> None:
    assert structure["BERT"]["norm_position"] == "post" and structure["BERT"]["norm_in_library_ffn_module"]
    for name in ("GPT-2", "Llama", "T5"):
        assert structure[name]["norm_position"] == "pre", name
    for row in structure.values():
        assert row["residual_check_error"] < 1e-5 and not row["norm_between_linears"]
        assert row["linear"] >= 2 and row["activation"] == 1
    assert structure["Llama"]["linear"] == 3 and structure["Llama"]["dropout"] == 0  # SwiGLU, no dropout
    assert structure["Llama"]["activation_types"] == ["SiLUActivation"]
    assert structure["T5"]["dropout"] == 2


def test_parameter_shares_match_the_formula() -> None:
    refs = {r.name: r for r in c09x.references()}
    bert = c09x.parameter_shares(refs["BERT"])
    d, f, layers = 768, 3072, 12
    assert bert["ffn"] == layers * (d * f + f + f * d + d)
    llama = c09x.parameter_shares(refs["Llama"])
    assert llama["ffn"] == 32 * 3 * 4096 * 11008
    assert 0.4 < bert["ffn_share"] < llama["ffn_share"] < 0.7


def test_ablation_variants() -> None:
    v = c09x.ablation_variants(
        {"model": {"activation": "gelu", "ffn_mult": 4}, "activations": ["relu", "gelu"], "ffn_mults": [1, 4]}
    )
    assert list(v) == ["gelu, 4x (baseline)", "no FFN", "relu, 4x", "gelu, 1x"]
    assert v["no FFN"] == {"ffn": False}


def c09_metrics(
    structure: list[dict[str, Any]], base: list[float] = BASE_LOSS, none: list[float] = NO_FFN_LOSS
) -> dict[str, Any]:
    return {
        "structure": structure,
        "ablation": {"base": {"loss": spread(base)}, "no FFN": {"loss": spread(none)}},
        "baseline": "base",
        "no_ffn": "no FFN",
        "steps": 100,
        "min_effect": 0.02,
        "residual_tolerance": 1e-5,
    }


def _row(
    linear: int = 2,
    act: int = 1,
    dropout: int = 1,
    inside: bool = False,
    position: str = "pre",
    error: float = 0.0,
    module: bool | None = None,
) -> dict[str, Any]:
    return {
        "model": "m",
        "norm_in_library_ffn_module": inside if module is None else module,
        "linear": linear,
        "activation": act,
        "dropout": dropout,
        "norm_between_linears": inside,
        "norm_position": position,
        "residual_check_error": error,
    }


def test_verdict_every_label(structure: dict[str, dict[str, Any]]) -> None:
    real = c09.verdict(c09_metrics(list(structure.values())))
    assert real.label is Label.PARTLY and real.kind is Kind.DEFINITION and real.primary and real.correction
    assert (
        "2/4 a norm in the module the library calls the FFN (0/4 between" in real.reason
        and "raises the loss" in real.reason
        and real.limited == ()
    )
    assert c09.verdict(c09_metrics([_row(inside=True)] * 3)).label is Label.SUPPORTED
    assert c09.verdict(c09_metrics([_row(), _row(act=0)])).label is Label.NOT_SUPPORTED
    assert c09.verdict(c09_metrics([_row(linear=1)])).label is Label.NOT_SUPPORTED
    assert c09.verdict(c09_metrics([_row(position="none", error=float("nan"))])).label is Label.INCONCLUSIVE
    assert c09.verdict(c09_metrics([])).label is Label.INCONCLUSIVE


def test_an_unclear_ablation_is_limited_not_a_lower_label() -> None:
    v = c09.verdict(c09_metrics([_row()], base=BASE_LOSS, none=NOISY))
    assert v.label is Label.PARTLY and "raises" not in v.reason
    assert len(v.limited) == 1 and "does not clearly change" in v.limited[0]
    failed = c09_metrics([_row()])
    failed["ablation"]["no FFN"]["loss"]["values"] = [5.3, None, 5.2]
    assert c09.verdict(failed).limited and "a run failed" in c09.verdict(failed).limited[0]


def test_literature_reads_the_paired_swiglu_comparison() -> None:
    m = c09_metrics([_row()])
    m["ablation"]["relu, 4x"] = {"loss": spread([5.2, 5.3, 5.15])}
    m["ablation"]["swiglu, 4x"] = {"loss": spread([5.1, 5.2, 5.05])}  # 0.1 lower in every seed
    assert c09f.literature(m)[-1].agrees is True
    m["ablation"]["swiglu, 4x"] = {"loss": spread([5.3, 5.1, 5.2])}
    assert c09f.literature(m)[-1].agrees is None


@pytest.fixture(scope="module")
def mech_inputs(tiny_corpus: Path, tiny_tokenizers: Path) -> dict[str, Path]:
    inputs = {"tokenizer": tiny_tokenizers / "joint" / "bpe-800" / "tokenizer.json"}
    for split in ("train", "valid"):
        for lang in ("en", "ko"):
            inputs[f"{split}_{lang}"] = tiny_corpus / lang / f"{split}.txt"
    return inputs


def test_runs_per_seed_and_pairs(mech_inputs: dict[str, Path], tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "seeds": [0, 1],
        "device": "cpu",
        "tokenizer": {},
        "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 64},
        "train": {"steps": 6, "batch_size": 4, "seq_len": 16, "eval_every": 3, "eval_windows": 4},
        "activations": ["gelu", "swiglu"],
        "ffn_mults": [2],
        "steps": 4,
        "seq_len": 8,
        "min_effect": 0.02,
        "residual_tolerance": 1e-5,
    }
    rec = run_concept("C09", copy.deepcopy(settings), mech_inputs, tmp_path / "C09" / "result.json")
    abl = rec["metrics"]["ablation"]
    assert set(abl) == {"gelu, 4x (baseline)", "no FFN", "swiglu, 4x", "gelu, 2x"}
    assert (
        abl["no FFN"]["ffn_params"] == 0 and abl["gelu, 2x"]["params"] < abl["gelu, 4x (baseline)"]["params"]
    )
    assert abl["no FFN"]["paired_minus_baseline"]["n"] == 2
    assert Label(rec["verdict"]["label"]) is Label.PARTLY and rec["verdict"]["kind"] == "definition check"
    # method, captions, titles, literature and the verdict's reason are kept as messages and
    # render in Korean, each reading differently from its English
    assert len(rec["tables"]) == 3 and len(rec["figures"]) == 3 and rec["literature"]
    kept = evidence_places(rec, verdict=("reason",))
    assert_record_in_korean(rec, required=kept, differs_from_english=kept)
    ctx = ConceptContext("C09", copy.deepcopy(settings), mech_inputs, tmp_path, 1, "cpu")
    one = c09x.measure_seed(ctx, 1)
    assert one["variants"]["no FFN"]["loss"] == pytest.approx(abl["no FFN"]["loss"]["values"][1])


# --------------------------------------------------------------------------- catalogue texts


def _failed_ablation() -> dict[str, Any]:
    m = c09_metrics([_row()])
    m["ablation"]["no FFN"]["loss"]["values"] = [5.3, None, 5.2]
    return m


BRANCHES: dict[str, tuple[Label, Any]] = {
    "partly": (Label.PARTLY, lambda: c09_metrics([_row(), _row(dropout=0)])),
    "partly_no_dropout": (
        Label.PARTLY,
        lambda: c09_metrics([_row(inside=True), _row(inside=True, dropout=0)]),
    ),
    "supported": (Label.SUPPORTED, lambda: c09_metrics([_row(inside=True)] * 3)),
    "not_supported": (Label.NOT_SUPPORTED, lambda: c09_metrics([_row(), _row(act=0)])),
    "unverified": (Label.INCONCLUSIVE, lambda: c09_metrics([_row(position="none", error=float("nan"))])),
    "no_models": (Label.INCONCLUSIVE, lambda: c09_metrics([])),
}


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_every_verdict_branch_has_its_texts_in_korean(branch: str) -> None:
    label, metrics = BRANCHES[branch]
    v = c09.verdict(metrics())
    assert v.label is label and v.branch == f"C09.verdict.{branch}" and v.kind is Kind.DEFINITION
    assert_explained(v, "C09", differs_from_english=True)


def test_ablation_sentences_and_limits_render_in_korean() -> None:
    raises = c09.verdict(c09_metrics([_row()]))
    lowers = c09.verdict(c09_metrics([_row()], none=[4.7, 4.8, 4.65]))
    unclear = c09.verdict(c09_metrics([_row()], none=NOISY))
    failed = c09.verdict(_failed_ablation())
    assert "raises the loss" in raises.reason and "lowers the loss" in lowers.reason
    assert [x.key for x in unclear.limited] == ["C09.limited.ablation_unclear"]
    assert [x.key for x in failed.limited] == ["C09.limited.ablation_failed"]
    for v in (raises, lowers, unclear, failed):
        assert_explained(v, "C09", differs_from_english=True)


def test_not_supported_names_the_models_that_differ() -> None:
    rows = [_row(), {**_row(act=0), "model": "Odd"}]
    v = c09.verdict(c09_metrics(rows))
    assert "in Odd the traced path" in v.correction and "Odd에서는" in v.correction.in_("ko")


def test_literature_renders_in_korean() -> None:
    m = c09_metrics([{**_row(), "model": "BERT", "residual_check_error": 0.0}])
    m["ablation"]["relu, 4x"] = {"loss": spread([5.2, 5.3, 5.15])}
    for swiglu in ([5.1, 5.2, 5.05], [5.3, 5.1, 5.2]):
        m["ablation"]["swiglu, 4x"] = {"loss": spread(swiglu)}
        checks = c09f.literature(m)
        assert len(checks) == 2
        for lit in checks:
            for text in (lit.finding, lit.note):
                assert isinstance(text, Msg) and english_runs(text.in_("ko")) == [], text.in_("ko")


def test_effect_and_tolerance_are_decision_settings() -> None:
    from whylab.concepts.spec import measure_settings

    measured = measure_settings("C09", {"min_effect": 0.02, "residual_tolerance": 1e-5, "steps": 4})
    assert measured == {"steps": 4}


# --------------------------------------------------------------------------- parts


def test_parts_judge_each_component_the_notes_name(structure: dict[str, dict[str, Any]]) -> None:
    v = c09.verdict(c09_metrics(list(structure.values())))
    parts = {p.id: p for p in v.parts}
    assert list(parts) == ["linear", "dropout", "norm", "activation"]
    assert {k: p.run for k, p in parts.items()} == {
        "linear": Label.SUPPORTED,
        "dropout": Label.PARTLY,  # Llama's MLP has none
        "norm": Label.PARTLY,  # BERT's BertOutput and T5's T5LayerFF hold one; GPT-2, Llama do not
        "activation": Label.SUPPORTED,
    }
    assert all(p.kind is Kind.DEFINITION and p.power is None for p in parts.values())
    norm = parts["norm"].reason
    assert "2/4 traced FFN modules hold a norm (BERT, T5)" in norm and "0/4 do" in norm
    # the literature: Vaswani's Eq. 2 and the transformers modules, recorded in claim.yaml
    assert {k: p.field.label for k, p in parts.items() if p.field} == {
        "linear": Label.SUPPORTED,
        "dropout": Label.PARTLY,
        "norm": Label.PARTLY,
        "activation": Label.SUPPORTED,
    }
    assert "2/5 recorded sources list normalisation" in parts["norm"].field.reason  # type: ignore[union-attr]
    believe = v.to_dict()["believe"]
    assert isinstance(believe, dict) and believe["label"] == "partly supported"
    for p in parts.values():
        assert_in_korean(p.reason)
        assert_in_korean(p.field.reason)  # type: ignore[union-attr]


def test_each_part_label_is_reachable() -> None:
    every = c09.verdict(c09_metrics([_row(inside=True)] * 2)).parts
    assert {p.run for p in every} == {Label.SUPPORTED}
    none = c09.verdict(c09_metrics([_row(dropout=0, module=False)] * 2)).parts
    assert {p.id: p.run for p in none}["dropout"] is Label.NOT_SUPPORTED
    assert {p.id: p.run for p in none}["norm"] is Label.NOT_SUPPORTED
    assert {p.run for p in c09.verdict(c09_metrics([])).parts} == {Label.INCONCLUSIVE}


def test_the_field_answer_is_computed_from_the_recorded_sources() -> None:
    from whylab.concepts.c09_feed_forward.claim_parts import field_answer
    from whylab.parts import Published

    paper = Published(
        "Vaswani et al. 2017", "Eq. 2", "linear, activation, linear", "", "https://arxiv.org/abs/1706.03762"
    )
    assert field_answer("norm", [paper]).label is Label.NOT_SUPPORTED
    assert field_answer("activation", [paper]).label is Label.SUPPORTED
