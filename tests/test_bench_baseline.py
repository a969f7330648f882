"""The shared learned baseline LM: trained once per seed, stored as safetensors + JSON, loaded by
C03/C04/C06 with exactly the numbers of an in-process run, and refused when stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench_claims import TINY, lm_inputs_of
from whylab.bench import baseline
from whylab.bench.lab import baseline_inputs, learned_baseline, load_corpus
from whylab.errors import InputError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm_inputs(tiny_corpus: Path, tiny_tokenizers: Path) -> dict[str, Path]:
    return lm_inputs_of(tiny_corpus, tiny_tokenizers)


def test_step_writes_files_that_load_to_the_same_model(lm_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = {"weights": tmp_path / "s1" / "model.safetensors", "history": tmp_path / "s1" / "history.json"}
    baseline.run_step({**TINY, "seed": 1}, dict(lm_inputs), out, 1)
    assert out["weights"].read_bytes()[:8]  # a safetensors header, not a pickle
    record = json.loads(out["history"].read_text(encoding="utf-8"))
    assert record["format"] == baseline.FORMAT and record["spec"]["seed"] == 1

    corpus = load_corpus(lm_inputs)
    inputs = {**lm_inputs, "baseline_1": out["weights"], "baseline_history_1": out["history"]}
    assert baseline_inputs(inputs, 1) == (out["weights"], out["history"])
    assert baseline_inputs(inputs, 0) is None
    loaded, hist = learned_baseline(TINY, inputs, corpus, 1, "cpu")
    fresh, fresh_hist = learned_baseline(TINY, lm_inputs, corpus, 1, "cpu")  # trained here
    assert hist.eval_loss == pytest.approx(fresh_hist.eval_loss, abs=1e-6)
    for (name, a), (_, b) in zip(loaded.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    # a hand-made call may name them without the seed
    per_seed = {"baseline": out["weights"], "baseline_history": out["history"]}
    assert baseline_inputs(per_seed, 1) == (out["weights"], out["history"])


def test_stale_baseline_is_refused(lm_inputs: dict[str, Path], tmp_path: Path) -> None:
    out = {"weights": tmp_path / "model.safetensors", "history": tmp_path / "history.json"}
    baseline.run_step({**TINY, "seed": 0}, dict(lm_inputs), out, 1)
    corpus = load_corpus(lm_inputs)
    other = {**TINY, "train": {**TINY["train"], "steps": 9}}
    with pytest.raises(InputError, match="other settings"):
        baseline.load_baseline(other, corpus.vocab_size, 0, "cpu", out["weights"], out["history"])
    with pytest.raises(InputError, match="other settings"):  # another seed's file
        baseline.load_baseline(TINY, corpus.vocab_size, 1, "cpu", out["weights"], out["history"])


def test_step_needs_a_seed_and_both_outputs(lm_inputs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="seed"):
        baseline.run_step(
            dict(TINY), dict(lm_inputs), {"weights": tmp_path / "w", "history": tmp_path / "h"}, 1
        )
    with pytest.raises(InputError, match="history"):
        baseline.run_step({**TINY, "seed": 0}, dict(lm_inputs), {"weights": tmp_path / "w"}, 1)


def test_rule_settings_hold_exactly_what_defines_a_baseline() -> None:
    import json as _json

    from whylab.bench.workflow import rule_settings

    settings = _json.loads(
        rule_settings({"model": {"d_model": 8}, "train": {"steps": 3}, "C03": {}}, 4, "cpu")
    )
    assert settings == {"seed": 4, "device": "cpu", "model": {"d_model": 8}, "train": {"steps": 3}}
