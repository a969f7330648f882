"""C10 — encoders use (bidirectional) multi-head self-attention; decoders use masked multi-head
self-attention.

The difference is one mask, and what it buys can be measured directly: in a decoder, the output at
position i must not depend on any token after i (that is what lets it be trained on next-token
prediction and generate left to right); in an encoder every position may read every other. The
causality test: change one token at position p and measure how much the outputs at positions < p
move. The same architecture is built twice from the same seed, once with the causal mask
(decoder) and once without (encoder), and tested at initialisation and after brief training on
the corpus; tiny BERT (encoder) and GPT-2 (decoder) models built from transformers configs are put
through the same test as a cross-check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, Spread, Verdict

CLAIM_ID = "C10"
KINDS = {"decoder (causal mask)": True, "encoder (no mask)": False}
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


def library_check(seq_len: int, vocab_size: int, positions: Sequence[int], seed: int) -> dict[str, Any]:
    """Tiny BERT (bidirectional encoder) and GPT-2 (causal decoder) from transformers configs, random
    weights, through the same causality test on random ids."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    size = {"hidden": 32, "heads": 2, "layers": 2}
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=vocab_size,
            hidden_size=size["hidden"],
            num_attention_heads=size["heads"],
            num_hidden_layers=size["layers"],
            intermediate_size=4 * size["hidden"],
            max_position_embeddings=max(64, seq_len),
            attn_implementation="eager",
        )
    ).eval()
    gpt2 = transformers.GPT2Model(
        transformers.GPT2Config(
            vocab_size=vocab_size,
            n_embd=size["hidden"],
            n_head=size["heads"],
            n_layer=size["layers"],
            n_positions=max(64, seq_len),
            attn_implementation="eager",
        )
    ).eval()
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (4, seq_len), generator=gen)
    out = {}
    for name, model in (("BERT (encoder)", bert), ("GPT-2 (decoder)", gpt2)):

        def forward(x: torch.Tensor, m: torch.nn.Module = model) -> torch.Tensor:
            return m(input_ids=x).last_hidden_state

        prof = causality_profile(forward, ids, positions, vocab_size, gen)
        out[name] = {k: prof[k] for k in ("earlier_max_abs", "later_mean_abs", "relative_leak")}
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
    for kind, g in frame.groupby("kind"):
        metrics["by_kind"][kind] = {
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
        metrics["by_kind"][kind]["causal_mask"] = KINDS[str(kind)]
    skipped: list[str] = []
    literature = []
    if s.get("library_check", True):
        lib = library_check(32, 100, perturbation_positions(32, int(s["positions"])), ctx.seeds[0])
        metrics["library"] = lib
    else:
        skipped.append("library cross-check (BERT/GPT-2 from transformers configs) turned off in the config")
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
    tables = [
        Table.from_records(
            "causality",
            "Change one token at position p; how much do the logits "
            "move before p (must be 0 for a decoder) and at/after p? Mean ± std over "
            "seeds; relative leak = max change before p / mean change at and after p.",
            table,
        )
    ]
    if "library" in metrics:
        tables.append(
            Table.from_records(
                "library",
                "The same test on tiny transformers models (random weights, built from configs).",
                [
                    {"model": k, **{kk: f"{vv:.2e}" for kk, vv in v.items()}}
                    for k, v in metrics["library"].items()
                ],
            )
        )
    return Evidence(
        method=(
            "The bench transformer is built twice from the same seed, once with the causal mask (a decoder) "
            "and once without (an encoder). For validation windows of the corpus, one token at a time is "
            "replaced by a different one and the change of the logits at every position is measured, at "
            f"initialisation and after {steps} steps of next-token training; a decoder must not move at "
            "any position before the changed one. The attention maps show the same thing as weight above "
            "the diagonal."
        ),
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
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=frame, x="offset", y="delta", hue="kind", style="stage", errorbar="sd", ax=ax)
    ax.set_yscale("symlog", linthresh=tol)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.0e}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axvline(0, color="grey", ls=":", lw=1)
    ax.set_xlabel("position relative to the changed token, j − p (tokens)")
    ax.set_ylabel("mean max |Δ logit| at position j (logit units)")
    return plotting.save(
        fig,
        ctx.outdir,
        "change_by_offset",
        "Does a later token change earlier outputs?",
        "One token at position p is replaced; the curve is the change of the logits at "
        "position j, averaged over windows, positions p and seeds (band: ±1 std over "
        "seeds). Left of the dotted line the decoder stays at exactly 0; the encoder does "
        "not. The y axis is linear below the leak tolerance and logarithmic above.",
    )


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
    return plotting.save(
        fig,
        ctx.outdir,
        "attention_maps",
        "Masked vs unmasked self-attention",
        "First-layer attention weights (mean over heads) of one validation window, first "
        "seed, after training: the decoder's are lower-triangular (no weight on later "
        "tokens); the encoder's fill the whole square.",
    )


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
    gap = "; ".join(f"{kind}: {v:.3f}" for kind, v in final.items())
    return plotting.save(
        fig,
        ctx.outdir,
        "training_curves",
        "Next-token training, with and without the mask",
        "Both models trained on next-token prediction (band: ±1 std over seeds). Without the "
        "mask the token to predict is visible in the input, so the encoder may learn to copy "
        f"it instead of predicting it; final validation loss (nats/token, mean) {gap}.",
    )


# --------------------------------------------------------------------------- verdict


def _kind(metrics: Mapping[str, Any], causal: bool) -> Mapping[str, Any]:
    for k in metrics["by_kind"].values():
        if k.get("causal_mask") is causal:
            return k
    raise KeyError(f"no {'decoder' if causal else 'encoder'} results in the metrics")


def _leaks(kind: Mapping[str, Any]) -> list[float]:
    return [float(v) for stage, m in kind.items() if isinstance(m, dict) for v in m["relative_leak"]]


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    tol = float(metrics["leak_tolerance"])
    dec, enc = _leaks(_kind(metrics, True)), _leaks(_kind(metrics, False))
    if int(metrics["n_seeds"]) < 2 or not dec or not enc:
        return Verdict(Label.INCONCLUSIVE, f"Only {metrics['n_seeds']} seed(s): the test needs at least 2.")
    decoder_causal = max(dec) <= tol
    encoder_sees = min(enc) >= ENCODER_MIN_LEAK
    numbers = (
        f"changing a token moved earlier outputs by at most {max(dec):.1e} (relative) in the masked "
        f"decoder and by at least {min(enc):.2g} in the unmasked encoder, over {len(dec)} runs"
    )
    if decoder_causal and encoder_sees:
        return Verdict(Label.SUPPORTED, f"The mask is the difference: {numbers}.")
    if not decoder_causal and not encoder_sees:
        return Verdict(Label.NOT_SUPPORTED, f"Neither behaves as claimed: {numbers}.")
    which = "the decoder leaks the future" if not decoder_causal else "the encoder does not read the future"
    return Verdict(Label.PARTLY, f"Only half holds ({which}): {numbers}.")


def _literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    tol = float(metrics["leak_tolerance"])
    dec, enc = _leaks(_kind(metrics, True)), _leaks(_kind(metrics, False))
    checks = [
        LiteratureCheck(
            "Vaswani et al. 2017, sections 3.1 and 3.2.3",
            "The decoder's self-attention masks out (sets to −∞) every connection to later positions, so the "
            "prediction for position i depends only on outputs before i; the encoder's self-attention has no mask.",
            (max(dec) <= tol and min(enc) >= ENCODER_MIN_LEAK) if dec and enc else None,
            f"Largest relative leak in the decoder {max(dec):.1e}; smallest in the encoder {min(enc):.2g}."
            if dec and enc
            else "no runs",
        )
    ]
    lib = metrics.get("library")
    if lib:
        bert, gpt2 = lib["BERT (encoder)"]["relative_leak"], lib["GPT-2 (decoder)"]["relative_leak"]
        checks.append(
            LiteratureCheck(
                "Devlin et al. 2019 (BERT, bidirectional encoder); Radford et al. 2019 (GPT-2, causal decoder), "
                "as implemented in transformers",
                "BERT's self-attention is bidirectional; GPT-2's is causal.",
                bool(gpt2 <= tol and bert >= ENCODER_MIN_LEAK),
                f"Relative leak: GPT-2 {gpt2:.1e}, BERT {bert:.2g} (random weights, built from configs).",
            )
        )
    return checks
