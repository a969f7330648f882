"""C11 — decoders have cross-attention, "which uses the encoder output as query and key".

In the transformer of Vaswani et al. (2017, 3.2.3) the cross-attention ("encoder-decoder
attention") takes its queries from the decoder's previous layer and its keys *and values* from
the encoder output. The notes put the encoder output on the query side. Three pieces of evidence:

1. **Definition check (decides the label).** T5 and BART, built from their transformers configs
   (random weights), with hooks on their cross-attention's W_q, W_k, W_v: which tensor enters each
   (shapes, identity with the encoder output, and which input change moves it). GPT-2, a
   decoder-only model, is checked for cross-attention too.
2. **The notes' wiring, built and trained.** Queries and keys from the encoder output leave the
   values to the decoder (``_c11_wiring.NotesCrossAttention``, same parameters as the standard
   module). With a source and a target of different lengths its score matrix has the source's
   length on both axes and the forward pass fails where the weights meet the values; with equal
   lengths it runs, and it is trained on the same reversal task as the standard wiring, seed by
   seed from the same initial weights and batches, and compared on held-out token accuracy
   (paired over seeds).
3. **Our model, as illustration.** In the trained standard encoder–decoder, noise on the encoder
   output moves K, V (and the first layer's Q not at all); noise on the decoder input moves Q but
   never K or V; switching the cross-attention off shows that the decoder uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from matplotlib.ticker import FuncFormatter, NullFormatter
from torch import Tensor, nn

from whylab import plotting
from whylab.bench.model import BenchConfig, EncoderDecoder, MultiHeadAttention
from whylab.bench.train import LossFn, TrainSettings, train_lm
from whylab.concepts import ConceptContext
from whylab.concepts import _c11_wiring as wiring
from whylab.errors import InputError
from whylab.messages import Msg, empty
from whylab.results import Evidence, FigureRef, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf, effect, equivalent, paired_test

CLAIM_ID = "C11"
TOLERANCE = 1e-6  # relative change below this = unchanged (float round-off)
EFFECT = 1e-3  # relative change above this = clearly moved
PARTS = ("Q", "K", "V", "weights")
INTERVENTIONS = {"memory": "noise on the encoder output", "decoder": "noise on the decoder input"}
WIRINGS = {
    "standard": "standard (Q from the decoder; K, V from the encoder)",
    "notes": "the notes' (Q, K from the encoder; V from the decoder)",
}


# --------------------------------------------------------------------------- the task


@dataclass(frozen=True)
class SequenceTask:
    """Source: ``length`` random symbols. Target: the source reversed (or copied), then EOS when
    ``eos`` (the target side is then one token longer than the source; without it, equally long).

    Decoder input = BOS + target[:-1]. Ids: symbols 0..symbols-1, BOS = symbols, EOS = symbols + 1
    (one vocabulary for both sides).
    """

    length: int
    symbols: int
    reverse: bool = True
    eos: bool = True

    @property
    def bos(self) -> int:
        return self.symbols

    @property
    def eos_id(self) -> int:
        return self.symbols + 1

    @property
    def vocab_size(self) -> int:
        return self.symbols + 2

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        src = torch.randint(0, self.symbols, (n, self.length), generator=generator)
        target = src.flip(1) if self.reverse else src
        if self.eos:
            target = torch.cat([target, torch.full((n, 1), self.eos_id)], dim=1)
        return src, target

    def decoder_input(self, target: Tensor) -> Tensor:
        return torch.cat([torch.full_like(target[:, :1], self.bos), target[:, :-1]], dim=1)

    def source_position(self, t: int) -> int:
        """The source position target position t must read (t < length)."""
        return self.length - 1 - t if self.reverse else t


def make_loss(task: SequenceTask) -> LossFn:
    def loss(model: nn.Module, src: Tensor, target: Tensor) -> Tensor:
        logits = model(src, task.decoder_input(target)).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

    return loss


@torch.no_grad()
def accuracy(model: EncoderDecoder, task: SequenceTask, src: Tensor, target: Tensor) -> dict[str, float]:
    """Teacher-forced token accuracy and greedy exact-sequence accuracy.

    Greedy decoding feeds a full-length decoder input (predictions so far, then BOS as filler) and
    reads position t: causal self-attention (and, in the notes' wiring, the causal mask over the
    value positions) keeps the filler from reaching position t, and the notes' wiring, which
    cannot take a decoder input shorter than the source, can decode too.
    """
    model.eval()
    logits = model(src, task.decoder_input(target)).logits
    token = float((logits.argmax(-1) == target).float().mean())
    memory = model.encode(src)
    dec_in = torch.full_like(target, task.bos)
    pred = torch.empty_like(target)
    for t in range(target.shape[1]):
        pred[:, t] = model.decode(dec_in, memory).logits[:, t].argmax(-1)
        if t + 1 < target.shape[1]:
            dec_in[:, t + 1] = pred[:, t]
    exact = float((pred == target).all(dim=1).float().mean())
    return {"token_accuracy": token, "sequence_accuracy": exact}


def _cross_attentions(model: EncoderDecoder) -> list[nn.Module]:
    out = []
    for block in model.decoder_blocks:
        attn = getattr(block, "cross_attn", None)
        if not isinstance(attn, nn.Module):
            raise ValueError("every decoder block needs a cross-attention")
        out.append(attn)
    return out


@contextmanager
def cross_attention_off(model: EncoderDecoder) -> Iterator[None]:
    """Replace every cross-attention output by zeros (the decoder then sees no source at all)."""

    def zero(m: nn.Module, i: Any, out: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
        return torch.zeros_like(out[0]), out[1]

    handles = [attn.register_forward_hook(zero) for attn in _cross_attentions(model)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- Q, K, V by shapes and by intervention


@contextmanager
def capture_qkv(model: EncoderDecoder) -> Iterator[dict[str, list[Any]]]:
    """Record the inputs' shapes and the outputs of W_q, W_k, W_v of every cross-attention."""
    seen: dict[str, list[Any]] = {"Q": [], "K": [], "V": [], "Q_in": [], "K_in": [], "V_in": []}
    handles = []
    for attn in _cross_attentions(model):
        if not isinstance(attn, (MultiHeadAttention, wiring.NotesCrossAttention)):
            raise ValueError(f"unknown cross-attention module {type(attn).__name__}")
        for part, proj in (("Q", attn.q_proj), ("K", attn.k_proj), ("V", attn.v_proj)):
            if proj is None:
                raise InputError("C11 needs the standard projections (qk_proj and v_proj on)")

            def hook(mod: nn.Module, inp: tuple[Tensor, ...], out: Tensor, part: str = part) -> None:
                seen[part].append(out.detach().clone())
                seen[f"{part}_in"].append(list(inp[0].shape))

            handles.append(proj.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _relative(a: Tensor, b: Tensor) -> float:
    return float((b - a).norm() / a.norm().clamp_min(1e-12))


def _rows_tv(a: Tensor, b: Tensor) -> float:
    """Mean total-variation distance between corresponding attention rows (0 = same, 1 = disjoint)."""
    return float(0.5 * (b - a).abs().sum(-1).mean())


@torch.no_grad()
def interventions(
    model: EncoderDecoder,
    task: SequenceTask,
    src: Tensor,
    target: Tensor,
    noise: float,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Perturb the memory, then the decoder input; relative change of Q, K, V and the weights per layer.

    The shapes are read on a decoder input two tokens shorter than the source, so the side each
    projection reads shows in its input's length."""
    model.eval()
    tgt_in = task.decoder_input(target)
    memory = model.encode(src)

    def decode(mem: Tensor, embed_noise: Tensor | None) -> tuple[dict[str, list[Any]], list[Tensor]]:
        handle = None
        if embed_noise is not None:  # the decoder's input: token embeddings, before position is added
            handle = model.tgt_embedding.register_forward_hook(lambda m, i, out: out + embed_noise)
        try:
            with capture_qkv(model) as seen:
                out = model.decode(tgt_in, mem, return_attention=True)
        finally:
            if handle is not None:
                handle.remove()
        assert out.cross_attentions is not None
        return seen, out.cross_attentions

    base, base_w = decode(memory, None)
    mem_noise = torch.randn(memory.shape, generator=generator) * memory.pow(2).mean().sqrt() * noise
    emb = model.tgt_embedding(tgt_in)
    emb_noise = torch.randn(emb.shape, generator=generator) * emb.pow(2).mean().sqrt() * noise
    runs = {"memory": decode(memory + mem_noise, None), "decoder": decode(memory, emb_noise)}
    changes: dict[str, dict[str, list[float]]] = {}
    for name, (seen, weights) in runs.items():
        changes[name] = {
            part: [_relative(a, b) for a, b in zip(base[part], seen[part], strict=True)]
            for part in ("Q", "K", "V")
        }
        changes[name]["weights"] = [_rows_tv(a, b) for a, b in zip(base_w, weights, strict=True)]
    short = max(1, src.shape[1] - 2)
    with capture_qkv(model) as seen_short:
        model.decode(tgt_in[:, :short], memory)
    shapes = {
        "q_input": seen_short["Q_in"][0],
        "k_input": seen_short["K_in"][0],
        "v_input": seen_short["V_in"][0],
        "source_length": int(src.shape[1]),
        "target_length": short,
    }
    return {"changes": changes, "shapes": shapes, "weights": [w.cpu() for w in base_w]}


def alignment(weights: Sequence[Tensor], task: SequenceTask) -> list[float]:
    """Per layer: mean weight (over heads, examples, target positions) on the source position that
    target position t must read; 1/length is what a uniform spread gives."""
    out = []
    for w in weights:  # (B, H, T, S)
        m = w.mean(dim=(0, 1))
        out.append(float(np.mean([float(m[t, task.source_position(t)]) for t in range(task.length)])))
    return out


# --------------------------------------------------------------------------- one seed


def notes_ceiling(task: SequenceTask) -> float:
    """The best token accuracy the notes' wiring can reach: its values come from the decoder, so the
    source reaches the output only through the weights over decoder positions ≤ t; at t = 0 there is
    one position, the weights carry nothing, and that position is at chance."""
    return 1.0 - (1.0 - 1.0 / task.symbols) / task.length


def task_of(s: Mapping[str, Any], eos: bool = False) -> SequenceTask:
    """The trained task has equal source and target lengths (no EOS), so both wirings can run."""
    return SequenceTask(int(s["length"]), int(s["symbols"]), reverse=s["task"] == "reverse", eos=eos)


def config_of(s: Mapping[str, Any], task: SequenceTask) -> BenchConfig:
    return BenchConfig(
        vocab_size=task.vocab_size,
        d_model=int(s["d_model"]),
        n_heads=int(s["n_heads"]),
        n_layers=int(s["n_layers"]),
        max_len=task.length + 2,
    )


def build(s: Mapping[str, Any], task: SequenceTask, seed: int, notes: bool) -> EncoderDecoder:
    """The encoder–decoder of ``seed``; both wirings get the same initial weights."""
    torch.manual_seed(seed)
    model = EncoderDecoder(config_of(s, task))
    return wiring.use_notes_wiring(model) if notes else model


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """Train both wirings from the same initial weights on the same batches; measure each."""
    s = ctx.settings
    task = task_of(s)
    eval_src, eval_tgt = task.sample(int(s["eval_size"]), torch.Generator().manual_seed(10_000))
    steps = int(s["steps"])
    settings = TrainSettings(
        steps=steps,
        batch_size=int(s["batch_size"]),
        lr=float(s["lr"]),
        eval_every=max(1, steps // 8),
        seed=seed,
    )

    def batch(step: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return task.sample(settings.batch_size, gen)

    out: dict[str, Any] = {"seed": seed}
    for name in WIRINGS:
        model = build(s, task, seed, notes=name == "notes").to(ctx.device)
        hist = train_lm(
            model,
            None,
            (eval_src, eval_tgt),
            settings,
            device=ctx.device,
            loss_fn=make_loss(task),
            batch_fn=batch,
        )
        model.cpu()
        arm: dict[str, Any] = {
            **accuracy(model, task, eval_src, eval_tgt),
            "final_eval_loss": hist.final_eval_loss,
            "diverged": hist.diverged,
            "eval_steps": hist.eval_steps,
            "eval_loss": hist.eval_loss,
        }
        if name == "standard":
            with cross_attention_off(model):
                arm["token_accuracy_cross_off"] = accuracy(model, task, eval_src, eval_tgt)["token_accuracy"]
            res = interventions(
                model, task, eval_src, eval_tgt, float(s["noise"]), torch.Generator().manual_seed(seed + 77)
            )
            arm["changes"] = res["changes"]
            arm["shapes"] = res["shapes"]
            arm["alignment"] = alignment(res["weights"], task)
            # first held-out example, mean over heads, per layer (for the figure)
            arm["example_maps"] = [w[0].mean(0).tolist() for w in res["weights"]]
        out[name] = arm
    out["example_source"] = eval_src[0].tolist()
    return out


# --------------------------------------------------------------------------- combine


def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    s = ctx.settings
    task = task_of(s)
    seeds = [int(r["seed"]) for r in per_seed]
    std = [r["standard"] for r in per_seed]
    notes = [r["notes"] for r in per_seed]
    acc_std = [float(a["token_accuracy"]) for a in std]
    acc_notes = [float(a["token_accuracy"]) for a in notes]
    test = paired_test(acc_std, acc_notes)

    # the notes' wiring on a source and a target of different lengths (the task with EOS)
    long_task = task_of(s, eos=True)
    src, tgt = long_task.sample(4, torch.Generator().manual_seed(1))
    unequal = wiring.failure_at_unequal_lengths(
        build(s, long_task, seeds[0], notes=True), src, long_task.decoder_input(tgt)
    )

    skipped: list[str] = []
    library: list[dict[str, Any]] = []
    if s.get("library_check", True):
        library = [wiring.library_roles(lib, seeds[0]) for lib in wiring.library_models()]
    else:
        skipped.append(Msg("C11.skipped.library_check"))

    changes = pd.DataFrame(
        [
            {"seed": r["seed"], "intervention": name, "part": part, "layer": layer + 1, "relative_change": v}
            for r in per_seed
            for name, parts in r["standard"]["changes"].items()
            for part, values in parts.items()
            for layer, v in enumerate(values)
        ]
    )
    metrics: dict[str, Any] = {
        "task": s["task"],
        "length": task.length,
        "symbols": task.symbols,
        "n_seeds": len(seeds),
        "steps": int(s["steps"]),
        "min_accuracy": float(s["min_accuracy"]),
        "min_effect": float(s["min_effect"]),
        "chance_accuracy": 1.0 / task.symbols,
        # the notes' wiring can pass the source only through its attention weights; at the first
        # target position there is one value to weigh, so that position stays at chance
        "notes_ceiling": notes_ceiling(task),
        "token_accuracy": {"standard": acc_std, "notes": acc_notes},
        "sequence_accuracy": {
            "standard": [float(a["sequence_accuracy"]) for a in std],
            "notes": [float(a["sequence_accuracy"]) for a in notes],
        },
        "diverged": {
            "standard": sum(bool(a["diverged"]) for a in std),
            "notes": sum(bool(a["diverged"]) for a in notes),
        },
        "paired_standard_minus_notes": test.to_dict(),
        "token_accuracy_cross_off": [float(a["token_accuracy_cross_off"]) for a in std],
        "alignment": [a["alignment"] for a in std],
        "alignment_chance": 1.0 / task.length,
        "shapes": std[0]["shapes"],
        "changes": {
            name: {
                part: [
                    [float(v) for v in g.sort_values("layer")["relative_change"]]
                    for _, g in gp.groupby("seed")
                ]
                for part, gp in gi.groupby("part")
            }
            for name, gi in changes.groupby("intervention")
        },
        "unequal_lengths": unequal,
        "library": library,
    }
    figures = [
        _figure_accuracy(ctx, metrics),
        _figure_maps(
            ctx, [np.asarray(m) for m in std[0]["example_maps"]], per_seed[0]["example_source"], task
        ),
        _figure_interventions(ctx, changes),
        _figure_curves(ctx, per_seed),
    ]
    return Evidence(
        method=Msg(
            "C11.method",
            layers=int(s["n_layers"]),
            width=int(s["d_model"]),
            task=_task_term(s["task"], "task"),
            length=task.length,
            steps=int(s["steps"]),
            seeds=len(seeds),
        ),
        metrics=metrics,
        seeds=seeds,
        tables=_tables(metrics, changes, len(seeds), float(s["noise"])),
        figures=figures,
        literature=_literature(metrics),
        skipped=skipped,
    )


def _task_term(task: str, term: str) -> Msg:
    """The task's name in a sentence: ``term`` is "task" (reverse / copy), "example" (reversal /
    copy) or "diagonal" (the anti-diagonal / the diagonal)."""
    return Msg(f"C11.term.{term}.{'reverse' if task == 'reverse' else 'copy'}")


def _tables(metrics: Mapping[str, Any], changes: pd.DataFrame, n_seeds: int, noise: float) -> list[Table]:
    test = metrics["paired_standard_minus_notes"]
    tables = [
        Table.from_records(
            "library_roles",
            Msg(
                "C11.table.library_roles.caption",
                source=metrics["library"][0]["source_length"] if metrics["library"] else "–",
            ),
            [_library_row(r) for r in metrics["library"]],
        )
        if metrics["library"]
        else None,
        Table.from_records(
            "wirings",
            Msg("C11.table.wirings.caption", mean_diff=test["mean_diff"], ci=_ci(test)),
            [
                {
                    "seed": seed,
                    "token accuracy, standard": round(a, 4),
                    "token accuracy, notes' wiring": round(b, 4),
                    "sequence accuracy, standard": round(c, 4),
                    "sequence accuracy, notes' wiring": round(d, 4),
                    "token accuracy, standard with cross-attention off": round(e, 4),
                }
                for seed, a, b, c, d, e in zip(
                    range(n_seeds),
                    metrics["token_accuracy"]["standard"],
                    metrics["token_accuracy"]["notes"],
                    metrics["sequence_accuracy"]["standard"],
                    metrics["sequence_accuracy"]["notes"],
                    metrics["token_accuracy_cross_off"],
                    strict=True,
                )
            ],
        ),
        Table.from_records(
            "unequal_lengths",
            Msg("C11.table.unequal_lengths.caption"),
            [
                {
                    "source length": metrics["unequal_lengths"]["source_length"],
                    "target length": metrics["unequal_lengths"]["target_length"],
                    "runs": "yes" if metrics["unequal_lengths"]["runs"] else "no",
                    "error": metrics["unequal_lengths"]["error"],
                    "where": metrics["unequal_lengths"]["where"],
                }
            ],
        ),
    ]
    summary = (
        changes.groupby(["intervention", "layer", "part"])["relative_change"]
        .agg(["mean", "std", "max"])
        .reset_index()
    )
    shapes = metrics["shapes"]
    tables += [
        Table.from_records(
            "interventions",
            Msg("C11.table.interventions.caption", seeds=n_seeds, noise=noise),
            [
                {
                    "intervention": INTERVENTIONS[str(r["intervention"])],
                    "layer": int(r["layer"]),
                    "part": r["part"],
                    "mean": f"{r['mean']:.3g}",
                    "std": "" if pd.isna(r["std"]) else f"{r['std']:.2g}",
                    "max": f"{r['max']:.3g}",
                }
                for r in summary.to_dict("records")
            ],
        ),
        Table.from_records(
            "shapes",
            Msg("C11.table.shapes.caption"),
            [
                {"projection": "W_q (query)", "input shape": str(shapes["q_input"])},
                {"projection": "W_k (key)", "input shape": str(shapes["k_input"])},
                {"projection": "W_v (value)", "input shape": str(shapes["v_input"])},
                {
                    "projection": "source / decoder input length",
                    "input shape": f"{shapes['source_length']} / {shapes['target_length']}",
                },
            ],
        ),
    ]
    return [t for t in tables if t is not None]


def _library_row(r: Mapping[str, Any]) -> dict[str, Any]:
    def num(v: Any) -> str:
        return "–" if v is None else f"{float(v):.2g}"

    row: dict[str, Any] = {
        "model": r["model"],
        "decoder layers with cross-attention": f"{r['cross_attention_layers']}/{r['decoder_layers']}",
    }
    if r["cross_attention_layers"]:
        for p in ("q", "k", "v"):
            row[f"W_{p} input length"] = r[f"{p}_input_length"]
            row[f"W_{p} vs encoder output"] = num(r[f"{p}_vs_encoder_output"])
            row[f"W_{p} moved by source / decoder"] = (
                f"{num(r[f'{p}_moved_by_source'])} / {num(r[f'{p}_moved_by_decoder'])}"
            )
    return row


def _ci(test: Mapping[str, Any]) -> Msg:
    if test.get("ci_low") is None:
        return Msg("C11.reason.ci_none")
    return Msg("C11.reason.ci", low=test["ci_low"], high=test["ci_high"])


# --------------------------------------------------------------------------- figures


def _figure_accuracy(ctx: ConceptContext, metrics: Mapping[str, Any]) -> FigureRef:
    rows = [
        {"wiring": WIRINGS[name].split(" (")[0], "seed": i, "measure": measure, "accuracy": v}
        for measure, key in (
            ("token (teacher-forced)", "token_accuracy"),
            ("whole sequence (greedy)", "sequence_accuracy"),
        )
        for name in WIRINGS
        for i, v in enumerate(metrics[key][name])
    ]
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True, layout="constrained")
    for ax, (measure, g) in zip(axes, frame.groupby("measure", sort=False), strict=True):
        for _, pair in g.groupby("seed"):
            ax.plot(pair["wiring"], pair["accuracy"], color="grey", lw=1, alpha=0.7)
        sns.stripplot(
            data=g, x="wiring", y="accuracy", hue="wiring", ax=ax, size=7, jitter=False, legend=False
        )
        ax.axhline(float(metrics["chance_accuracy"]), color="black", ls=":", lw=1)
        if str(measure).startswith("token") and metrics.get("notes_ceiling") is not None:
            ax.axhline(float(metrics["notes_ceiling"]), color="C1", ls="--", lw=1)
        ax.set_title(str(measure))
        ax.set_xlabel("cross-attention wiring")
        ax.set_ylabel("held-out accuracy (fraction)")
        ax.set_ylim(-0.02, 1.05)
    test = metrics["paired_standard_minus_notes"]
    return plotting.save(
        fig,
        ctx.outdir,
        "wirings",
        Msg("C11.figure.wirings.title"),
        Msg(
            "C11.figure.wirings.caption",
            task=_task_term(metrics["task"], "task"),
            symbols=metrics["symbols"],
            mean_diff=test["mean_diff"],
            ci=_ci(test),
            n=test["n"],
        ),
    )


def draw_maps(maps: Sequence[np.ndarray], src: Sequence[int], task: SequenceTask) -> Any:
    """Heatmaps of the cross-attention per decoder layer, tick labels "position: symbol", upright."""
    fig, axes = plt.subplots(
        1, len(maps), figsize=(4.8 * len(maps) + 1, 4.6), squeeze=False, layout="constrained"
    )
    src_labels = [f"{i}: {tok}" for i, tok in enumerate(src)]
    body = list(src)[::-1] if task.reverse else list(src)
    tgt_labels = [f"{t}: {tok}" for t, tok in enumerate(body)]
    for i, (ax, w) in enumerate(zip(axes[0], maps, strict=True)):
        sns.heatmap(
            w,
            ax=ax,
            cmap="viridis",
            vmin=0,
            vmax=1,
            cbar=i == len(maps) - 1,
            cbar_kws={"label": "attention weight (probability)"},
        )
        ax.set_xticks(np.arange(len(src_labels)) + 0.5, src_labels, rotation=90)
        ax.set_yticks(np.arange(len(tgt_labels)) + 0.5, tgt_labels, rotation=0)
        ax.set_title(f"decoder layer {i + 1}")
        ax.set_xlabel("source position: symbol (keys, values)")
        ax.set_ylabel("target position: symbol it predicts (queries)")
    return fig


def _figure_maps(
    ctx: ConceptContext, maps: list[np.ndarray], src: list[int], task: SequenceTask
) -> FigureRef:
    fig = draw_maps(maps, src, task)
    name = "reverse" if task.reverse else "copy"
    return plotting.save(
        fig,
        ctx.outdir,
        "cross_attention_maps",
        Msg("C11.figure.cross_attention_maps.title"),
        Msg(
            "C11.figure.cross_attention_maps.caption",
            example=_task_term(name, "example"),
            diagonal=_task_term(name, "diagonal"),
        ),
    )


def _figure_interventions(ctx: ConceptContext, changes: pd.DataFrame) -> FigureRef:
    frame = changes.assign(
        intervention=changes["intervention"].map(INTERVENTIONS),
        layer=changes["layer"].map(lambda v: f"layer {v}"),
    )
    grid = sns.catplot(
        data=frame,
        x="part",
        y="relative_change",
        hue="intervention",
        col="layer",
        kind="bar",
        errorbar="sd",
        order=list(PARTS),
        height=3.8,
        aspect=1.1,
    )
    grid.set_titles("{col_name}")
    sns.move_legend(grid, "upper center", bbox_to_anchor=(0.5, 0.02), ncol=2, title=None, frameon=False)
    for ax in grid.axes.flat:
        ax.set_yscale("symlog", linthresh=TOLERANCE)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.0e}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("what is measured in the cross-attention")
    grid.axes.flat[0].set_ylabel("relative change (unitless)")
    grid.figure.tight_layout()
    grid.figure.subplots_adjust(top=0.84)  # room for the title
    return plotting.save_figure(grid.figure, ctx.outdir, "C11.figure.interventions")


def _figure_curves(ctx: ConceptContext, per_seed: Sequence[Mapping[str, Any]]) -> FigureRef:
    rows = [
        {"wiring": WIRINGS[name].split(" (")[0], "seed": r["seed"], "step": st, "loss": float(v)}
        for r in per_seed
        for name in WIRINGS
        for st, v in zip(r[name]["eval_steps"], r[name]["eval_loss"], strict=True)
        if v is not None
    ]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.lineplot(data=pd.DataFrame(rows), x="step", y="loss", hue="wiring", errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("held-out loss (nats/token)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), title="wiring", frameon=False)
    return plotting.save_figure(fig, ctx.outdir, "C11.figure.training_curves")


# --------------------------------------------------------------------------- verdict


def _first_layer(m: Mapping[str, Any], intervention: str, part: str) -> list[float]:
    return [float(per_seed[0]) for per_seed in m["changes"][intervention][part]]


def _all_layers(m: Mapping[str, Any], intervention: str, part: str) -> list[float]:
    return [float(v) for per_seed in m["changes"][intervention][part] for v in per_seed]


def sources(m: Mapping[str, Any]) -> dict[str, bool]:
    """Where Q, K and V come from in our trained model (illustration), from the interventions and
    the shapes (read on a decoder input shorter than the source)."""
    sh = m["shapes"]
    q_len, k_len, v_len = sh["q_input"][1], sh["k_input"][1], sh["v_input"][1]
    q_mem, q_dec = _first_layer(m, "memory", "Q"), _first_layer(m, "decoder", "Q")
    out = {
        "q_from_decoder": min(q_dec) > EFFECT and max(q_mem) <= TOLERANCE and q_len == sh["target_length"],
        "q_from_encoder": min(q_mem) > EFFECT or q_len == sh["source_length"] != sh["target_length"],
    }
    for part, length in (("K", k_len), ("V", v_len)):
        moved_by_memory = min(_all_layers(m, "memory", part)) > EFFECT
        moved_by_decoder = max(_all_layers(m, "decoder", part)) > TOLERANCE
        out[f"{part.lower()}_from_encoder"] = (
            moved_by_memory and not moved_by_decoder and length == sh["source_length"]
        )
    return out


def library_verdict_roles(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The roles every library encoder–decoder agrees on (T5, BART), and which models have none."""
    rows = [r for r in metrics["library"] if r["cross_attention_layers"] > 0]
    per_model = {r["model"]: wiring.roles(r) for r in rows}
    agreed = {key: all(v[key] for v in per_model.values()) for key in next(iter(per_model.values()), {})}
    full = [r["model"] for r in rows if r["cross_attention_layers"] == r["decoder_layers"]]
    return {
        "models": sorted(per_model),
        "roles": agreed,
        "every_layer": len(full) == len(rows),
        "without": [r["model"] for r in metrics["library"] if r["cross_attention_layers"] == 0],
    }


def _experiment(metrics: Mapping[str, Any]) -> tuple[Msg, tuple[Msg, ...]]:
    """What the notes' wiring does, in words, and what this run could not judge about it."""
    acc_std, acc_notes = metrics["token_accuracy"]["standard"], metrics["token_accuracy"]["notes"]
    unequal = metrics["unequal_lengths"]
    shape = (
        Msg(
            "C11.reason.shape.fails",
            source=unequal["source_length"],
            target=unequal["target_length"],
            error=unequal["error"].split(":")[0],
            where=unequal["where"].split(":")[0],
        )
        if not unequal["runs"]
        else Msg("C11.reason.shape.runs")
    )
    if min(acc_std) < float(metrics["min_accuracy"]):
        return (
            Msg("C11.reason.experiment.unlearned", shape=shape),
            (
                Msg(
                    "C11.limited.unlearned",
                    accuracy=str(Spread.of(acc_std)),
                    needed=float(metrics["min_accuracy"]),
                ),
            ),
        )
    test = paired_test(acc_std, acc_notes)
    eff = effect(test, float(metrics["min_effect"]))
    numbers = Msg(
        "C11.reason.numbers",
        notes=Spread.of(acc_notes).mean,
        standard=Spread.of(acc_std).mean,
        diff=test.mean_diff,
        ci=_ci(test.to_dict()),
        n=test.n,
    )
    if eff > 0:
        ceiling = metrics.get("notes_ceiling")
        why = Msg("C11.reason.ceiling", ceiling=float(ceiling)) if ceiling is not None else empty()
        return Msg("C11.reason.experiment.worse", shape=shape, numbers=numbers, why=why), ()
    if eff < 0:
        return Msg("C11.reason.experiment.better", shape=shape, numbers=numbers), ()
    if equivalent(test, float(metrics["min_effect"])):
        return Msg("C11.reason.experiment.as_well", shape=shape, numbers=numbers), ()
    return (
        Msg("C11.reason.experiment.unclear", shape=shape, numbers=numbers),
        (Msg("C11.limited.unclear", n=test.n, numbers=numbers),),
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided by the definition check on library encoder–decoders; the trained notes' wiring and
    our own model are reported with it (they do not change the label)."""
    out = VerdictOf(Kind.DEFINITION, Msg("C11.primary"))
    if int(metrics["n_seeds"]) < 2:
        return out.branch(Label.INCONCLUSIVE, "C11.verdict.too_few_seeds", n=metrics["n_seeds"])
    if not metrics["library"]:
        return out.branch(Label.INCONCLUSIVE, "C11.verdict.library_off")
    lib = library_verdict_roles(metrics)
    roles = lib["roles"]
    experiment, limited = _experiment(metrics)
    out.limited.extend(limited)
    scope = Msg("C11.reason.scope", without=lib["without"]) if lib["without"] else empty()
    params: dict[str, Any] = {"names": lib["models"], "experiment": experiment, "scope": scope}
    if not lib["models"] or not lib["every_layer"]:
        return out.branch(Label.NOT_SUPPORTED, "C11.verdict.no_cross_attention", **params)
    if not roles.get("k_from_encoder"):
        return out.branch(Label.NOT_SUPPORTED, "C11.verdict.keys_not_from_encoder", **params)
    if roles.get("q_from_encoder"):
        return out.branch(Label.SUPPORTED, "C11.verdict.queries_from_encoder", **params)
    if roles.get("q_from_decoder"):
        if roles.get("v_from_encoder"):
            return out.branch(Label.PARTLY, "C11.verdict.queries_from_decoder", **params)
        return out.branch(Label.PARTLY, "C11.verdict.queries_from_decoder_values_elsewhere", **params)
    return out.branch(Label.INCONCLUSIVE, "C11.verdict.queries_unread", **params)


def _flag(value: bool) -> Msg:
    return Msg(f"C11.term.flag.{'yes' if value else 'no'}")


def _literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    src = sources(metrics)
    agrees = src["q_from_decoder"] and src["k_from_encoder"] and src["v_from_encoder"]
    align = [max(a) for a in metrics["alignment"]]
    checks = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.3",
            Msg("C11.literature.vaswani.finding"),
            bool(agrees),
            Msg(
                "C11.literature.vaswani.note",
                q=_flag(src["q_from_decoder"]),
                k=_flag(src["k_from_encoder"]),
                v=_flag(src["v_from_encoder"]),
            ),
        ),
        LiteratureCheck(
            "Bahdanau et al. 2015 (attention as soft alignment)",
            Msg("C11.literature.bahdanau.finding"),
            bool(min(align) > 2 * float(metrics["alignment_chance"])) if align else None,
            Msg(
                "C11.literature.bahdanau.note",
                spread=str(Spread.of(align)),
                chance=float(metrics["alignment_chance"]),
            )
            if align
            else empty(),
        ),
    ]
    return checks
