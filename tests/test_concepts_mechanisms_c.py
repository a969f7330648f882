"""C09: the measurements measure what they say, every verdict can come out every way, and the
experiment runs end to end on the tiny corpus (C07 and C08 moved to tests/test_c07.py, test_c08.py)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from whylab.concepts import REGISTRY, run_concept
from whylab.concepts import c09_feed_forward as c09
from whylab.verdict import Label

torch.set_num_threads(1)


def spread(values: list[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"mean": mean, "std": std, "values": values}


def test_registered() -> None:
    for claim, module in (("C09", c09),):
        assert REGISTRY[claim] == module.__name__ and claim == module.CLAIM_ID


LOW, HIGH, MID = [5.0, 5.02, 5.01], [5.3, 5.32, 5.31], [4.9, 5.3, 5.1]


# --------------------------------------------------------------------------- C09


def test_module_kind() -> None:
    assert c09.module_kind(torch.nn.Linear(2, 2)) == "linear"
    assert c09.module_kind(torch.nn.GELU()) == "activation"
    assert c09.module_kind(torch.nn.Dropout(0.1)) == "dropout"
    assert c09.module_kind(torch.nn.LayerNorm(2)) == "norm"
    assert c09.module_kind(torch.nn.Embedding(2, 2)) is None


@pytest.fixture(scope="module")
def structure() -> dict[str, dict[str, Any]]:
    return {r.name: c09.analyse_structure(r) for r in c09.references()}


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
    refs = {r.name: r for r in c09.references()}
    bert = c09.parameter_shares(refs["BERT"])
    d, f, layers = 768, 3072, 12
    assert bert["ffn"] == layers * (d * f + f + f * d + d)
    llama = c09.parameter_shares(refs["Llama"])
    assert llama["ffn"] == 32 * 3 * 4096 * 11008
    assert 0.4 < bert["ffn_share"] < llama["ffn_share"] < 0.7


def test_ablation_variants() -> None:
    v = c09.ablation_variants(
        {"model": {"activation": "gelu", "ffn_mult": 4}, "activations": ["relu", "gelu"], "ffn_mults": [1, 4]}
    )
    assert list(v) == ["gelu, 4x (baseline)", "no FFN", "relu, 4x", "gelu, 1x"]
    assert v["no FFN"] == {"ffn": False}


def c09_metrics(
    structure: list[dict[str, Any]], base: list[float] = LOW, none: list[float] = HIGH
) -> dict[str, Any]:
    return {
        "structure": structure,
        "ablation": {"base": {"loss": spread(base)}, "no FFN": {"loss": spread(none)}},
        "baseline": "base",
        "no_ffn": "no FFN",
        "residual_tolerance": 1e-5,
    }


def _row(
    linear: int = 2,
    act: int = 1,
    dropout: int = 1,
    inside: bool = False,
    position: str = "pre",
    error: float = 0.0,
) -> dict[str, Any]:
    return {
        "model": "m",
        "linear": linear,
        "activation": act,
        "dropout": dropout,
        "norm_between_linears": inside,
        "norm_position": position,
        "residual_check_error": error,
    }


def test_c09_verdict_every_label(structure: dict[str, dict[str, Any]]) -> None:
    real = c09.verdict(c09_metrics(list(structure.values())))
    assert real.label is Label.PARTLY and "0/4 a norm" in real.reason and "raises" in real.reason
    assert c09.verdict(c09_metrics([_row(inside=True)] * 3)).label is Label.SUPPORTED
    assert c09.verdict(c09_metrics([_row(), _row(act=0)])).label is Label.NOT_SUPPORTED
    assert c09.verdict(c09_metrics([_row(linear=1)])).label is Label.NOT_SUPPORTED
    assert c09.verdict(c09_metrics([_row(position="none", error=float("nan"))])).label is Label.INCONCLUSIVE
    assert c09.verdict(c09_metrics([])).label is Label.INCONCLUSIVE
    v = c09.verdict(c09_metrics([_row()], base=MID, none=MID))
    assert v.label is Label.PARTLY and "does not clearly change" in v.reason


# --------------------------------------------------------------------------- experiments, tiny


@pytest.fixture(scope="module")
def mech_inputs(tiny_corpus: Path, tiny_tokenizers: Path) -> dict[str, Path]:
    inputs = {"tokenizer": tiny_tokenizers / "joint" / "bpe-800" / "tokenizer.json"}
    for split in ("train", "valid"):
        for lang in ("en", "ko"):
            inputs[f"{split}_{lang}"] = tiny_corpus / lang / f"{split}.txt"
    return inputs


BASE = {
    "seeds": [0, 1],
    "device": "cpu",
    "tokenizer": {},
    "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 64},
    "train": {"steps": 6, "batch_size": 4, "seq_len": 16, "eval_every": 3, "eval_windows": 4},
}


def _run(claim: str, section: dict[str, Any], inputs: dict[str, Path], tmp: Path) -> dict[str, Any]:
    settings = {**copy.deepcopy(BASE), **section}
    record = run_concept(claim, settings, inputs, tmp / claim / "result.json")
    assert Label(record["verdict"]["label"]) in set(Label)
    for fig in record["figures"]:
        assert (tmp / claim / fig["path"]).is_file()
    return record


def test_c09_runs(mech_inputs: dict[str, Path], tmp_path: Path) -> None:
    rec = _run(
        "C09",
        {"activations": ["gelu", "swiglu"], "ffn_mults": [2], "steps": 4, "seq_len": 8},
        mech_inputs,
        tmp_path,
    )
    abl = rec["metrics"]["ablation"]
    assert set(abl) == {"gelu, 4x (baseline)", "no FFN", "swiglu, 4x", "gelu, 2x"}
    assert (
        abl["no FFN"]["ffn_params"] == 0 and abl["gelu, 2x"]["params"] < abl["gelu, 4x (baseline)"]["params"]
    )
    assert Label(rec["verdict"]["label"]) is Label.PARTLY
