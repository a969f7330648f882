"""C10, C11: the measurements measure what they say, and each verdict can come out every way."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from whylab.bench.model import BenchConfig, BenchTransformer, EncoderDecoder
from whylab.concepts import REGISTRY
from whylab.concepts import c10_encoder_decoder as c10
from whylab.concepts import c11_cross_attention as c11
from whylab.verdict import Label
from workflow_copy import workflow_copy

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def test_registered() -> None:
    for claim, module in (("C10", c10), ("C11", c11)):
        assert REGISTRY[claim] == module.__name__ and claim == module.CLAIM_ID


# --------------------------------------------------------------------------- C10


def test_causality_profile_decoder_vs_encoder() -> None:
    ids = torch.randint(0, 30, (2, 12), generator=torch.Generator().manual_seed(0))
    positions = c10.perturbation_positions(12, 3)
    assert positions == [3, 6, 9]
    out = {}
    for causal in (True, False):
        torch.manual_seed(1)
        model = BenchTransformer(
            BenchConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=2, causal=causal)
        ).eval()
        out[causal] = c10.causality_profile(
            c10._logits_of(model), ids, positions, 30, torch.Generator().manual_seed(2)
        )
        share = c10.future_attention_share(model, ids)
        assert (share == 0.0) if causal else (share > 0.3)
    assert out[True]["earlier_max_abs"] == 0.0 and out[True]["relative_leak"] == 0.0
    assert out[False]["relative_leak"] > 0.01
    assert out[True]["later_mean_abs"] > 0 and out[True]["by_offset"]["-1"] == 0.0


def _c10_metrics(dec: float = 0.0, enc: float = 0.5, seeds: int = 3) -> dict[str, Any]:
    def kind(leak: float, causal: bool) -> dict[str, Any]:
        return {
            "causal_mask": causal,
            **{stage: {"relative_leak": [leak] * seeds} for stage in ("init", "trained")},
        }

    return {
        "n_seeds": seeds,
        "leak_tolerance": 1e-6,
        "by_kind": {"decoder (causal mask)": kind(dec, True), "encoder (no mask)": kind(enc, False)},
    }


def test_c10_verdict_every_label() -> None:
    assert c10.verdict(_c10_metrics()).label == Label.SUPPORTED
    assert c10.verdict(_c10_metrics(dec=0.2)).label == Label.PARTLY  # the mask leaks
    assert c10.verdict(_c10_metrics(enc=0.0)).label == Label.PARTLY  # the encoder ignores the future
    assert c10.verdict(_c10_metrics(dec=0.2, enc=0.0)).label == Label.NOT_SUPPORTED
    assert c10.verdict(_c10_metrics(seeds=1)).label == Label.INCONCLUSIVE
    assert c10._literature(_c10_metrics())[0].agrees is True
    assert c10._literature(_c10_metrics(dec=0.2))[0].agrees is False


# --------------------------------------------------------------------------- C11


def test_sequence_task() -> None:
    task = c11.SequenceTask(length=4, symbols=5)
    src, tgt = task.sample(3, torch.Generator().manual_seed(0))
    assert src.shape == (3, 4) and tgt.shape == (3, 5)
    assert torch.equal(tgt[:, :4], src.flip(1)) and (tgt[:, 4] == task.eos).all()
    dec_in = task.decoder_input(tgt)
    assert (dec_in[:, 0] == task.bos).all() and torch.equal(dec_in[:, 1:], tgt[:, :-1])
    assert [task.source_position(t) for t in range(4)] == [3, 2, 1, 0]
    assert c11.SequenceTask(4, 5, reverse=False).source_position(1) == 1


def test_interventions_on_an_untrained_model() -> None:
    """The measurement itself: memory noise never moves the first layer's Q; decoder noise never K, V."""
    task = c11.SequenceTask(length=5, symbols=6)
    torch.manual_seed(0)
    model = EncoderDecoder(
        BenchConfig(vocab_size=task.vocab_size, d_model=16, n_heads=2, n_layers=2, max_len=8)
    )
    src, tgt = task.sample(8, torch.Generator().manual_seed(1))
    res = c11.interventions(model, task, src, tgt, 0.5, torch.Generator().manual_seed(2))
    ch = res["changes"]
    assert ch["memory"]["Q"][0] == 0.0 and ch["memory"]["Q"][1] > 0  # layer 2's Q sees the memory via layer 1
    assert min(ch["memory"]["K"]) > 0 and min(ch["memory"]["V"]) > 0
    assert max(ch["decoder"]["K"]) == 0.0 and max(ch["decoder"]["V"]) == 0.0 and min(ch["decoder"]["Q"]) > 0
    assert res["shapes"]["q_input"] == [8, 6, 16] and res["shapes"]["k_input"] == [8, 5, 16]
    assert len(c11.alignment(res["weights"], task)) == 2
    with c11.cross_attention_off(model):
        off = model(src, task.decoder_input(tgt)).logits
        off2 = model(src.roll(1, 0), task.decoder_input(tgt)).logits
    assert torch.allclose(off, off2)  # with cross-attention off the source no longer matters


def _c11_metrics(
    q_mem: float = 0.0,
    q_dec: float = 0.08,
    k_mem: float = 0.15,
    k_dec: float = 0.0,
    acc: float = 1.0,
    off: float = 0.19,
    seeds: int = 3,
) -> dict[str, Any]:
    def per_seed(first: float, later: float) -> list[list[float]]:
        return [[first, later] for _ in range(seeds)]

    return {
        "n_seeds": seeds,
        "min_accuracy": 0.9,
        "chance_accuracy": 0.1,
        "alignment_chance": 0.125,
        "token_accuracy": [acc] * seeds,
        "token_accuracy_cross_off": [off] * seeds,
        "alignment": [[0.8, 0.5]] * seeds,
        "shapes": {
            "q_input": [256, 9, 32],
            "k_input": [256, 8, 32],
            "v_input": [256, 8, 32],
            "source_length": 8,
            "target_length": 9,
        },
        "changes": {
            "memory": {
                "Q": per_seed(q_mem, 0.5),
                "K": per_seed(k_mem, 0.2),
                "V": per_seed(0.4, 0.3),
                "weights": per_seed(0.1, 0.1),
            },
            "decoder": {
                "Q": per_seed(q_dec, 0.1),
                "K": per_seed(k_dec, k_dec),
                "V": per_seed(0.0, 0.0),
                "weights": per_seed(0.04, 0.02),
            },
        },
    }


def test_c11_verdict_every_label() -> None:
    v = c11.verdict(_c11_metrics())  # queries from the decoder: the notes are half right
    assert v.label == Label.PARTLY and "queries come from the decoder" in v.reason
    assert c11.verdict(_c11_metrics(q_mem=0.3)).label == Label.SUPPORTED  # queries moved by the memory
    assert c11.verdict(_c11_metrics(k_mem=0.0, k_dec=0.2)).label == Label.NOT_SUPPORTED
    assert c11.verdict(_c11_metrics(acc=0.5)).label == Label.INCONCLUSIVE  # did not learn
    assert c11.verdict(_c11_metrics(off=1.0)).label == Label.INCONCLUSIVE  # does not use cross-attention
    assert c11.verdict(_c11_metrics(seeds=1)).label == Label.INCONCLUSIVE
    lit = c11._literature(_c11_metrics())
    assert lit[0].agrees is True and lit[1].agrees is True
    assert c11._literature(_c11_metrics(q_mem=0.3, q_dec=0.0))[0].agrees is False
    assert math.isclose(_c11_metrics()["alignment_chance"], 1 / 8)


# --------------------------------------------------------------------------- the rules


def test_mechanisms_tokenizer_must_be_built(tmp_path: Path) -> None:
    """A tokenizer the tokenizers rule does not build stops the run with one line, before any job."""
    workflow_copy(tmp_path)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile", "config/test.yaml"]
    (tmp_path / "bad.yaml").write_text("mechanisms:\n  tokenizer: {vocab_size: 4000}\n", encoding="utf-8")
    bad = subprocess.run([*cmd, "bad.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1] == (
        "whylab: config error: mechanisms.tokenizer.vocab_size: 4000 is not built by the tokenizers rule "
        "(it builds 800, 1200); pick one of those"
    )
    good = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr[-2000:]
    for claim in ("C05", "C10", "C11"):
        assert f"concept_{claim}" in good.stdout + good.stderr
    assert not (tmp_path / "results").exists()
