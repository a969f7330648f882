"""C10: the causality test measures what it says, the library models decide, and the verdict can
give every label from metrics a real run could produce."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from catalogue_checks import (
    assert_catalogue_in_korean,
    assert_explained,
    assert_in_korean,
    assert_record_in_korean,
)
from claim_packages import assert_measuring_is_light
from whylab.bench.model import BenchConfig, BenchTransformer
from whylab.concepts import REGISTRY, run_concept
from whylab.concepts.c10_encoder_decoder import CLAIM_ID
from whylab.concepts.c10_encoder_decoder import experiment as c10x
from whylab.concepts.c10_encoder_decoder import figures as c10f
from whylab.concepts.c10_encoder_decoder import verdict as c10
from whylab.messages import Msg, english_runs
from whylab.verdict import Kind, Label

torch.set_num_threads(1)


def test_registered_as_a_package() -> None:
    assert REGISTRY["C10"] == "whylab.concepts.c10_encoder_decoder" and CLAIM_ID == c10.CLAIM_ID == "C10"
    assert hasattr(c10x, "measure") and not hasattr(c10x, "measure_seed")


def test_measuring_imports_no_plotting_texts_or_verdicts() -> None:
    assert_measuring_is_light("C10")


def test_causality_profile_decoder_vs_encoder() -> None:
    ids = torch.randint(0, 30, (2, 12), generator=torch.Generator().manual_seed(0))
    positions = c10x.perturbation_positions(12, 3)
    assert positions == [3, 6, 9]
    out = {}
    for causal in (True, False):
        torch.manual_seed(1)
        model = BenchTransformer(
            BenchConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=2, causal=causal)
        ).eval()
        out[causal] = c10x.causality_profile(
            c10x._logits_of(model), ids, positions, 30, torch.Generator().manual_seed(2)
        )
        share = c10x.future_attention_share(model, ids)
        assert (share == 0.0) if causal else (share > 0.3)
    assert out[True]["earlier_max_abs"] == 0.0 and out[True]["relative_leak"] == 0.0
    assert out[False]["relative_leak"] > 0.01
    assert out[True]["later_mean_abs"] > 0 and out[True]["by_offset"]["-1"] == 0.0


@pytest.fixture(scope="module")
def library() -> dict[str, Any]:
    return c10x.library_check(16, 50, c10x.perturbation_positions(16, 2), 0)


def test_library_models_are_what_they_say(library: dict[str, Any]) -> None:
    assert set(library) == {"BERT", "GPT-2", "T5 encoder", "T5 decoder"}
    for name in ("GPT-2", "T5 decoder"):
        assert library[name]["relative_leak"] == 0.0 and library[name]["future_attention_share"] == 0.0
    for name in ("BERT", "T5 encoder"):
        assert library[name]["relative_leak"] > 1e-3 and library[name]["future_attention_share"] > 0.3
    assert library["BERT"]["heads_in_forward"] == library["BERT"]["real_heads"] == 12
    assert library["T5 decoder"]["heads_in_forward"] == library["T5 decoder"]["real_heads"] == 8
    assert all(v["head_difference"] > 1e-6 for v in library.values())
    parts = c10.library_parts({"leak_tolerance": 1e-6, "library": library})
    assert all(parts["holds"].values())


def _lib(dec_leak: float = 0.0, enc_leak: float = 0.05, heads: int = 12, real: int = 12) -> dict[str, Any]:
    def row(role: str, leak: float, future: float) -> dict[str, Any]:
        return {
            "role": role,
            "real_model": "m",
            "real_heads": real,
            "heads_in_forward": heads,
            "head_difference": 0.03,
            "future_attention_share": future,
            "earlier_max_abs": leak,
            "later_mean_abs": 0.2,
            "relative_leak": leak,
        }

    return {
        "BERT": row("encoder", enc_leak, 0.48),
        "GPT-2": row("decoder", dec_leak, 0.0 if dec_leak == 0 else 0.2),
        "T5 encoder": row("encoder", enc_leak * 40, 0.48),
        "T5 decoder": row("decoder", dec_leak, 0.0 if dec_leak == 0 else 0.2),
    }


def _metrics(seeds: int = 3, library: dict[str, Any] | None = None, bench_dec: float = 0.0) -> dict[str, Any]:
    def kind(leak: float, causal: bool) -> dict[str, Any]:
        return {
            "causal_mask": causal,
            **{st: {"relative_leak": [leak] * seeds} for st in ("init", "trained")},
        }

    m: dict[str, Any] = {
        "n_seeds": seeds,
        "leak_tolerance": 1e-6,
        "by_kind": {"decoder (causal mask)": kind(bench_dec, True), "encoder (no mask)": kind(0.7, False)},
    }
    if library is not None:
        m["library"] = library
    return m


def test_verdict_every_label() -> None:
    v = c10.verdict(_metrics(library=_lib()))
    assert v.label is Label.SUPPORTED and v.kind is Kind.DEFINITION and v.primary and "heads" in v.reason
    leaky = c10.verdict(_metrics(library=_lib(dec_leak=0.3)))  # a decoder that sees the future
    assert leaky.label is Label.PARTLY and "decoders masked fails" in leaky.reason and leaky.correction
    one_head = c10.verdict(_metrics(library=_lib(heads=1, real=1)))  # single-head models
    assert one_head.label is Label.PARTLY and "multi-head fails" in one_head.reason
    assert c10.verdict(_metrics(library=_lib(enc_leak=0.0))).label is Label.PARTLY
    assert c10.verdict(_metrics(library=_lib(dec_leak=0.3, enc_leak=0.0))).label is Label.NOT_SUPPORTED
    assert c10.verdict(_metrics(library=None)).label is Label.INCONCLUSIVE  # our model alone is circular


BRANCHES = {
    "supported": ({}, Label.SUPPORTED),
    "partly": ({"dec_leak": 0.3}, Label.PARTLY),
    "not_supported": ({"dec_leak": 0.3, "enc_leak": 0.0}, Label.NOT_SUPPORTED),
}


@pytest.mark.parametrize("branch", [*BRANCHES, "library_off"])
def test_every_branch_has_its_texts_in_korean(branch: str) -> None:
    if branch == "library_off":
        v, label = c10.verdict(_metrics(library=None)), Label.INCONCLUSIVE
    else:
        kw, label = BRANCHES[branch]
        v = c10.verdict(_metrics(library=_lib(**kw)))
    assert v.label is label and v.branch == f"C10.verdict.{branch}"
    assert_explained(v, "C10", branch, differs_from_english=True)


def test_catalogue_is_korean() -> None:
    """Every C10 text in the Korean catalogue (also the ones no test run reaches, like the skipped
    note) has no English prose, and the English has the same keys and placeholders."""
    assert_catalogue_in_korean("C10")


def test_correction_says_what_failed() -> None:
    v = c10.verdict(_metrics(library=_lib(dec_leak=0.3)))
    assert v.correction == (
        "Encoders use (bidirectional) multi-head self-attention and decoders masked multi-head "
        "self-attention, as the notes say; but here decoders masked fails in GPT-2, T5 decoder."
    )
    assert "GPT-2, T5 decoder" in v.correction.in_("ko")


def test_the_bench_model_does_not_decide() -> None:
    """Our own model is the illustration: a leak there changes the reason, not the label."""
    v = c10.verdict(_metrics(library=_lib(), bench_dec=0.2))
    assert v.label is Label.SUPPORTED and "2.0e-01" in v.reason


def test_literature() -> None:
    lit = c10f.literature(_metrics(library=_lib()))
    assert [c.agrees for c in lit] == [True, True, True]
    for check in lit:
        for text in (check.finding, check.note):
            assert isinstance(text, Msg) and english_runs(text.in_("ko")) == []
    assert c10f.literature(_metrics(library=_lib(heads=1, real=1)))[2].agrees is False


def test_runs_end_to_end_with_the_library_check(
    tmp_path: Path, tiny_corpus: Path, tiny_tokenizers: Path
) -> None:
    inputs = {"tokenizer": tiny_tokenizers / "joint" / "bpe-800" / "tokenizer.json"}
    for split in ("train", "valid"):
        for lang in ("en", "ko"):
            inputs[f"{split}_{lang}"] = tiny_corpus / lang / f"{split}.txt"
    settings: dict[str, Any] = {
        "seeds": [0, 1],
        "device": "cpu",
        "tokenizer": {},
        "model": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 64},
        "train": {"steps": 4, "batch_size": 4, "seq_len": 16, "eval_every": 2, "eval_windows": 4},
        "steps": 4,
        "windows": 2,
        "positions": 2,
        "leak_tolerance": 1e-6,
        "library_check": True,
    }
    rec = run_concept("C10", copy.deepcopy(settings), inputs, tmp_path / "C10" / "result.json")
    assert rec["verdict"]["kind"] == "definition check"
    assert Label(rec["verdict"]["label"]) is Label.SUPPORTED
    assert rec["tables"][0]["name"] == "library"
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


def test_leak_tolerance_is_a_decision_setting() -> None:
    from whylab.concepts.spec import measure_settings

    measured = measure_settings("C10", {"leak_tolerance": 1e-6, "steps": 4, "library_check": True})
    assert measured == {"steps": 4, "library_check": True}


# --------------------------------------------------------------------------- parts


def test_c10_parts_follow_the_library_numbers_and_vaswani() -> None:
    from whylab.messages import text

    ok = c10.verdict(_metrics(library=_lib())).parts
    assert [p.id for p in ok] == ["encoder_bidirectional", "decoder_masked", "multi_head"]
    assert all(p.run is Label.SUPPORTED and p.field is not None for p in ok)
    assert all(p.field.label is Label.SUPPORTED for p in ok if p.field is not None)
    runs = {
        "leaky": c10.verdict(_metrics(library=_lib(dec_leak=0.3))).parts,
        "blind": c10.verdict(_metrics(library=_lib(enc_leak=0.0))).parts,
        "one_head": c10.verdict(_metrics(library=_lib(heads=1, real=1))).parts,
    }
    assert [p.run for p in runs["leaky"]] == [Label.SUPPORTED, Label.NOT_SUPPORTED, Label.SUPPORTED]
    assert [p.run for p in runs["blind"]] == [Label.NOT_SUPPORTED, Label.SUPPORTED, Label.SUPPORTED]
    assert [p.run for p in runs["one_head"]] == [Label.SUPPORTED, Label.SUPPORTED, Label.NOT_SUPPORTED]
    off = c10.verdict(_metrics(library=None)).parts
    assert all(p.run is Label.INCONCLUSIVE for p in off)
    assert all(p.believe.label is Label.SUPPORTED for p in off)  # from Vaswani et al. 2017
    assert "h = 8" in str(ok[2].field.reason if ok[2].field else "")
    for parts in [ok, off, *runs.values()]:
        for p in parts:
            assert_in_korean(p.reason)
            assert p.field is not None and text(p.field.reason, "ko")
