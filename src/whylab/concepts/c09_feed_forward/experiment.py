"""C09's measurements: the traced feed-forward path of library models, and the bench ablations.

Measuring only. ``measure``: tiny BERT, GPT-2, Llama and T5 built from their transformers configs
(BERT's ``BertIntermediate``/``BertOutput``, GPT-2's and Llama's ``mlp``, T5's ``T5LayerFF``), one
layer traced with forward hooks (which leaf modules run, in which order, and whether the residual
identity of Pre-LN or Post-LN holds on the captured tensors), and the FFN's parameter share of
the real-size configs on the meta device. ``measure_seed``: every bench ablation variant trained
from one seed. Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from whylab.bench import lab
from whylab.concepts.context import ConceptContext
from whylab.files import finite_or_text

CLAIM_ID = "C09"
KINDS = ("linear", "activation", "dropout", "norm")


def module_kind(module: nn.Module) -> str | None:
    """linear / activation / dropout / norm / None, from the class (GPT-2's Conv1D is a linear layer)."""
    name = type(module).__name__
    if isinstance(module, nn.Linear) or name == "Conv1D":
        return "linear"
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return "dropout"
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm)) or "Norm" in name:
        return "norm"
    if re.search(r"GELU|ReLU|SiLU|Swish|Tanh|Sigmoid|Activation|Mish", name):
        return "activation"
    return None


# --------------------------------------------------------------------------- standard models


@dataclass(frozen=True)
class Reference:
    """A standard architecture: how to build a tiny copy and the real-size config, and which
    module names make up its FFN as the library groups it."""

    name: str
    build_tiny: Callable[[], nn.Module]
    build_full: Callable[[], nn.Module]  # called under torch.device("meta")
    ffn_prefixes: tuple[str, ...]  # module names of one layer's FFN (as the library groups it)
    ffn_pattern: str  # regex of every layer's FFN linear layers (for parameter counts)
    full_label: str


def references() -> list[Reference]:
    """BERT (Post-LN encoder), GPT-2 (Pre-LN decoder), Llama (Pre-RMSNorm, SwiGLU), T5 (Pre-RMSNorm)."""
    from transformers import (
        BertConfig,
        BertModel,
        GPT2Config,
        GPT2Model,
        LlamaConfig,
        LlamaModel,
        T5Config,
        T5EncoderModel,
        T5Model,
    )

    tiny = {"attn_implementation": "eager"}
    return [
        Reference(
            "BERT",
            lambda: BertModel(
                BertConfig(
                    hidden_size=32,
                    intermediate_size=128,
                    num_attention_heads=2,
                    num_hidden_layers=1,
                    vocab_size=64,
                    **tiny,
                ),
                add_pooling_layer=False,
            ),
            lambda: BertModel(BertConfig(), add_pooling_layer=False),
            ("encoder.layer.0.intermediate", "encoder.layer.0.output"),
            r"encoder\.layer\.\d+\.(intermediate|output)\.dense$",
            "BERT-base (BertConfig defaults)",
        ),
        Reference(
            "GPT-2",
            lambda: GPT2Model(GPT2Config(n_embd=32, n_head=2, n_layer=1, vocab_size=64, **tiny)),
            lambda: GPT2Model(GPT2Config()),
            ("h.0.mlp",),
            r"h\.\d+\.mlp\.(c_fc|c_proj)$",
            "GPT-2 small (GPT2Config defaults)",
        ),
        Reference(
            "Llama",
            lambda: LlamaModel(
                LlamaConfig(
                    hidden_size=32,
                    intermediate_size=86,
                    num_attention_heads=2,
                    num_key_value_heads=2,
                    num_hidden_layers=1,
                    vocab_size=64,
                    **tiny,
                )
            ),
            lambda: LlamaModel(LlamaConfig()),
            ("layers.0.mlp",),
            r"layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)$",
            "Llama-2-7B shape (LlamaConfig defaults)",
        ),
        Reference(
            "T5",
            lambda: T5EncoderModel(
                T5Config(d_model=32, d_ff=128, num_heads=2, d_kv=16, num_layers=1, vocab_size=64, **tiny)
            ),
            lambda: T5Model(T5Config()),
            ("encoder.block.0.layer.1",),
            r"block\.\d+\.layer\.\d+\.DenseReluDense\.(wi|wo)$",
            "T5-small (T5Config defaults)",
        ),
    ]


@dataclass
class Call:
    name: str
    kind: str | None
    inp: Tensor
    out: Tensor


def trace_calls(model: nn.Module, ids: Tensor) -> list[Call]:
    """Every leaf module call of one forward pass, in order, with its input and output."""
    calls: list[Call] = []
    hooks = []
    for name, mod in model.named_modules():
        if name and not list(mod.children()):

            def hook(m: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> None:
                inp = args[0] if args and isinstance(args[0], Tensor) else torch.empty(0)
                calls.append(
                    Call(
                        name,
                        module_kind(m),
                        inp.detach().clone(),
                        out.detach().clone() if isinstance(out, Tensor) else torch.empty(0),
                    )
                )

            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _close(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference (inf when the shapes differ)."""
    if a.shape != b.shape:
        return math.inf
    return float((a - b).abs().max())


def analyse_structure(ref: Reference, seed: int = 0) -> dict[str, Any]:
    """What one layer's FFN is made of and where its normalisation sits, from a traced forward.

    The FFN *path* runs from the first to the last linear layer of the library's FFN module(s),
    plus a dropout right after the last one. A norm is "inside" when it is called between the
    first and last FFN linear layer. Otherwise it is
    - pre: its output is what the first FFN linear layer reads, and the layer's output is its
      *input* plus the FFN output (x + FFN(Norm(x)));
    - post: its input is the FFN output plus the residual that entered the FFN
      (Norm(x + FFN(x))).
    The residual identities are checked on the captured tensors (max abs error).
    """
    torch.manual_seed(seed)
    model = ref.build_tiny().eval()
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(seed))
    calls = trace_calls(model, ids)
    in_ffn = [i for i, c in enumerate(calls) if c.name.startswith(ref.ffn_prefixes)]
    linear_idx = [i for i in in_ffn if calls[i].kind == "linear"]
    if len(linear_idx) < 1:
        raise RuntimeError(f"{ref.name}: no linear layer found under {ref.ffn_prefixes}")
    first, last = linear_idx[0], linear_idx[-1]
    path_end = (
        last + 1
        if last + 1 < len(calls)
        and calls[last + 1].kind == "dropout"
        and calls[last + 1].name.startswith(ref.ffn_prefixes)
        else last
    )
    path = calls[first : path_end + 1]
    counts = {k: sum(1 for c in path if c.kind == k) for k in KINDS}
    grouped = [calls[i] for i in in_ffn]
    activations = sorted(
        {type_name for c in path if c.kind == "activation" for type_name in [_type_of(model, c.name)]}
    )
    ffn_out = calls[path_end].out
    residual_in = calls[first].inp

    # In both placements a norm's output feeds the FFN (Post-LN: the previous sub-layer's norm),
    # so the placement is decided by which residual identity the captured tensors satisfy.
    before = calls[first - 1] if first > 0 else None
    after = calls[path_end + 1] if path_end + 1 < len(calls) else None
    errors: dict[str, float] = {}
    if (
        before is not None
        and before.kind == "norm"
        and after is not None
        and _close(before.out, residual_in) < 1e-6
    ):
        errors["pre"] = _close(after.inp, before.inp + ffn_out)  # x + FFN(Norm(x))
    if after is not None and after.kind == "norm":
        errors["post"] = _close(after.inp, ffn_out + residual_in)  # Norm(x + FFN(x))
    position, error = "none", math.nan
    if errors:
        position, error = min(errors.items(), key=lambda kv: kv[1])
    norm_between = any(c.kind == "norm" for c in calls[first : last + 1])
    return {
        "model": ref.name,
        "ffn_modules": ", ".join(ref.ffn_prefixes),
        "path": " → ".join(f"{c.name.split('.')[-1]} ({c.kind})" for c in path),
        "linear": counts["linear"],
        "activation": counts["activation"],
        "activation_types": activations,
        "dropout": counts["dropout"],
        "norm_between_linears": bool(norm_between),
        "norm_in_library_ffn_module": any(c.kind == "norm" for c in grouped),
        "norm_position": position,
        "residual_check_error": error,
    }


def _type_of(model: nn.Module, name: str) -> str:
    return type(model.get_submodule(name)).__name__


def parameter_shares(ref: Reference) -> dict[str, Any]:
    """FFN parameters of the real-size config, counted on the meta device (no memory used)."""
    with torch.device("meta"):
        model = ref.build_full()
    pattern = re.compile(ref.ffn_pattern)
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)
    )
    ffn = sum(
        p.numel()
        for name, m in model.named_modules()
        if pattern.search(name)
        for p in m.parameters(recurse=False)
    )
    return {
        "model": ref.full_label,
        "total": total,
        "embedding": embedding,
        "ffn": ffn,
        "ffn_share": ffn / total,
        "ffn_share_non_embedding": ffn / max(1, total - embedding),
    }


# --------------------------------------------------------------------------- bench ablations


def ablation_variants(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """BenchConfig overrides per variant: the baseline, no FFN, each activation, each width."""
    model = settings.get("model", {})
    base_act = str(model.get("activation", "gelu"))
    base_mult = int(model.get("ffn_mult", 4))
    variants: dict[str, dict[str, Any]] = {
        f"{base_act}, {base_mult}x (baseline)": {"activation": base_act, "ffn_mult": base_mult},
        "no FFN": {"ffn": False},
    }
    for act in settings["activations"]:
        if act != base_act:
            variants[f"{act}, {base_mult}x"] = {"activation": act, "ffn_mult": base_mult}
    for mult in settings["ffn_mults"]:
        if int(mult) != base_mult:
            variants[f"{base_act}, {int(mult)}x"] = {"activation": base_act, "ffn_mult": int(mult)}
    return variants


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """What the FFN is made of in every standard model, and its parameter share at real size."""
    refs = references()
    structure = [analyse_structure(r) for r in refs]
    for row in structure:
        row["residual_check_error"] = finite_or_text(float(row["residual_check_error"]))
    return {"structure": structure, "parameter_shares": [parameter_shares(r) for r in refs]}


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Every ablation variant of the bench LM trained from ``seed`` (the baseline first): the same
    initial weights where the shapes agree and the same batches, so each variant pairs with the
    baseline by seed. A loss that blew up (NaN) comes back as None."""
    from whylab.bench.model import parameter_breakdown

    s = ctx.settings
    corpus = lab.load_corpus(ctx.inputs)
    train_over = lab.given(s, ("steps", "batch_size", "seq_len"))
    out: dict[str, Any] = {"seed": seed, "variants": {}}
    for name, over in ablation_variants(s).items():
        model, _, hist = lab.train_on_corpus(s, corpus, seed, ctx.device, over, train_over)
        breakdown = parameter_breakdown(model)
        total = sum(breakdown.values())
        body = total - breakdown["embedding"] - breakdown["lm_head"]
        out["variants"][name] = {
            "loss": hist.final_eval_loss,
            "diverged": hist.diverged,
            "eval_steps": hist.eval_steps,
            "eval_loss": hist.eval_loss,
            "params": total,
            "ffn_params": breakdown["ffn"],
            "ffn_share": breakdown["ffn"] / total,
            "ffn_share_non_embedding": breakdown["ffn"] / max(1, body),
        }
    return out
