"""The memory calculator: exact on hand-computed cases and on real torch objects (C17, C18)."""

from __future__ import annotations

import math

import pytest
import torch

from whylab.errors import InputError
from whylab.memory import calculator as calc
from whylab.memory import counting, measure, training

TINY = {"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_layers": 1, "num_heads": 2}


def test_model_bytes_match_the_notes_arithmetic() -> None:
    assert calc.model_bytes(110e6, "fp32") == 440e6
    assert calc.model_bytes(110e6, "fp16") == calc.model_bytes(110e6, "bf16") == 220e6
    assert calc.model_bytes(175e9, "int8") == 175e9
    assert calc.model_bytes(175e9, "int4") == 87.5e9
    with pytest.raises(InputError):
        calc.model_bytes(1, "fp8")


def test_notes_formula_literal_and_additive_readings() -> None:
    # 1000 FP32 params: base 4000 B; Adam 8, grad 4, activations 0.25
    assert calc.notes_training_bytes(1000, "fp32", "adam", 0.25, "literal") == 4000 * 12.25
    assert calc.notes_training_bytes(1000, "fp32", "adam", 0.25, "additive") == 4000 + 12000 + 1000
    # AdaFactor's 2-4 B/param is taken at its middle (3)
    assert calc.notes_training_bytes(1000, "fp32", "adafactor", 0.0, "additive") == 4000 + 7000


def test_optimizer_state_hand_computed() -> None:
    shapes = [(3, 4), (5,)]  # 17 values in two tensors
    assert calc.optimizer_state_bytes(shapes, "adamw") == 2 * 17 * 4 + 2 * 4
    assert calc.optimizer_state_bytes(shapes, "sgd") == 0
    assert calc.optimizer_state_bytes(shapes, "sgd_momentum") == 17 * 4
    # AdaFactor: row (3) + column (4) vector for the matrix, the full 5-vector, a step each
    assert calc.optimizer_state_bytes(shapes, "adafactor") == (3 + 4) * 4 + 4 + 5 * 4 + 4
    assert calc.optimizer_state_bytes(shapes, "mixed_adamw") == 17 * 12


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "sgd_momentum", "adafactor"])
def test_optimizer_state_equals_torch(name: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))
    opt = training.make_optimizer(model, name)
    model(torch.randn(2, 6)).sum().backward()
    opt.step()
    held = sum(
        v.numel() * v.element_size()
        for st in opt.state.values()
        for v in st.values()
        if isinstance(v, torch.Tensor)
    )
    assert held == calc.optimizer_state_bytes(training.param_shapes(model), name)


def test_activation_formula_hand_computed() -> None:
    shape = calc.LlamaShape(hidden=8, intermediate=16, heads=2, layers=1, vocab=10)
    # per token: two norms 2·(4·8 + 2·4·8 + 4) = 200, attention 4·4·8 = 128, MLP 4·4·16 = 256
    assert calc.llama_layer_activation_bytes(shape, 1, 2) == 2 * (200 + 128 + 256) + 1 * 2 * 2 * 2 * 4
    # ids 16, cos/sin 2·2·4·4 = 64, final norm 2·100, log-softmax 4·2·10, targets 8·(2+1) + 4
    # (batch 1 keeps the padded label storage), then batch 2: targets 8·4 + 4
    assert calc.llama_head_activation_bytes(shape, 1, 2) == 16 + 64 + 200 + 80 + 28
    assert calc.llama_activation_bytes(shape, 1, 2) == 1200 + 388
    assert calc.llama_head_activation_bytes(shape, 2, 2) == 32 + 64 + 400 + 160 + 36


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_activation_formula_equals_saved_tensors(precision: str) -> None:
    cfg = {**TINY, "vocab_size": 32, "num_layers": 2}
    model = training.build_llama(cfg, 0, precision)
    for batch, seq in ((1, 4), (3, 7)):
        ids = training.random_ids(32, batch, seq, 0)
        saved, _ = measure.saved_activation_bytes(model, lambda i=ids: model(input_ids=i, labels=i).loss)
        shape = calc.LlamaShape.from_model_cfg(cfg)
        assert saved == calc.llama_activation_bytes(shape, batch, seq, calc.precision(precision).act)


def test_korthikanti_formula() -> None:
    assert calc.korthikanti_layer_bytes(seq=2, batch=1, hidden=8, heads=2) == 2 * 8 * (34 + 5 * 2 * 2 / 8)


def test_phase_peak_matches_measured_step() -> None:
    cfg = {**TINY, "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_layers": 2}
    shape = calc.LlamaShape.from_model_cfg(cfg)
    for name, prec in (("adamw", "fp32"), ("sgd", "fp32"), ("mixed_adamw", "mixed_bf16")):
        model = training.build_llama(cfg, 0, prec)
        opt = training.make_optimizer(model, name)
        ids = training.random_ids(64, 2, 16, 0)
        training.train_step(model, opt, ids)
        peak = measure.tracked_peak(
            lambda m=model, o=opt, x=ids: training.train_step(m, o, x), [model, opt, ids], "cpu"
        )
        est = calc.training_estimate(training.param_shapes(model), shape, 2, 16, name, prec)
        assert abs(est.phase_peak - peak.peak_bytes) / peak.peak_bytes < 0.02, (name, est, peak)
        assert est.weights == calc.precision(prec).weight * training.n_params(model)


@pytest.mark.parametrize(
    "spec",
    [
        counting.ModelSpec(
            "tiny-bert",
            "bert",
            {
                "hidden_size": 16,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 32,
                "vocab_size": 50,
            },
        ),
        counting.ModelSpec("tiny-gpt2", "gpt2", {"n_embd": 16, "n_layer": 2, "n_head": 2, "vocab_size": 50}),
        counting.ModelSpec(
            "tiny-llama",
            "llama",
            {
                "hidden_size": 16,
                "intermediate_size": 40,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "vocab_size": 50,
            },
        ),
        counting.ModelSpec(
            "tied-llama",
            "llama",
            {
                "hidden_size": 16,
                "intermediate_size": 40,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "vocab_size": 50,
                "tie_word_embeddings": True,
                "attention_bias": True,
                "mlp_bias": True,
            },
        ),
    ],
)
def test_analytic_count_equals_meta_model(spec: counting.ModelSpec) -> None:
    assert counting.analytic_params(spec) == counting.meta_params(spec)


def test_bert_base_count_is_exact() -> None:
    spec = counting.ModelSpec("bert-base", "bert", {})
    assert counting.analytic_params(spec) == 109_482_240
    assert math.isclose(calc.model_bytes(109_482_240, "fp32") / calc.MiB, 417.64, abs_tol=0.01)


def test_unknown_family_is_one_line_error() -> None:
    with pytest.raises(InputError, match="family"):
        counting.spec_from_mapping({"name": "x", "family": "t5"})
