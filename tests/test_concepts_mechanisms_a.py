"""C05, C10, C11: the measurements measure what they say, and each verdict can come out every way."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from whylab.bench.model import BenchConfig, BenchTransformer, EncoderDecoder
from whylab.concepts import REGISTRY
from whylab.concepts import c05_scaling as c05
from whylab.concepts import c10_encoder_decoder as c10
from whylab.concepts import c11_cross_attention as c11
from whylab.verdict import Label
from workflow_copy import workflow_copy

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def test_registered() -> None:
    for claim, module in (("C05", c05), ("C10", c10), ("C11", c11)):
        assert REGISTRY[claim] == module.__name__ and claim == module.CLAIM_ID


# --------------------------------------------------------------------------- C05


def test_softmax_probe_variance_and_saturation() -> None:
    gen = torch.Generator().manual_seed(0)
    small = c05.softmax_probe(4, None, n_keys=32, samples=300, generator=gen)
    big = c05.softmax_probe(256, None, n_keys=32, samples=300, generator=gen)
    scaled = c05.softmax_probe(256, 1 / 16, n_keys=32, samples=300, generator=gen)
    assert big["var_raw"] == pytest.approx(256, rel=0.15) and small["var_raw"] == pytest.approx(4, rel=0.15)
    assert scaled["std_scaled"] == pytest.approx(1.0, rel=0.1)
    assert big["max_prob"] > 0.8 > scaled["max_prob"]
    assert big["grad_logits"] < 0.2 * scaled["grad_logits"]
    rows = c05.synthetic_heads(64, [1, 4], n_keys=16, samples=50, threshold=0.9, seed=0)
    var = {(r["heads"], r["scaling"]): r["score_var_scaled"] for r in rows}
    assert var[(4, "sqrt_dmodel")] == pytest.approx(0.25, rel=0.25)  # 1/h
    assert var[(4, "sqrt_dk")] == pytest.approx(1.0, rel=0.25)
    assert c05.loglog_slope([1, 2, 4], [3, 6, 12]) == pytest.approx(1.0)


def test_causal_attention_entropy_bounds() -> None:
    torch.manual_seed(0)
    model = BenchTransformer(BenchConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=1))
    x = torch.randint(0, 20, (2, 12))
    assert 0.9 < c05.causal_attention_entropy(model, x) <= 1.0 + 1e-5  # tiny init: nearly uniform
    with torch.no_grad():  # huge queries and keys: nearly one-hot
        model.blocks[0].attn.q_proj.weight.mul_(1000)
        model.blocks[0].attn.k_proj.weight.mul_(1000)
    assert c05.causal_attention_entropy(model, x) < 0.5


def _c05_metrics(
    *,
    slope: float = 1.0,
    sat_raw: float = 0.8,
    grad_ratio: float = 0.01,
    dk_loss: tuple[float, ...] = (4.8, 4.9, 4.85),
    none_loss: tuple[float, ...] = (5.7, 5.75, 5.8),
    heads: tuple[int, ...] = (1, 16),
    var_dmodel: float = 0.06,
    grad_none: tuple[float, ...] = (0.14, 0.15, 0.13),
    grad_dk: tuple[float, ...] = (0.017, 0.018, 0.017),
) -> dict[str, Any]:
    def sp(values: tuple[float, ...]) -> dict[str, Any]:
        return {"mean": sum(values) / len(values), "std": 0.05, "values": list(values)}

    return {
        "saturation_max_prob": 0.9,
        "synthetic": {
            "d_k": [4, 512],
            "var_slope": slope,
            "saturated_share": {"none": [0.0, sat_raw], "sqrt_dk": [0.0, 0.0]},
            "grad_logits": {"none": [0.2, 0.17 * grad_ratio], "sqrt_dk": [0.16, 0.17]},
            "max_prob": {"none": [0.3, 0.93], "sqrt_dk": [0.1, 0.1]},
        },
        "heads": {
            "d_model": 512,
            "heads": list(heads),
            "score_var_scaled": {
                "sqrt_dk": [1.0, 0.99],
                "sqrt_dmodel": [1.0, var_dmodel],
                "none": [512.0, 32.0],
            },
        },
        "training": {
            "64": {
                "heads": 1,
                "scalings": {
                    "sqrt_dk": {"final_eval_loss": sp(dk_loss), "grad_wq_init": sp(grad_dk)},
                    "none": {"final_eval_loss": sp(none_loss), "grad_wq_init": sp(grad_none)},
                },
            }
        },
    }


def test_c05_verdict_every_label() -> None:
    # the mechanism holds, scaling helps, and the notes' dimension over-shrinks: partly
    v = c05.verdict(_c05_metrics())
    assert v.label == Label.PARTLY and "d_k" in v.reason and "0.060" in v.reason
    # one head only (d_k = d_model) and the W_q gradient really shrinks: supported
    v = c05.verdict(_c05_metrics(heads=(1,), grad_none=(0.001, 0.0012, 0.0011)))
    assert v.label == Label.SUPPORTED
    # the gradient reaching W_q is not smaller without scaling: a caveat on its own
    assert c05.verdict(_c05_metrics(heads=(1,))).label == Label.PARTLY
    # the variance does not grow like d_k: not supported
    assert c05.verdict(_c05_metrics(slope=0.5)).label == Label.NOT_SUPPORTED
    # the softmax does not saturate / the gradient does not shrink: not supported
    assert c05.verdict(_c05_metrics(sat_raw=0.1)).label == Label.NOT_SUPPORTED
    assert c05.verdict(_c05_metrics(grad_ratio=0.5)).label == Label.NOT_SUPPORTED
    # training shows no benefit: partly
    v = c05.verdict(_c05_metrics(none_loss=(4.8, 4.9, 4.85)))
    assert v.label == Label.PARTLY and "no clear benefit" in v.reason
    # a single seed cannot decide
    assert c05.verdict(_c05_metrics(dk_loss=(4.8,), none_loss=(5.7,))).label == Label.INCONCLUSIVE


def test_c05_literature_reads_the_gap_trend() -> None:
    m = _c05_metrics()
    m["training"]["8"] = copy.deepcopy(m["training"]["64"])
    m["training"]["8"]["scalings"]["none"]["final_eval_loss"]["mean"] = 4.9
    checks = c05._literature(m)
    assert checks[0].agrees is True and checks[1].agrees is True
    m["training"]["8"]["scalings"]["none"]["final_eval_loss"]["mean"] = 9.0
    assert c05._literature(m)[1].agrees is False


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
