"""C05, C10, C11: the measurements measure what they say, and each verdict can come out every way."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from whylab.bench.model import BenchConfig, BenchTransformer
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


# C10 and C11: tests/test_c10.py and tests/test_c11.py


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
