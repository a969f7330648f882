"""C09: the feed-forward block is made of linear layers, dropout, normalisation and an activation.

Two parts. First, what the block *is* in standard models: tiny BERT, GPT-2, Llama and T5 are
built from their transformers configs (no weights), one layer is run with forward hooks that
record which leaf modules are called, in which order, and with which tensors. That shows how
many linear layers, which activation and which dropout the feed-forward (FFN) path has, and
where the normalisation sits: never between the FFN's linear layers, always on the residual
stream, either before the sub-layer (Pre-LN) or on the residual sum after it (Post-LN). The
residual arithmetic is checked on the captured tensors. The parameter share of the FFN is
counted on the real-size configs, instantiated on PyTorch's ``meta`` device (shapes only).

Second, what the block *does* on the bench language model: no FFN, ReLU vs GELU vs SwiGLU, and
hidden width 1×, 2×, 4× d_model, each over several seeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from whylab.concepts import ConceptContext
from whylab.concepts import _bench_common as bench
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict, VerdictOf, effect, paired_test

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
    for act in settings.get("activations", ["relu", "gelu", "swiglu"]):
        if act != base_act:
            variants[f"{act}, {base_mult}x"] = {"activation": act, "ffn_mult": base_mult}
    for mult in settings.get("ffn_mults", [1, 2, 4]):
        if int(mult) != base_mult:
            variants[f"{base_act}, {int(mult)}x"] = {"activation": base_act, "ffn_mult": int(mult)}
    return variants


def _num(value: Any) -> float:
    """A per-seed number back from JSON: None (a NaN, i.e. a run that blew up) becomes nan."""
    return math.nan if value is None else float(value)


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Every ablation variant of the bench LM trained from ``seed``: the same initial weights where
    the shapes agree and the same batches, so each variant pairs with the baseline by seed."""
    from whylab.bench.model import parameter_breakdown

    s = ctx.settings
    corpus = bench.load_corpus(ctx.inputs)
    train_over = bench.given(s, ("steps", "batch_size", "seq_len"))
    out: dict[str, Any] = {"seed": seed, "variants": {}}
    for name, over in ablation_variants(s).items():
        model, _, hist = bench.train_on_corpus(s, corpus, seed, ctx.device, over, train_over)
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


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    s = ctx.settings
    refs = references()
    structure = [analyse_structure(r) for r in refs]
    shares = [parameter_shares(r) for r in refs]
    variants = list(ablation_variants(s))
    baseline = variants[0]
    seeds = [int(r["seed"]) for r in per_seed]
    histories: dict[str, list[Any]] = {
        name: [
            SimpleNamespace(
                eval_steps=r["variants"][name]["eval_steps"],
                eval_loss=[_num(v) for v in r["variants"][name]["eval_loss"]],
            )
            for r in per_seed
        ]
        for name in variants
    }
    base_losses = [_num(r["variants"][baseline]["loss"]) for r in per_seed]
    ablation: dict[str, Any] = {}
    for name in variants:
        first = per_seed[0]["variants"][name]
        losses = [_num(r["variants"][name]["loss"]) for r in per_seed]
        entry: dict[str, Any] = {
            "loss": bench.summary(losses),
            "params": first["params"],
            "ffn_params": first["ffn_params"],
            "ffn_share": first["ffn_share"],
            "ffn_share_non_embedding": first["ffn_share_non_embedding"],
        }
        if name != baseline and all(math.isfinite(v) for v in losses + base_losses):
            entry["paired_minus_baseline"] = paired_test(losses, base_losses).to_dict()
        ablation[name] = entry
    metrics: dict[str, Any] = {
        "structure": structure,
        "parameter_shares": shares,
        "ablation": ablation,
        "baseline": baseline,
        "no_ffn": "no FFN",
        "steps": int(s.get("steps") or s.get("train", {}).get("steps", 0)),
        "min_effect": float(s.get("min_effect", 0.02)),
        "residual_tolerance": float(s.get("residual_tolerance", 1e-5)),
    }
    return Evidence(
        method=Msg("C09.method", n_seeds=len(seeds)),
        metrics=metrics,
        seeds=seeds,
        tables=_tables(metrics),
        figures=_figures(ctx.outdir, histories, metrics),
        literature=_literature(metrics),
    )


def _tables(metrics: Mapping[str, Any]) -> list[Table]:
    structure = [
        {
            "model": r["model"],
            "FFN path (leaf modules in call order)": r["path"],
            "linear layers": r["linear"],
            "activation": ", ".join(r["activation_types"]) or "none",
            "dropout modules": r["dropout"],
            "norm between the FFN's linear layers": "yes" if r["norm_between_linears"] else "no",
            "norm inside the library's FFN module": "yes" if r["norm_in_library_ffn_module"] else "no",
            "norm position": r["norm_position"],
            "residual check (max abs error)": f"{r['residual_check_error']:.1e}",
        }
        for r in metrics["structure"]
    ]
    shares = [
        {
            "model": r["model"],
            "parameters": r["total"],
            "FFN parameters": r["ffn"],
            "FFN share of all (%)": round(100 * r["ffn_share"], 1),
            "FFN share without embeddings (%)": round(100 * r["ffn_share_non_embedding"], 1),
        }
        for r in metrics["parameter_shares"]
    ]
    ablation = [
        {
            "variant": name,
            "validation loss (nats/token)": bench.fmt(a["loss"], 4),
            "parameters": a["params"],
            "FFN share (%)": round(100 * a["ffn_share"], 1),
            "FFN share without embeddings (%)": round(100 * a["ffn_share_non_embedding"], 1),
        }
        for name, a in metrics["ablation"].items()
    ]
    return [
        Table.from_records(
            "structure",
            Msg("C09.table.structure.caption"),
            structure,
        ),
        Table.from_records(
            "parameter_shares",
            Msg("C09.table.parameter_shares.caption"),
            shares,
        ),
        Table.from_records("ablation", Msg("C09.table.ablation.caption"), ablation),
    ]


def _figures(
    outdir: Path, histories: Mapping[str, Sequence[Any]], metrics: Mapping[str, Any]
) -> list[FigureRef]:
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from whylab import plotting

    figs = [
        bench.plot_curves(
            histories,
            outdir,
            "training_curves",
            Msg("C09.figure.training_curves.title"),
            Msg("C09.figure.training_curves.caption"),
        )
    ]
    rows = [
        {"variant": name, "loss": v}
        for name, a in metrics["ablation"].items()
        for v in bench.values(a["loss"])
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=pd.DataFrame(rows), x="variant", y="loss", errorbar="sd", ax=ax, color="C0")
    sns.stripplot(data=pd.DataFrame(rows), x="variant", y="loss", ax=ax, color="black", size=4)
    low = min(r["loss"] for r in rows)
    ax.set_ylim(low - 0.3, max(r["loss"] for r in rows) + 0.1)
    ax.set_xlabel("feed-forward variant")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.tick_params(axis="x", labelrotation=20)
    figs.append(plotting.save_figure(fig, outdir, "C09.figure.ablation_loss"))
    shares = [
        (r["model"].split(" (")[0].replace(" ", "\n", 1), r["ffn_share"], r["ffn_share_non_embedding"])
        for r in metrics["parameter_shares"]
    ]
    base = metrics["ablation"][metrics["baseline"]]
    shares.append(("bench\n(baseline)", base["ffn_share"], base["ffn_share_non_embedding"]))
    rows = [
        {"model": m, "share": 100 * v, "counted over": over}
        for m, all_, body in shares
        for over, v in (("all parameters", all_), ("without embeddings and output layer", body))
    ]
    fig, ax = plt.subplots(figsize=(7, 4.4))
    sns.barplot(data=pd.DataFrame(rows), x="model", y="share", hue="counted over", ax=ax)
    ax.legend(title="counted over", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax.set_xlabel("model")
    ax.set_ylabel("feed-forward share of parameters (%)")
    figs.append(plotting.save_figure(fig, outdir, "C09.figure.ffn_parameter_share"))
    return figs


def _literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    by_model = {r["model"]: r for r in metrics["structure"]}
    ablation = metrics["ablation"]
    relu = next((a for n, a in ablation.items() if n.startswith("relu")), None)
    swiglu = next((a for n, a in ablation.items() if n.startswith("swiglu")), None)
    base = ablation[metrics["baseline"]]
    checks = []
    bert = by_model.get("BERT")
    differing = [r["model"] for r in metrics["structure"] if r["norm_between_linears"] or r["linear"] < 2]
    if bert is not None:
        checks.append(
            LiteratureCheck(
                source="Vaswani et al. 2017, section 3.3",
                finding=Msg("C09.literature.vaswani.finding"),
                agrees=not differing,
                note=Msg(
                    "C09.literature.vaswani.note_differs",
                    models=differing,
                    error=bert["residual_check_error"],
                )
                if differing
                else Msg("C09.literature.vaswani.note", error=bert["residual_check_error"]),
            )
        )
    if swiglu is not None and relu is not None:
        test = _paired(swiglu["loss"], relu["loss"])  # swiglu - relu, per seed
        eff = effect(test, float(metrics["min_effect"])) if test is not None else 0
        better, worse = eff < 0, eff > 0
        checks.append(
            LiteratureCheck(
                source="Shazeer 2020, GLU Variants Improve Transformer",
                finding=Msg("C09.literature.shazeer.finding"),
                agrees=True if better else (False if worse else None),
                note=Msg(
                    "C09.literature.shazeer.note",
                    swiglu=bench.fmt(swiglu["loss"], 4),
                    relu=bench.fmt(relu["loss"], 4),
                    baseline=bench.fmt(base["loss"], 4),
                    tail=empty() if better or worse else Msg("C09.literature.shazeer.within_noise"),
                ),
            )
        )
    return checks


# --------------------------------------------------------------------------- verdict


def _paired(a: Mapping[str, Any], b: Mapping[str, Any]) -> Any:
    """Paired test of two :func:`bench.summary` entries seed by seed; None when a run failed."""
    va, vb = a.get("values", []), b.get("values", [])
    if len(va) != len(vb) or len(va) < 2 or any(v is None for v in [*va, *vb]):
        return None
    return paired_test([float(v) for v in va], [float(v) for v in vb])


def _ablation_text(metrics: Mapping[str, Any]) -> tuple[Msg, tuple[Msg, ...]]:
    """What removing the FFN does on the bench model (illustration), and what this run could not judge."""
    abl = metrics["ablation"]
    base, none = abl[metrics["baseline"]], abl.get(metrics["no_ffn"])
    if none is None:
        return empty(), ()
    test = _paired(none["loss"], base["loss"])  # no FFN - baseline, per seed
    losses = Msg("C09.reason.losses", no_ffn=bench.fmt(none["loss"], 4), baseline=bench.fmt(base["loss"], 4))
    if test is None:
        return empty(), (Msg("C09.limited.ablation_failed", losses=losses),)
    eff = effect(test, float(metrics["min_effect"]))
    paired = Msg("C09.reason.paired", diff=test.mean_diff, p=test.p, n=test.n)
    if eff > 0:
        return Msg("C09.reason.no_ffn_raises", losses=losses, paired=paired), ()
    if eff < 0:
        return Msg("C09.reason.no_ffn_lowers", losses=losses, paired=paired), ()
    return empty(), (
        Msg(
            "C09.limited.ablation_unclear",
            steps=metrics["steps"],
            losses=losses,
            paired=paired,
            min_effect=float(metrics["min_effect"]),
        ),
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Linear layers and an activation in every standard FFN, dropout in some, normalisation in
    none (it sits on the residual stream): partly supported. All four everywhere: supported.
    Decided on the library models; the bench ablations are reported with it."""
    rows = metrics["structure"]
    n = len(rows)
    tol = float(metrics["residual_tolerance"])
    ffn_matters, limited = _ablation_text(metrics) if n else (empty(), ())
    out = VerdictOf(Kind.DEFINITION, Msg("C09.primary"), list(limited))
    if n == 0:
        return out.branch(Label.INCONCLUSIVE, "C09.verdict.no_models")
    unverified = [
        r["model"]
        for r in rows
        if r["norm_position"] == "none" or not (float(r["residual_check_error"]) <= tol)
    ]
    with_linear = sum(1 for r in rows if r["linear"] >= 2)
    with_act = sum(1 for r in rows if r["activation"] >= 1)
    with_dropout = sum(1 for r in rows if r["dropout"] >= 1)
    norm_inside = sum(1 for r in rows if r["norm_between_linears"])
    parts = Msg(
        "C09.reason.parts",
        n=n,
        with_linear=with_linear,
        with_act=with_act,
        with_dropout=with_dropout,
        norm_inside=norm_inside,
    )
    common = {"parts": parts, "ffn_matters": ffn_matters, "n": n}
    if with_linear < n or with_act < n:
        lacking = [r["model"] for r in rows if r["linear"] < 2 or r["activation"] < 1]
        return out.branch(Label.NOT_SUPPORTED, "C09.verdict.not_supported", lacking=lacking, **common)
    if unverified and norm_inside < n:
        return out.branch(Label.INCONCLUSIVE, "C09.verdict.unverified", unverified=unverified, **common)
    if norm_inside == n and with_dropout == n:
        return out.branch(Label.SUPPORTED, "C09.verdict.supported", **common)
    if norm_inside == n:
        # every traced norm sits inside the FFN, but some FFN has no dropout
        return out.branch(Label.PARTLY, "C09.verdict.partly_no_dropout", with_dropout=with_dropout, **common)
    return out.branch(Label.PARTLY, "C09.verdict.partly", with_dropout=with_dropout, **common)
