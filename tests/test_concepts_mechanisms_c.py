"""C07, C08, C09: the padding helpers and measurements measure what they say, every verdict can
come out every way, and each experiment runs end to end on the tiny corpus."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from whylab.bench.model import BenchConfig, BenchTransformer
from whylab.concepts import REGISTRY, run_concept
from whylab.concepts import c07_layernorm_vs_batchnorm as c07
from whylab.concepts import c08_pre_vs_post_ln as c08
from whylab.concepts import c09_feed_forward as c09
from whylab.verdict import Label

torch.set_num_threads(1)


def spread(values: list[float]) -> dict[str, Any]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"mean": mean, "std": std, "values": values}


def test_registered() -> None:
    for claim, module in (("C07", c07), ("C08", c08), ("C09", c09)):
        assert REGISTRY[claim] == module.__name__ and claim == module.CLAIM_ID


# --------------------------------------------------------------------------- C07 helpers


def test_split_sentences_and_pairs() -> None:
    assert c07.split_sentences("One two. Three? Four!  Five") == ["One two.", "Three?", "Four!", "Five"]
    assert c07.split_sentences("헌법은 국민의 것이다. 다음 문장") == ["헌법은 국민의 것이다.", "다음 문장"]
    x, y = c07.lm_pairs([[5, 6, 7, 8], [9, 10]], pad_id=0)
    assert x.tolist() == [[5, 6, 7], [9, 0, 0]]
    assert y.tolist() == [[6, 7, 8], [10, -100, -100]]
    x, _ = c07.lm_pairs([[5, 6, 7, 8], [9, 10]], pad_id=0, length=5)
    assert x.shape == (2, 5) and c07.pad_fraction(x, 0) == pytest.approx(6 / 10)
    with pytest.raises(ValueError, match="shorter than the longest"):
        c07.lm_pairs([[5, 6, 7, 8]], pad_id=0, length=2)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        c07.lm_pairs([[5]], pad_id=0)


class _Tok:
    def __init__(self, pad: int | None) -> None:
        self.pad = pad

    def get_vocab_size(self) -> int:
        return 50

    def token_to_id(self, name: str) -> int | None:
        return self.pad if name == "<pad>" else None


def test_pad_id_uses_the_tokenizers_pad_or_adds_one() -> None:
    assert c07.pad_id_of(_Tok(0)) == (0, 50)
    assert c07.pad_id_of(_Tok(None)) == (50, 51)


def test_padded_batches_mix_lengths_deterministically() -> None:
    seqs = [list(range(1, n + 1)) for n in (3, 5, 9, 12, 4)]
    fn = c07.padded_batch_fn(seqs, 4, pad_id=0)
    a = fn(0, torch.Generator().manual_seed(1))
    b = fn(0, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert ((a[0] == 0) == (a[1] == -100)).all()  # PAD inputs are exactly the ignored targets
    batches = c07.fixed_batches(seqs, 2, pad_id=0)
    assert [x.shape[0] for x, _ in batches] == [2, 2, 1]


def _tiny_lm(norm: str) -> BenchTransformer:
    torch.manual_seed(0)
    return BenchTransformer(
        BenchConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=2, norm=norm, pad_id=0, max_len=64)
    )


def test_batch_dependence_layernorm_zero_batchnorm_not() -> None:
    gen = torch.Generator().manual_seed(0)
    pool = [
        torch.randint(1, 30, (int(n),), generator=gen).tolist()
        for n in torch.randint(4, 14, (20,), generator=gen)
    ]
    stream = torch.randint(1, 30, (200,), generator=gen)
    out = {}
    for norm in ("layer", "batch", "rms"):
        out[norm] = c07.batch_dependence(
            _tiny_lm(norm),
            pool[:3],
            pool[3:],
            stream,
            batch_size=4,
            mate_sets=3,
            extra_padding=[4, 12],
            pad_id=0,
            device="cpu",
            seed=0,
        )
    for norm in ("layer", "rms"):
        for key in ("mates_padded", "mates_nopad", "padding", "eval_mode"):
            assert out[norm][key] < 1e-5, (norm, key)
    for key in ("mates_padded", "mates_nopad", "padding"):
        assert out["batch"][key] > 1e-3, key
    assert out["batch"]["eval_mode"] < 1e-5  # running statistics: batch-independent at inference
    curve = out["batch"]["padding_curve"]
    assert [p["extra_pad_columns"] for p in curve] == [4, 12]
    assert curve[0]["pad_fraction"] < curve[1]["pad_fraction"]


def test_batch_stats_mode_leaves_running_stats_alone_and_statistics_see_pad() -> None:
    model = _tiny_lm("batch")
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x, y = c07.lm_pairs([[1, 2, 3, 4, 5, 6, 7, 8], [3, 4, 5]], pad_id=0)
    c07.token_loss(c07.batch_stats_mode(model), [(x, y)], "cpu")
    stats = c07.batchnorm_statistics(model, [(x, y), c07.lm_pairs([[2, 3, 4], [5, 6, 7, 8, 9]], 0)], 0, "cpu")
    after = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert stats["pad_mean_shift"] > 0.01 and stats["batch_fluctuation"] > 0
    assert c07.batchnorm_statistics(_tiny_lm("layer"), [(x, y)], 0, "cpu") == {}


# --------------------------------------------------------------------------- C07 verdict


def c07_metrics(
    ln_loss: list[float], bn_loss: list[float], *, bn_pad: float = 0.2, ln_change: float = 0.0
) -> dict[str, Any]:
    def norm(loss: list[float], pad: float, change: float) -> dict[str, Any]:
        return {
            "eval_loss": spread(loss),
            "mates_padded": spread([change] * 3),
            "padding": spread([pad] * 3),
            "mates_nopad": spread([pad / 2] * 3),
            "eval_mode": spread([0.0] * 3),
        }

    return {
        "norms": {"layer": norm(ln_loss, ln_change, ln_change), "batch": norm(bn_loss, bn_pad, bn_pad)},
        "dependence_threshold": 0.01,
        "invariance_tolerance": 1e-4,
    }


LOW, HIGH, MID = [5.0, 5.02, 5.01], [5.3, 5.32, 5.31], [4.9, 5.3, 5.1]


def test_c07_verdict_every_label() -> None:
    v = c07.verdict(c07_metrics(LOW, HIGH))
    assert v.label is Label.SUPPORTED and "0.2" in v.reason
    assert c07.verdict(c07_metrics(LOW, MID)).label is Label.PARTLY  # tie on loss
    assert c07.verdict(c07_metrics(HIGH, LOW)).label is Label.PARTLY  # BN trains better
    assert c07.verdict(c07_metrics(LOW, HIGH, bn_pad=0.001)).label is Label.PARTLY  # reason not shown
    assert c07.verdict(c07_metrics(HIGH, LOW, bn_pad=0.001)).label is Label.NOT_SUPPORTED
    assert c07.verdict(c07_metrics(LOW, MID, bn_pad=0.001)).label is Label.NOT_SUPPORTED
    assert c07.verdict(c07_metrics(LOW, HIGH, ln_change=0.05)).label is Label.INCONCLUSIVE
    assert c07.verdict(c07_metrics([5.0], [5.3])).label is Label.INCONCLUSIVE


# --------------------------------------------------------------------------- C08


def test_capped_loss() -> None:
    assert c08.capped_loss(float("nan"), 6.9) == 6.9
    assert c08.capped_loss(9.0, 6.9) == 6.9
    assert c08.capped_loss(5.0, 6.9) == 5.0


def _cell(
    lr: float,
    depth: int,
    warmup: int,
    pre: list[float],
    post: list[float],
    div_pre: int = 0,
    div_post: int = 0,
) -> dict[str, Any]:
    return {
        "lr": lr,
        "depth": depth,
        "warmup": warmup,
        "pre": {"loss": spread(pre), "diverged": div_pre, "runs": len(pre)},
        "post": {"loss": spread(post), "diverged": div_post, "runs": len(post)},
    }


def c08_metrics(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cells": cells, "divergence_margin": 0.25, "loss_cap": 6.9}


def test_c08_verdict_every_label() -> None:
    grid = [(lr, d, w) for lr in (1e-3, 1e-2) for d in (2, 6) for w in (0, 10)]
    pre_all = c08_metrics([_cell(*g, LOW, HIGH) for g in grid])
    assert c08.verdict(pre_all).label is Label.SUPPORTED
    tie = c08_metrics([_cell(*g, MID, MID) for g in grid])
    assert c08.verdict(tie).label is Label.INCONCLUSIVE
    post_all = c08_metrics([_cell(*g, HIGH, LOW) for g in grid])
    v = c08.verdict(post_all)
    assert v.label is Label.NOT_SUPPORTED and "8/8" in v.reason
    mixed = c08_metrics([_cell(*g, LOW if g[0] > 5e-3 else HIGH, HIGH if g[0] > 5e-3 else LOW) for g in grid])
    v = c08.verdict(mixed)
    assert v.label is Label.PARTLY and "lr 0.01" in v.reason
    one_cell = c08_metrics(
        [_cell(*g, LOW if g == grid[-1] else MID, HIGH if g == grid[-1] else MID) for g in grid]
    )
    assert c08.verdict(one_cell).label is Label.PARTLY  # Pre-LN wins only where the literature says
    post_diverges = c08_metrics([_cell(*g, MID, MID, div_post=2) for g in grid])
    assert c08.verdict(post_diverges).label is Label.SUPPORTED
    pre_diverges = c08_metrics([_cell(*g, MID, MID, div_pre=2) for g in grid])
    assert c08.verdict(pre_diverges).label is Label.NOT_SUPPORTED
    assert c08.verdict(c08_metrics([_cell(1e-3, 2, 0, [5.0], [5.3])])).label is Label.INCONCLUSIVE


# C09: tests/test_c09.py


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


def test_c07_runs(mech_inputs: dict[str, Path], tmp_path: Path) -> None:
    rec = _run(
        "C07",
        {
            "steps": 4,
            "max_seq_len": 20,
            "eval_sequences": 8,
            "probes": 2,
            "mate_sets": 2,
            "extra_padding": [6],
            "norms": ["layer", "batch"],
        },
        mech_inputs,
        tmp_path,
    )
    norms = rec["metrics"]["norms"]
    assert norms["layer"]["padding"]["mean"] < 1e-5 and norms["batch"]["padding"]["mean"] > 1e-3
    assert len(norms["batch"]["eval_loss"]["values"]) == 2
    assert 0 < rec["metrics"]["pad_fraction_train"] < 1


def test_c08_runs_and_is_deterministic(mech_inputs: dict[str, Path], tmp_path: Path) -> None:
    section = {
        "lrs": [1e-2],
        "depths": [1, 2],
        "warmup_steps": 2,
        "steps": 4,
        "batch_size": 4,
        "seq_len": 8,
        "eval_every": 2,
        "d_model": 8,
        "grad_probe_depths": [3],
    }
    a = _run("C08", section, mech_inputs, tmp_path / "a")
    b = _run("C08", section, mech_inputs, tmp_path / "b")
    assert a["metrics"]["cells"] == b["metrics"]["cells"]
    assert len(a["metrics"]["cells"]) == 4
    grads = a["metrics"]["grad_norms_at_init"]["grid init"]
    assert len(grads["pre"]["3"]) == 3 and len(grads["post"]["3"]) == 3


def test_c08_literature_reads_gradients_and_warmup() -> None:
    grads = {
        "grid init": {"pre": {"6": [0.5, 0.3]}, "post": {"6": [0.3, 0.02]}},
        "Xavier-like init": {"pre": {"6": [0.6, 0.2]}, "post": {"6": [0.6, 0.7]}},
    }
    cells = [_cell(1e-2, 6, 0, LOW, HIGH), _cell(1e-2, 6, 10, LOW, LOW)]  # warm-up rescues Post-LN only
    grad_check, warm_check = c08._xiong({"grad_norms_at_init": grads, "cells": cells}, [6])
    assert grad_check.agrees is True and "depends on the init" in grad_check.note
    assert warm_check.agrees is True and "1/1" in warm_check.note
    grads["Xavier-like init"] = grads["grid init"]
    cells = [_cell(1e-2, 6, 0, HIGH, LOW), _cell(1e-2, 6, 10, LOW, LOW)]  # warm-up helps Pre-LN only
    grad_check, warm_check = c08._xiong({"grad_norms_at_init": grads, "cells": cells}, [6])
    assert grad_check.agrees is False and warm_check.agrees is False
    _, warm_check = c08._xiong({"grad_norms_at_init": grads, "cells": [_cell(1e-2, 6, 0, MID, MID)]}, [6])
    assert warm_check.agrees is None
