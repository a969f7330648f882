"""The training-memory planner: exact counts (meta device), activations vs autograd, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from whylab.errors import InputError
from whylab.memory import planner
from whylab.memory.presets import PRESETS


def _classes(family: str) -> tuple[Any, Any]:
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    return {
        "bert": (BertConfig, BertForSequenceClassification),
        "gpt2": (GPT2Config, GPT2LMHeadModel),
        "llama": (LlamaConfig, LlamaForCausalLM),
    }[family]


def _build(cfg: dict[str, Any], attn: str = "eager", meta: bool = False) -> torch.nn.Module:
    config_cls, model_cls = _classes(cfg["model_type"])
    config = config_cls(**{k: v for k, v in cfg.items() if k != "model_type"}, attn_implementation=attn)
    if cfg["model_type"] == "llama":
        config.use_cache = False
    if meta:
        with torch.device("meta"):
            return model_cls(config)
    return model_cls(config)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_counts_equal_the_meta_model(name: str) -> None:
    model = _build(PRESETS[name], meta=True)
    arch = planner.arch_from_config(PRESETS[name])
    assert planner.param_count(arch) == sum(p.numel() for p in model.parameters())
    assert planner.buffer_bytes(arch) == sum(b.numel() * b.element_size() for b in model.buffers())
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    assert sorted(p.shape for p in planner.param_list(arch)) == shapes


@pytest.mark.parametrize("name", ["gpt2", "llama-3-8b", "bert-base-uncased"])
def test_accelerate_rule_equals_accelerates_code(name: str) -> None:
    from accelerate.commands.estimate import estimate_training_usage
    from accelerate.utils import calculate_maximum_sizes

    total, _ = calculate_maximum_sizes(_build(PRESETS[name], meta=True))
    arch = planner.arch_from_config(PRESETS[name])
    for dtype, acc_dtype in (("fp32", "float32"), ("bf16", "float16")):
        mine = planner.accelerate_estimate(arch, dtype)
        expected_total = total if dtype == "fp32" else total / 2
        assert mine["total_size"] == pytest.approx(expected_total)
        assert mine["training_using_adam"] == pytest.approx(
            max(estimate_training_usage(total, acc_dtype).values())
        )


def test_defaults_are_the_config_classes_defaults() -> None:
    for family, defaults in planner.DEFAULTS.items():
        config = _classes(family)[0]()
        arch = planner.arch_from_config({"model_type": family})
        assert planner.param_count(arch) == sum(
            p.numel() for p in _build({"model_type": family}, meta=True).parameters()
        )
        for key, value in defaults.items():
            if value is not None and hasattr(config, key):
                assert getattr(config, key) == value, (family, key)


SMALL = {
    "bert": {
        "vocab_size": 100,
        "hidden_size": 48,
        "num_attention_heads": 3,
        "intermediate_size": 80,
        "max_position_embeddings": 64,
    },
    "gpt2": {"vocab_size": 100, "n_embd": 48, "n_head": 3, "n_inner": 80, "n_positions": 64},
    "llama": {
        "vocab_size": 100,
        "hidden_size": 48,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "intermediate_size": 80,
    },
}
LAYERS = {"bert": "num_hidden_layers", "gpt2": "n_layer", "llama": "num_hidden_layers"}
DROPOUT = {
    "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    "gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop"),
    "llama": (),
}


def _saved_bytes(model: torch.nn.Module, family: str, batch: int, seq: int) -> int:
    """Bytes autograd saves in one training forward, parameters and buffers excluded, each storage once."""
    exclude = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in exclude:
            seen[st.data_ptr()] = st.nbytes()
        return t

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (batch, seq), generator=gen)
    labels = torch.randint(0, 2, (batch,), generator=gen) if family == "bert" else ids
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=labels)
    return sum(seen.values())


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_activations_equal_what_autograd_saves(family: str, attn: str, dropout: float) -> None:
    if dropout and (family == "llama" or attn == "sdpa"):
        pytest.skip("Llama has no dropout; CPU sdpa with dropout falls back to the math kernel")
    cfg = {
        "model_type": family,
        **SMALL[family],
        LAYERS[family]: 2,
        **dict.fromkeys(DROPOUT[family], dropout),
    }
    arch = planner.arch_from_config(cfg)
    for dtype, act in ((torch.float32, 4), (torch.bfloat16, 2)):
        model = _build(cfg, attn).to(dtype)
        kernels = planner.Kernels.cpu(act)
        for batch, seq in ((1, 24), (3, 40)):
            expected = (
                arch.layers * planner.layer_activation_bytes(arch, batch, seq, act, attn, kernels)
                + planner.head_activation_bytes(arch, batch, seq, act, kernels)
                + planner.logits_bytes(arch, batch, seq)[0]
            )
            assert expected == _saved_bytes(model, family, batch, seq), (dtype, batch, seq)


def test_eager_keeps_the_square_and_sdpa_does_not() -> None:
    arch = planner.arch_from_config(PRESETS["llama-2-7b"])
    eager = [planner.layer_activation_bytes(arch, 1, s, 2, "eager") for s in (1024, 2048)]
    sdpa = [planner.layer_activation_bytes(arch, 1, s, 2, "sdpa") for s in (1024, 2048)]
    assert sdpa[1] == 2 * sdpa[0]  # linear in s
    assert eager[1] > 2 * eager[0]  # the s² probabilities


def test_mixed_precision_adamw_is_16_bytes_per_param() -> None:
    p = planner.plan(PRESETS["llama-2-7b"], planner.Setup(batch=1, seq=16), "llama-2-7b")
    c = p.components
    per_param = (c["weights"] + c["master copy"] + c["gradients"] + c["optimizer state"]) / p.params
    assert per_param == pytest.approx(16, abs=1e-3)


def test_tricks_lower_the_peak_in_the_expected_order() -> None:
    cfg = PRESETS["llama-2-7b"]
    full = planner.plan(cfg, planner.Setup(seq=2048))
    ck = planner.plan(cfg, planner.Setup(seq=2048, checkpointing=True))
    lora = planner.plan(cfg, planner.Setup(seq=2048, lora=16))
    qlora = planner.plan(cfg, planner.Setup(seq=2048, lora=16, qlora=True))
    off = planner.plan(cfg, planner.Setup(seq=2048, offload="optimizer"))
    assert ck.components["activations"] < full.components["activations"]
    assert qlora.peak < lora.peak < full.peak
    assert off.peak < full.peak and off.host["optimizer state"] == full.components["optimizer state"]
    assert qlora.fits["24 GB"] and not full.fits["80 GB"]
    ada = planner.plan(cfg, planner.Setup(seq=2048, optimizer="adafactor"))
    assert ada.components["optimizer state"] < 0.01 * full.components["optimizer state"]


def test_adafactor_and_8bit_state_equal_the_libraries() -> None:
    cfg = {
        "model_type": "llama",
        **SMALL["llama"],
        "num_hidden_layers": 1,
        "hidden_size": 96,
        "intermediate_size": 128,
        "vocab_size": 128,
    }
    model = _build(cfg)
    arch = planner.arch_from_config(cfg)
    opt = torch.optim.Adafactor(model.parameters(), lr=1e-3, foreach=False)
    model(input_ids=torch.randint(0, 128, (1, 8)), labels=torch.randint(0, 128, (1, 8))).loss.backward()
    opt.step()
    state = sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    assert planner._optimizer_bytes(planner.param_list(arch), "adafactor") == state


def test_cli_prints_table_and_json(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "whylab", "plan-memory", "llama-3-8b", "--seq", "2048", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["params"] == 8030261248 and set(data["fits"]) == {"24 GB", "40 GB", "80 GB"}
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(PRESETS["gpt2"]), encoding="utf-8")
    text = subprocess.run(
        [sys.executable, "-m", "whylab", "plan-memory", str(cfg), "--optimizer", "sgd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "124,439,808 parameters" in text and "accelerate estimate-memory" in text
    out_file = tmp_path / "plan.json"
    assert planner.main(["llama-2-7b", "--lora", "16", "--qlora", "--output", str(out_file)]) == 0
    assert json.loads(out_file.read_text(encoding="utf-8"))["fits"]["24 GB"] is True


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model_type"):
        planner.arch_from_config({"model_type": "t5"})
    with pytest.raises(InputError, match="learned positions"):
        planner.plan(PRESETS["bert-base-uncased"], planner.Setup(seq=1024))
    with pytest.raises(InputError, match="--lora"):
        planner.plan(PRESETS["gpt2"], planner.Setup(qlora=True))
    assert planner.main(["no-such-model"]) == 2


@pytest.mark.parametrize(("family", "tolerance"), [("gpt2", 0.005), ("llama", 0.005), ("bert", 0.10)])
def test_planned_peak_equals_a_measured_training_step(family: str, tolerance: float) -> None:
    """The planner's whole-step peak vs MemTracker's peak of a real AdamW FP32 step on CPU.

    GPT-2 and Llama peak at the start of backward (weights, Adam state, saved activations and the
    FP32 logit gradients): the planner matches them to well under 1%. BERT for classification has no
    vocabulary-sized logits, so its peak falls later, inside the backward of a layer, where transient
    gradient tensors the phase model does not count add a few percent: it is under-estimated by ~5%.
    """
    from whylab.memory import measure

    cfg = {"model_type": family, **SMALL[family], LAYERS[family]: 2, **dict.fromkeys(DROPOUT[family], 0.0)}
    torch.manual_seed(0)
    model = _build(cfg, "eager")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    batch, seq = 4, 64
    ids = torch.randint(0, 100, (batch, seq))
    labels = torch.randint(0, 2, (batch,)) if family == "bert" else ids

    def step() -> None:
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    measured = measure.tracked_peak(step, [model, opt, ids, labels], "cpu").peak_bytes
    setup = planner.Setup(
        batch=batch, seq=seq, dtype="fp32", attention="eager", kernels=planner.Kernels.cpu(4)
    )
    planned = planner.plan(cfg, setup).peak
    assert abs(planned - measured) / measured <= tolerance
