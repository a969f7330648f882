"""C10 — encoders use (bidirectional) multi-head self-attention; decoders use masked multi-head
self-attention.

A definition check: what an encoder and a decoder *are* is read off implementations others wrote.
BERT (an encoder), GPT-2 (a decoder) and T5 (both) are built from their transformers configs with
random weights, two layers and the real model's number of heads. The causality test changes one
token at position p and measures how much the hidden states at positions < p move: in a masked
decoder they must not move at all, in an encoder they do. One forward pass with the attention maps
returned shows the heads: how many maps each layer computes, that they differ, and whether any
weight falls on later positions.

Our bench transformer, built twice from the same seed with and without the causal mask and tested
at initialisation and after brief training on the corpus, is the illustration: a check on our own
code alone would only read back the mask we wrote into it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.ticker import FuncFormatter, NullFormatter

from whylab import plotting
from whylab.bench.data import eval_windows, lm_data
from whylab.bench.model import BenchTransformer
from whylab.bench.train import bench_config, train_lm, train_settings
from whylab.concepts import ConceptContext
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C10"
KINDS = {"decoder (causal mask)": True, "encoder (no mask)": False}
KIND_TERMS = {"decoder (causal mask)": "C10.term.decoder", "encoder (no mask)": "C10.term.encoder"}
ENCODER_MIN_LEAK = 1e-3  # relative change at earlier positions that shows the encoder reads the future

Forward = Callable[[torch.Tensor], torch.Tensor]  # ids (B, T) -> outputs (B, T, F)


def perturbation_positions(seq_len: int, count: int) -> list[int]:
    """``count`` positions spread evenly inside the window, never the first (nothing before it)."""
    return sorted({max(1, round((k + 1) * seq_len / (count + 1))) for k in range(count)})


@torch.no_grad()
def causality_profile(
    forward: Forward, ids: torch.Tensor, positions: Sequence[int], vocab_size: int, generator: torch.Generator
) -> dict[str, Any]:
    """Change the token at each position p (to a different random token) and measure the outputs.

    Returns, over windows and positions: the largest change at any earlier position, the mean
    change at p and after, their ratio (the relative leak), and the mean change per offset j − p.
    """
    base = forward(ids)
    t = ids.shape[1]
    earlier_max, later_mean, leaks = 0.0, [], []
    by_offset: dict[int, list[float]] = {}
    for p in positions:
        changed = ids.clone()
        shift = torch.randint(1, vocab_size, (ids.shape[0],), generator=generator).to(ids.device)
        changed[:, p] = (changed[:, p] + shift) % vocab_size  # always a different token
        delta = (forward(changed) - base).abs().amax(dim=-1)  # (B, T): largest change per position
        before, after = delta[:, :p], delta[:, p:]
        later = float(after.mean())
        earlier_max = max(earlier_max, float(before.max()))
        later_mean.append(later)
        leaks.append(float(before.max()) / later if later > 0 else math.inf)
        for j in range(t):
            by_offset.setdefault(j - p, []).append(float(delta[:, j].mean()))
    return {
        "earlier_max_abs": earlier_max,
        "later_mean_abs": float(np.mean(later_mean)),
        "relative_leak": max(leaks),
        "by_offset": {str(k): float(np.mean(v)) for k, v in sorted(by_offset.items())},
    }


def future_attention_share(model: BenchTransformer, ids: torch.Tensor) -> float:
    """Share of attention weight that goes to later positions (above the diagonal), all layers."""
    with torch.no_grad():
        maps = model(ids, return_attention=True).attentions
    assert maps is not None
    return float(torch.stack([w.triu(1).sum(-1).mean() for w in maps]).mean())


def _logits_of(model: torch.nn.Module) -> Forward:
    def forward(ids: torch.Tensor) -> torch.Tensor:
        return model(ids).logits

    return forward


@dataclass(frozen=True)
class LibraryStack:
    """One self-attention stack of a library model: an encoder or a decoder, built tiny from its
    config but with the real model's number of heads, and the real-size config it stands for."""

    name: str
    role: str  # "encoder" or "decoder"
    real: str  # the real model whose head count is read from the library's default config
    real_heads: int
    forward: Forward  # ids -> hidden states
    attentions: Callable[[torch.Tensor], Sequence[torch.Tensor]]  # ids -> per layer (B, H, T, T)


def library_stacks(vocab_size: int, seq_len: int, seed: int) -> list[LibraryStack]:
    """BERT (encoder), GPT-2 (decoder) and T5 (its encoder and its decoder), random weights, built
    from transformers configs with 4-dimensional heads and the head count of BERT-base, GPT-2 small
    and T5-small (their configs' defaults)."""
    import transformers

    transformers.logging.set_verbosity_error()
    real = {
        "BERT": transformers.BertConfig().num_attention_heads,
        "GPT-2": transformers.GPT2Config().n_head,
        "T5": transformers.T5Config().num_heads,
    }
    d_head, layers, n_pos = 4, 2, max(64, seq_len)
    torch.manual_seed(seed)
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=vocab_size,
            hidden_size=d_head * real["BERT"],
            num_attention_heads=real["BERT"],
            num_hidden_layers=layers,
            intermediate_size=4 * d_head * real["BERT"],
            max_position_embeddings=n_pos,
            attn_implementation="eager",
        ),
        add_pooling_layer=False,
    ).eval()
    gpt2 = transformers.GPT2Model(
        transformers.GPT2Config(
            vocab_size=vocab_size,
            n_embd=d_head * real["GPT-2"],
            n_head=real["GPT-2"],
            n_layer=layers,
            n_positions=n_pos,
            attn_implementation="eager",
        )
    ).eval()
    t5 = transformers.T5Model(
        transformers.T5Config(
            vocab_size=vocab_size,
            d_model=d_head * real["T5"],
            d_kv=d_head,
            d_ff=4 * d_head * real["T5"],
            num_heads=real["T5"],
            num_layers=layers,
            attn_implementation="eager",
        )
    ).eval()
    source = torch.randint(0, vocab_size, (1, seq_len), generator=torch.Generator().manual_seed(seed + 5))

    def t5_decoder(ids: torch.Tensor, **kw: Any) -> Any:
        return t5(input_ids=source.expand(ids.shape[0], -1), decoder_input_ids=ids, use_cache=False, **kw)

    return [
        LibraryStack(
            "BERT",
            "encoder",
            "BERT-base",
            real["BERT"],
            lambda ids: bert(input_ids=ids).last_hidden_state,
            lambda ids: bert(input_ids=ids, output_attentions=True).attentions,
        ),
        LibraryStack(
            "GPT-2",
            "decoder",
            "GPT-2 small",
            real["GPT-2"],
            lambda ids: gpt2(input_ids=ids).last_hidden_state,
            lambda ids: gpt2(input_ids=ids, output_attentions=True).attentions,
        ),
        LibraryStack(
            "T5 encoder",
            "encoder",
            "T5-small",
            real["T5"],
            lambda ids: t5.encoder(input_ids=ids).last_hidden_state,
            lambda ids: t5.encoder(input_ids=ids, output_attentions=True).attentions,
        ),
        LibraryStack(
            "T5 decoder",
            "decoder",
            "T5-small",
            real["T5"],
            lambda ids: t5_decoder(ids).last_hidden_state,
            lambda ids: t5_decoder(ids, output_attentions=True).decoder_attentions,
        ),
    ]


@torch.no_grad()
def library_check(seq_len: int, vocab_size: int, positions: Sequence[int], seed: int) -> dict[str, Any]:
    """Every library stack through the causality test on random ids, plus its heads: how many
    attention maps each layer computes in the forward pass, how different they are, and how much
    weight goes to later positions."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (4, seq_len), generator=gen)
    out = {}
    for stack in library_stacks(vocab_size, seq_len, seed):
        prof = causality_profile(stack.forward, ids, positions, vocab_size, gen)
        maps = stack.attentions(ids)
        heads = [int(w.shape[1]) for w in maps]
        # how different the heads' maps are: largest |w_h - w_0| over heads, rows and layers
        spread = max(float((w - w[:, :1]).abs().amax()) for w in maps)
        out[stack.name] = {
            "role": stack.role,
            "real_model": stack.real,
            "real_heads": stack.real_heads,
            "heads_in_forward": min(heads),
            "head_difference": spread,
            "future_attention_share": float(torch.stack([w.triu(1).sum(-1).mean() for w in maps]).mean()),
            **{k: prof[k] for k in ("earlier_max_abs", "later_mean_abs", "relative_leak")},
        }
    return out


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    tokenizer, train_ids, valid_ids = lm_data(ctx.inputs)
    vocab = tokenizer.get_vocab_size()
    steps = int(s["steps"])
    rows: list[dict[str, Any]] = []
    offsets: list[dict[str, Any]] = []
    curves: dict[str, list[Any]] = {}
    maps: dict[str, np.ndarray] = {}
    for seed in ctx.seeds:
        ts = train_settings(s.get("train", {}), seed=seed, **({"steps": steps} if steps else {}))
        x, _ = eval_windows(valid_ids, seq_len=ts.seq_len, max_windows=int(s["windows"]))
        x = x.to(ctx.device)
        positions = perturbation_positions(ts.seq_len, int(s["positions"]))
        for kind, causal in KINDS.items():
            torch.manual_seed(seed)  # encoder and decoder start from the same weights
            model = BenchTransformer(bench_config(s.get("model", {}), vocab_size=vocab, causal=causal))
            model.to(ctx.device).eval()
            stages = ["init", "trained"] if steps else ["init"]
            for stage in stages:
                if stage == "trained":
                    hist = train_lm(model, train_ids, valid_ids, ts, device=ctx.device)
                    curves.setdefault(kind, []).append(hist)
                    model.eval()
                gen = torch.Generator().manual_seed(seed + 1)  # the same perturbations for both kinds
                prof = causality_profile(_logits_of(model), x, positions, vocab, gen)
                rows.append(
                    {
                        "kind": kind,
                        "stage": stage,
                        "seed": seed,
                        "earlier_max_abs": prof["earlier_max_abs"],
                        "later_mean_abs": prof["later_mean_abs"],
                        "relative_leak": prof["relative_leak"],
                        "future_attention_share": future_attention_share(model, x),
                        "final_eval_loss": curves[kind][-1].final_eval_loss if stage == "trained" else None,
                    }
                )
                for off, val in prof["by_offset"].items():
                    offsets.append(
                        {"kind": kind, "stage": stage, "seed": seed, "offset": int(off), "delta": val}
                    )
                if seed == ctx.seeds[0] and stage == stages[-1]:
                    with torch.no_grad():
                        att = model(x[:1], return_attention=True).attentions
                    assert att is not None
                    maps[kind] = att[0][0].mean(0).cpu().numpy()  # first layer, mean over heads

    frame = pd.DataFrame(rows)
    metrics: dict[str, Any] = {
        "n_seeds": len(ctx.seeds),
        "leak_tolerance": float(s["leak_tolerance"]),
        "stages": sorted(set(frame["stage"])),
        "by_kind": {},
    }
    for group, g in frame.groupby("kind"):
        metrics["by_kind"][str(group)] = {
            stage: {
                "relative_leak": [float(v) for v in gs["relative_leak"]],
                "earlier_max_abs": [float(v) for v in gs["earlier_max_abs"]],
                "later_mean_abs": [float(v) for v in gs["later_mean_abs"]],
                "future_attention_share": [float(v) for v in gs["future_attention_share"]],
                **(
                    {"final_eval_loss": [float(v) for v in gs["final_eval_loss"]]}
                    if stage == "trained"
                    else {}
                ),
            }
            for stage, gs in g.groupby("stage")
        }
        metrics["by_kind"][str(group)]["causal_mask"] = KINDS[str(group)]
    skipped: list[str] = []
    literature: list[LiteratureCheck] = []
    if s.get("library_check", True):
        lib = library_check(32, 100, perturbation_positions(32, int(s["positions"])), ctx.seeds[0])
        metrics["library"] = lib
    else:
        skipped.append(Msg("C10.skipped.library_check"))
    literature.extend(_literature(metrics))

    figures = [
        _figure_offsets(ctx, pd.DataFrame(offsets), float(s["leak_tolerance"])),
        _figure_maps(ctx, maps),
    ]
    if curves:
        figures.append(_figure_curves(ctx, curves))
    table = [
        {
            "model": kind,
            "stage": stage,
            "max |Δ logit| before p": _fmt(g["earlier_max_abs"], "{:.2e}"),
            "mean |Δ logit| at/after p": _fmt(g["later_mean_abs"], "{:.3f}"),
            "relative leak": _fmt(g["relative_leak"], "{:.2e}"),
            "attention to later tokens": _fmt(g["future_attention_share"], "{:.3f}"),
            "final loss (nats/token)": _fmt(g["final_eval_loss"], "{:.3f}") if stage == "trained" else "",
            "seeds": len(g),
        }
        for (kind, stage), g in frame.groupby(["kind", "stage"], sort=False)
    ]
    tables = []
    if "library" in metrics:
        tables.append(
            Table.from_records(
                "library",
                Msg("C10.table.library.caption"),
                [
                    {
                        "model": k,
                        "role": v["role"],
                        "relative leak": f"{v['relative_leak']:.2e}",
                        "attention to later tokens": f"{v['future_attention_share']:.3f}",
                        "heads per layer (forward)": v["heads_in_forward"],
                        "heads of the real model": f"{v['real_heads']} ({v['real_model']})",
                        "largest difference between heads' weights": f"{v['head_difference']:.2g}",
                    }
                    for k, v in metrics["library"].items()
                ],
            )
        )
    tables.append(
        Table.from_records(
            "causality",
            Msg("C10.table.causality.caption"),
            table,
        )
    )
    return Evidence(
        method=Msg("C10.method", steps=steps),
        metrics=metrics,
        seeds=ctx.seeds,
        tables=tables,
        figures=figures,
        literature=literature,
        skipped=skipped,
    )


def _fmt(values: pd.Series, pattern: str) -> str:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return ""
    sp = Spread.of(vals)
    return pattern.format(sp.mean) + ("" if sp.n < 2 else " ± " + pattern.format(sp.std))


def _figure_offsets(ctx: ConceptContext, frame: pd.DataFrame, tol: float) -> Any:
    fig, ax = plt.subplots(figsize=(8.5, 4))
    sns.lineplot(data=frame, x="offset", y="delta", hue="kind", style="stage", errorbar="sd", ax=ax)
    ax.set_yscale("symlog", linthresh=tol)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.0e}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axvline(0, color="grey", ls=":", lw=1)
    ax.set_xlabel("position relative to the changed token, j − p (tokens)")
    ax.set_ylabel("mean max |Δ logit| at position j (logit units)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)  # never over the data
    return plotting.save_figure(fig, ctx.outdir, "C10.figure.change_by_offset")


def _figure_maps(ctx: ConceptContext, maps: Mapping[str, np.ndarray]) -> Any:
    fig, axes = plt.subplots(1, len(maps), figsize=(5.4 * len(maps), 4.6))
    axes = np.atleast_1d(axes)
    vmax = float(np.quantile(np.concatenate([w.ravel() for w in maps.values()]), 0.98))
    for i, (ax, (kind, w)) in enumerate(zip(axes, maps.items(), strict=True)):
        last = i == len(maps) - 1
        sns.heatmap(
            w,
            ax=ax,
            cmap="viridis",
            vmin=0,
            vmax=vmax,
            square=True,
            cbar=last,
            cbar_kws={"label": "attention weight (probability; top 2% clipped)"},
        )
        step = max(1, w.shape[0] // 8)
        ax.set_xticks(np.arange(0, w.shape[0], step) + 0.5, np.arange(0, w.shape[0], step))
        ax.set_yticks(np.arange(0, w.shape[0], step) + 0.5, np.arange(0, w.shape[0], step))
        ax.set_title(kind)
        ax.set_xlabel("key position (token index)")
        ax.set_ylabel("query position (token index)")
    return plotting.save_figure(fig, ctx.outdir, "C10.figure.attention_maps")


def _figure_curves(ctx: ConceptContext, curves: Mapping[str, list[Any]]) -> Any:
    rows = [
        {"kind": kind, "run": i, "step": st, "loss": float(v)}
        for kind, hists in curves.items()
        for i, h in enumerate(hists)
        for st, v in zip(h.eval_steps, h.eval_loss, strict=True)
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=pd.DataFrame(rows), x="step", y="loss", hue="kind", errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation next-token loss (nats/token)")
    final = {kind: Spread.of([h.final_eval_loss for h in hists]).mean for kind, hists in curves.items()}
    gap = [Msg("C10.reason.final_loss", kind=Msg(KIND_TERMS[kind]), loss=v) for kind, v in final.items()]
    return plotting.save_figure(fig, ctx.outdir, "C10.figure.training_curves", losses=gap)


# --------------------------------------------------------------------------- verdict


def _kind(metrics: Mapping[str, Any], causal: bool) -> Mapping[str, Any]:
    for k in metrics["by_kind"].values():
        if k.get("causal_mask") is causal:
            return k
    raise KeyError(f"no {'decoder' if causal else 'encoder'} results in the metrics")


def _leaks(kind: Mapping[str, Any]) -> list[float]:
    return [float(v) for stage, m in kind.items() if isinstance(m, dict) for v in m["relative_leak"]]


PARTS = {
    "decoders masked": "C10.term.decoders_masked",
    "encoders bidirectional": "C10.term.encoders_bidirectional",
    "multi-head": "C10.term.multi_head",
}


def library_parts(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The three parts of the claim on the library models: decoders masked, encoders bidirectional,
    every stack multi-head; with the models that fail each part."""
    tol = float(metrics["leak_tolerance"])
    lib: Mapping[str, Mapping[str, Any]] = metrics["library"]
    dec = {k: v for k, v in lib.items() if v["role"] == "decoder"}
    enc = {k: v for k, v in lib.items() if v["role"] == "encoder"}
    fails = {
        "decoders masked": [
            k for k, v in dec.items() if v["relative_leak"] > tol or v["future_attention_share"] > tol
        ],
        "encoders bidirectional": [k for k, v in enc.items() if v["relative_leak"] < ENCODER_MIN_LEAK],
        "multi-head": [
            k
            for k, v in lib.items()
            if not (
                v["real_heads"] > 1
                and v["heads_in_forward"] == v["real_heads"]
                and v["head_difference"] > tol
            )
        ],
    }
    return {
        "encoders": sorted(enc),
        "decoders": sorted(dec),
        "fails": fails,
        "holds": {part: not models for part, models in fails.items()},
    }


def _bench_text(metrics: Mapping[str, Any]) -> Msg:
    dec, enc = _leaks(_kind(metrics, True)), _leaks(_kind(metrics, False))
    if not dec or not enc:
        return empty()
    return Msg("C10.reason.bench", dec_leak=max(dec), enc_leak=min(enc), runs=len(dec))


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided on the library models (definition check); the bench model is the illustration."""
    out = VerdictOf(Kind.DEFINITION, Msg("C10.primary"))
    if not metrics.get("library"):
        return out.branch(Label.INCONCLUSIVE, "C10.verdict.library_off", bench=_bench_text(metrics))
    parts = library_parts(metrics)
    lib = metrics["library"]
    heads = [f"{v['real_model']} {v['real_heads']}" for k, v in lib.items() if not k.startswith("T5 d")]
    leaks_dec = max(lib[k]["relative_leak"] for k in parts["decoders"]) if parts["decoders"] else float("nan")
    leaks_enc = min(lib[k]["relative_leak"] for k in parts["encoders"]) if parts["encoders"] else float("nan")
    numbers = Msg(
        "C10.reason.numbers",
        dec_leak=leaks_dec,
        decoders=parts["decoders"],
        enc_leak=leaks_enc,
        encoders=parts["encoders"],
        heads=heads,
    )
    holds, fails = parts["holds"], parts["fails"]
    failed = [
        Msg("C10.reason.fails", part=Msg(PARTS[part]), models=models)
        for part, models in fails.items()
        if models
    ]
    params: dict[str, Any] = {"numbers": numbers, "failed": failed, "bench": _bench_text(metrics)}
    if all(holds.values()):
        return out.branch(Label.SUPPORTED, "C10.verdict.supported", **params)
    if not holds["decoders masked"] and not holds["encoders bidirectional"]:
        return out.branch(Label.NOT_SUPPORTED, "C10.verdict.not_supported", **params)
    return out.branch(Label.PARTLY, "C10.verdict.partly", **params)


def _literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    tol = float(metrics["leak_tolerance"])
    dec, enc = _leaks(_kind(metrics, True)), _leaks(_kind(metrics, False))
    checks = [
        LiteratureCheck(
            "Vaswani et al. 2017, sections 3.1 and 3.2.3",
            Msg("C10.literature.mask.finding"),
            (max(dec) <= tol and min(enc) >= ENCODER_MIN_LEAK) if dec and enc else None,
            Msg("C10.literature.mask.note", dec_leak=max(dec), enc_leak=min(enc))
            if dec and enc
            else Msg("C10.literature.mask.no_runs"),
        )
    ]
    lib = metrics.get("library")
    if lib:
        bert, gpt2 = lib["BERT"]["relative_leak"], lib["GPT-2"]["relative_leak"]
        checks.append(
            LiteratureCheck(
                "Devlin et al. 2019 (BERT, bidirectional encoder); Radford et al. 2019 (GPT-2, causal decoder), "
                "as implemented in transformers",
                Msg("C10.literature.bert_gpt2.finding"),
                bool(gpt2 <= tol and bert >= ENCODER_MIN_LEAK),
                Msg("C10.literature.bert_gpt2.note", gpt2=gpt2, bert=bert),
            )
        )
        multi = library_parts(metrics)["holds"]["multi-head"]
        checks.append(
            LiteratureCheck(
                "Vaswani et al. 2017, section 3.2.2 (multi-head attention)",
                Msg("C10.literature.multi_head.finding"),
                bool(multi),
                Msg(
                    "C10.literature.multi_head.note",
                    heads=[f"{k} {v['heads_in_forward']}" for k, v in lib.items()],
                ),
            )
        )
    return checks
