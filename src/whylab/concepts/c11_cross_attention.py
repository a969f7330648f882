"""C11 — decoders have cross-attention, "which uses the encoder output as query and key".

In the transformer of Vaswani et al. (2017, 3.2.3) the cross-attention ("encoder-decoder
attention") takes its queries from the decoder's previous layer and its keys *and values* from
the encoder output. The notes put the encoder output on the query side. Where each of Q, K and
V comes from can be read off a trained model in two ways:

- shapes: the input of W_q has the target's length, the inputs of W_k and W_v the source's
  (the task below makes the two lengths differ);
- interventions: add noise to the encoder output (the memory) and see which of Q, K, V and the
  attention weights move; then add noise to the decoder's input and look again.

The model is a small encoder–decoder trained to reverse (or copy) a random symbol sequence, a
task that can only be solved by reading the source through cross-attention; switching the
cross-attention off shows that it is used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
from torch import Tensor

from whylab import plotting
from whylab.bench.model import BenchConfig, EncoderDecoder
from whylab.bench.train import TrainSettings, train_lm
from whylab.concepts import ConceptContext
from whylab.errors import InputError
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, Spread, Verdict

CLAIM_ID = "C11"
TOLERANCE = 1e-6  # relative change below this = unchanged (float round-off)
EFFECT = 1e-3  # relative change above this = clearly moved
PARTS = ("Q", "K", "V", "weights")
INTERVENTIONS = {"memory": "noise on the encoder output", "decoder": "noise on the decoder input"}


# --------------------------------------------------------------------------- the task


@dataclass(frozen=True)
class SequenceTask:
    """Source: ``length`` random symbols. Target: the source reversed (or copied), then EOS.

    Decoder input = BOS + target[:-1], so the target side is one token longer than the source.
    Ids: symbols 0..symbols-1, BOS = symbols, EOS = symbols + 1 (one vocabulary for both sides).
    """

    length: int
    symbols: int
    reverse: bool = True

    @property
    def bos(self) -> int:
        return self.symbols

    @property
    def eos(self) -> int:
        return self.symbols + 1

    @property
    def vocab_size(self) -> int:
        return self.symbols + 2

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        src = torch.randint(0, self.symbols, (n, self.length), generator=generator)
        body = src.flip(1) if self.reverse else src
        target = torch.cat([body, torch.full((n, 1), self.eos)], dim=1)
        return src, target

    def decoder_input(self, target: Tensor) -> Tensor:
        return torch.cat([torch.full_like(target[:, :1], self.bos), target[:, :-1]], dim=1)

    def source_position(self, t: int) -> int:
        """The source position target position t must read (t < length)."""
        return self.length - 1 - t if self.reverse else t


def make_loss(task: SequenceTask):  # type: ignore[no-untyped-def]
    def loss(model: EncoderDecoder, src: Tensor, target: Tensor) -> Tensor:
        logits = model(src, task.decoder_input(target)).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

    return loss


@torch.no_grad()
def accuracy(model: EncoderDecoder, task: SequenceTask, src: Tensor, target: Tensor) -> dict[str, float]:
    """Teacher-forced token accuracy and greedy exact-sequence accuracy."""
    model.eval()
    logits = model(src, task.decoder_input(target)).logits
    token = float((logits.argmax(-1) == target).float().mean())
    memory = model.encode(src)
    out = torch.full_like(target[:, :1], task.bos)
    for _ in range(target.shape[1]):
        nxt = model.decode(out, memory).logits[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
    exact = float((out[:, 1:] == target).all(dim=1).float().mean())
    return {"token_accuracy": token, "sequence_accuracy": exact}


@contextmanager
def cross_attention_off(model: EncoderDecoder) -> Iterator[None]:
    """Replace every cross-attention output by zeros (the decoder then sees no source at all)."""
    handles = [
        b.cross_attn.register_forward_hook(lambda m, i, out: (torch.zeros_like(out[0]), out[1]))
        for b in model.decoder_blocks
        if b.cross_attn is not None
    ]
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
    for block in model.decoder_blocks:
        attn = block.cross_attn
        assert attn is not None
        for part, proj in (("Q", attn.q_proj), ("K", attn.k_proj), ("V", attn.v_proj)):
            if proj is None:
                raise InputError("C11 needs the standard projections (qk_proj and v_proj on)")

            def hook(mod: torch.nn.Module, inp: tuple[Tensor, ...], out: Tensor, part: str = part) -> None:
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
    """Perturb the memory, then the decoder input; relative change of Q, K, V and the weights per layer."""
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
    shapes = {
        "q_input": base["Q_in"][0],
        "k_input": base["K_in"][0],
        "v_input": base["V_in"][0],
        "source_length": int(src.shape[1]),
        "target_length": int(tgt_in.shape[1]),
    }
    return {"changes": changes, "shapes": shapes, "weights": [w.cpu() for w in base_w]}


def alignment(weights: list[Tensor], task: SequenceTask) -> list[float]:
    """Per layer: mean weight (over heads, examples, target positions) on the source position that
    target position t must read; 1/length is what a uniform spread gives."""
    out = []
    for w in weights:  # (B, H, T, S)
        m = w.mean(dim=(0, 1))
        out.append(float(np.mean([float(m[t, task.source_position(t)]) for t in range(task.length)])))
    return out


# --------------------------------------------------------------------------- run


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    task = SequenceTask(int(s["length"]), int(s["symbols"]), reverse=s["task"] == "reverse")
    cfg = BenchConfig(
        vocab_size=task.vocab_size,
        d_model=int(s["d_model"]),
        n_heads=int(s["n_heads"]),
        n_layers=int(s["n_layers"]),
        max_len=task.length + 2,
    )
    eval_src, eval_tgt = task.sample(int(s["eval_size"]), torch.Generator().manual_seed(10_000))
    loss = make_loss(task)
    rows: list[dict[str, Any]] = []
    change_rows: list[dict[str, Any]] = []
    histories = []
    example_maps: list[np.ndarray] = []
    shapes: dict[str, Any] = {}
    for seed in ctx.seeds:
        torch.manual_seed(seed)
        model = EncoderDecoder(cfg).to(ctx.device)
        steps = int(s["steps"])
        settings = TrainSettings(
            steps=steps,
            batch_size=int(s["batch_size"]),
            lr=float(s["lr"]),
            eval_every=max(1, steps // 8),
            seed=seed,
        )

        def batch(step: int, gen: torch.Generator, n: int = settings.batch_size) -> tuple[Tensor, Tensor]:
            return task.sample(n, gen)

        hist = train_lm(
            model, None, (eval_src, eval_tgt), settings, device=ctx.device, loss_fn=loss, batch_fn=batch
        )
        histories.append(hist)
        model.cpu()
        acc = accuracy(model, task, eval_src, eval_tgt)
        with cross_attention_off(model):
            acc_off = accuracy(model, task, eval_src, eval_tgt)
        result = interventions(
            model, task, eval_src, eval_tgt, float(s["noise"]), torch.Generator().manual_seed(seed + 77)
        )
        shapes = result["shapes"]
        align = alignment(result["weights"], task)
        rows.append(
            {
                "seed": seed,
                **acc,
                "token_accuracy_cross_off": acc_off["token_accuracy"],
                "sequence_accuracy_cross_off": acc_off["sequence_accuracy"],
                "final_eval_loss": hist.final_eval_loss,
                "alignment": align,
            }
        )
        for name, parts in result["changes"].items():
            for part, values in parts.items():
                for layer, v in enumerate(values):
                    change_rows.append(
                        {
                            "seed": seed,
                            "intervention": name,
                            "part": part,
                            "layer": layer + 1,
                            "relative_change": v,
                        }
                    )
        if seed == ctx.seeds[0]:
            example_maps = [w[0].mean(0).numpy() for w in result["weights"]]  # first example, mean over heads
            example_src = eval_src[0].tolist()

    changes = pd.DataFrame(change_rows)
    metrics: dict[str, Any] = {
        "task": s["task"],
        "length": task.length,
        "symbols": task.symbols,
        "n_seeds": len(ctx.seeds),
        "min_accuracy": float(s["min_accuracy"]),
        "chance_accuracy": 1.0 / task.symbols,
        "token_accuracy": [r["token_accuracy"] for r in rows],
        "sequence_accuracy": [r["sequence_accuracy"] for r in rows],
        "token_accuracy_cross_off": [r["token_accuracy_cross_off"] for r in rows],
        "alignment": [r["alignment"] for r in rows],
        "alignment_chance": 1.0 / task.length,
        "shapes": shapes,
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
    }
    figures = [
        _figure_maps(ctx, example_maps, example_src, task),
        _figure_interventions(ctx, changes),
        _figure_curves(ctx, histories),
    ]
    summary = (
        changes.groupby(["intervention", "layer", "part"])["relative_change"]
        .agg(["mean", "std", "max"])
        .reset_index()
    )
    tables = [
        Table.from_records(
            "accuracy",
            "Held-out accuracy of the trained encoder–decoder per seed, with "
            "its cross-attention on and switched off (output replaced by zeros), and the "
            "attention weight on the source position each target position must read, per "
            f"decoder layer (uniform = {1 / task.length:.3f}).",
            [
                {
                    "seed": r["seed"],
                    "token accuracy": round(r["token_accuracy"], 4),
                    "sequence accuracy": round(r["sequence_accuracy"], 4),
                    "token accuracy, cross-attention off": round(r["token_accuracy_cross_off"], 4),
                    "final loss (nats/token)": round(r["final_eval_loss"], 4),
                    "weight on the right source token, per layer": [round(a, 3) for a in r["alignment"]],
                }
                for r in rows
            ],
        ),
        Table.from_records(
            "interventions",
            "Relative change ‖after − before‖ / ‖before‖ of the cross-attention's "
            "Q, K, V (and the mean total-variation distance of its weight rows) per decoder layer, "
            f"over {len(ctx.seeds)} seeds; noise of {s['noise']}× the RMS of what it is added to.",
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
            "Input shapes (batch, length, width) of the cross-attention's projections "
            "in the first decoder layer.",
            [
                {"projection": "W_q (query)", "input shape": str(shapes["q_input"])},
                {"projection": "W_k (key)", "input shape": str(shapes["k_input"])},
                {"projection": "W_v (value)", "input shape": str(shapes["v_input"])},
                {
                    "projection": "source / target length",
                    "input shape": f"{shapes['source_length']} / {shapes['target_length']}",
                },
            ],
        ),
    ]
    return Evidence(
        method=(
            f"A small encoder–decoder ({cfg.n_layers}+{cfg.n_layers} layers, width {cfg.d_model}) is trained "
            f"to {s['task']} sequences of {task.length} random symbols, once per seed; the target side is one "
            "token longer than the source, so shapes tell the sides apart. On held-out sequences, hooks record "
            "what enters W_q, W_k and W_v of each cross-attention; then noise is added either to the encoder "
            "output (the memory) or to the decoder's input, and the relative change of Q, K, V and of the "
            "attention weights is measured. Switching the cross-attention off shows whether the decoder uses it."
        ),
        metrics=metrics,
        seeds=ctx.seeds,
        tables=tables,
        figures=figures,
        literature=_literature(metrics),
    )


# --------------------------------------------------------------------------- figures


def _figure_maps(ctx: ConceptContext, maps: list[np.ndarray], src: list[int], task: SequenceTask) -> Any:
    fig, axes = plt.subplots(1, len(maps), figsize=(4.6 * len(maps) + 1, 4.4))
    axes = np.atleast_1d(axes)
    src_labels = [f"{i}:{tok}" for i, tok in enumerate(src)]
    body = src[::-1] if task.reverse else src
    tgt_labels = [f"{t}:{tok}" for t, tok in enumerate([*body, "EOS"])]
    for i, (ax, w) in enumerate(zip(axes, maps, strict=True)):
        last = i == len(maps) - 1
        sns.heatmap(
            w,
            ax=ax,
            cmap="viridis",
            vmin=0,
            vmax=1,
            cbar=last,
            xticklabels=src_labels,
            yticklabels=tgt_labels,
            cbar_kws={"label": "attention weight (probability)"},
        )
        ax.set_title(f"decoder layer {i + 1}")
        ax.set_xlabel("source position:symbol (keys, values)")
        ax.set_ylabel("target position:symbol it predicts (queries)")
    kind = "the anti-diagonal" if task.reverse else "the diagonal"
    return plotting.save(
        fig,
        ctx.outdir,
        "cross_attention_maps",
        "Cross-attention of the trained model",
        f"One held-out example ({'reversal' if task.reverse else 'copy'}), first seed, mean over "
        "heads. Rows are the decoder's positions (the queries), columns the encoder's (keys and "
        f"values); a model that reads the right source symbol puts its weight on {kind}.",
    )


def _figure_interventions(ctx: ConceptContext, changes: pd.DataFrame) -> Any:
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
    grid.figure.subplots_adjust(top=0.82)
    for ax in grid.axes.flat:
        ax.set_yscale("symlog", linthresh=TOLERANCE)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.0e}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("what is measured in the cross-attention")
    grid.axes.flat[0].set_ylabel("relative change (unitless)")
    return plotting.save(
        grid.figure,
        ctx.outdir,
        "interventions",
        "Where Q, K and V come from",
        "Noise on the encoder output moves K, V and the weights but leaves the first layer's Q "
        "at exactly 0; noise on the decoder input moves Q and the weights but never K or V. "
        "(In later layers Q also depends on the memory, through the earlier layers' "
        "cross-attention output.) Bars: mean over seeds; whiskers: ±1 std.",
    )


def _figure_curves(ctx: ConceptContext, histories: list[Any]) -> Any:
    rows = [
        {"run": i, "step": st, "loss": float(v)}
        for i, h in enumerate(histories)
        for st, v in zip(h.eval_steps, h.eval_loss, strict=True)
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=pd.DataFrame(rows), x="step", y="loss", errorbar="sd", marker="o", ax=ax)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("held-out loss (nats/token)")
    return plotting.save(
        fig,
        ctx.outdir,
        "training_curves",
        "Training the encoder–decoder",
        "Held-out cross-entropy of the sequence task (line: mean over seeds, band: ±1 std).",
    )


# --------------------------------------------------------------------------- verdict


def _first_layer(m: Mapping[str, Any], intervention: str, part: str) -> list[float]:
    return [float(per_seed[0]) for per_seed in m["changes"][intervention][part]]


def _all_layers(m: Mapping[str, Any], intervention: str, part: str) -> list[float]:
    return [float(v) for per_seed in m["changes"][intervention][part] for v in per_seed]


def sources(m: Mapping[str, Any]) -> dict[str, bool]:
    """Where Q, K and V come from, decided from the intervention numbers and the shapes."""
    sh = m["shapes"]
    q_len, k_len, v_len = sh["q_input"][1], sh["k_input"][1], sh["v_input"][1]
    q_mem, q_dec = _first_layer(m, "memory", "Q"), _first_layer(m, "decoder", "Q")
    out = {
        "q_from_decoder": min(q_dec) > EFFECT and q_len == sh["target_length"],
        "q_from_encoder": min(q_mem) > EFFECT or q_len == sh["source_length"] != sh["target_length"],
    }
    for part, length in (("K", k_len), ("V", v_len)):
        moved_by_memory = min(_all_layers(m, "memory", part)) > EFFECT
        moved_by_decoder = max(_all_layers(m, "decoder", part)) > TOLERANCE
        out[f"{part.lower()}_from_encoder"] = (
            moved_by_memory and not moved_by_decoder and length == sh["source_length"]
        )
    return out


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    acc = Spread.of(metrics["token_accuracy"])
    off = Spread.of(metrics["token_accuracy_cross_off"])
    if acc.n < 2:
        return Verdict(Label.INCONCLUSIVE, f"Only {acc.n} seed: at least 2 trained models are needed.")
    if min(metrics["token_accuracy"]) < float(metrics["min_accuracy"]):
        return Verdict(
            Label.INCONCLUSIVE,
            f"The encoder–decoder did not learn the task (token accuracy {acc}, needed "
            f"{metrics['min_accuracy']:.2f} in every seed), so its attention says little.",
        )
    used = off.mean < acc.mean - 0.5 * (acc.mean - float(metrics["chance_accuracy"]))
    src = sources(metrics)
    q_mem = max(_first_layer(metrics, "memory", "Q"))
    q_dec = min(_first_layer(metrics, "decoder", "Q"))
    k_mem = min(_all_layers(metrics, "memory", "K"))
    k_dec = max(_all_layers(metrics, "decoder", "K"))
    numbers = (
        f"noise on the encoder output changes the first layer's Q by {q_mem:.1e} and K by ≥{k_mem:.2g}; "
        f"noise on the decoder input changes Q by ≥{q_dec:.2g} and K by {k_dec:.1e} (relative, "
        f"{acc.n} seeds); with cross-attention off, token accuracy falls from {acc.mean:.3f} to {off.mean:.3f}"
    )
    if not used:
        return Verdict(Label.INCONCLUSIVE, f"The decoder does not depend on its cross-attention: {numbers}.")
    if src["q_from_encoder"] and src["k_from_encoder"]:
        return Verdict(Label.SUPPORTED, f"Queries and keys both come from the encoder output: {numbers}.")
    if src["k_from_encoder"] and src["q_from_decoder"]:
        values = "the values also come from the encoder" if src["v_from_encoder"] else "the values do not"
        return Verdict(
            Label.PARTLY,
            f"Decoders do have cross-attention and its keys come from the encoder output, but its "
            f"queries come from the decoder ({values}): {numbers}.",
        )
    return Verdict(Label.NOT_SUPPORTED, f"The encoder output is not where the keys come from: {numbers}.")


def _literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    src = sources(metrics)
    agrees = src["q_from_decoder"] and src["k_from_encoder"] and src["v_from_encoder"]
    align = [max(a) for a in metrics["alignment"]]
    return [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.3",
            "In encoder-decoder attention the queries come from the previous decoder layer, and the memory "
            "keys and values come from the output of the encoder.",
            bool(agrees),
            f"Measured: Q from the decoder {src['q_from_decoder']}, K from the encoder {src['k_from_encoder']}, "
            f"V from the encoder {src['v_from_encoder']}.",
        ),
        LiteratureCheck(
            "Bahdanau et al. 2015 (attention as soft alignment)",
            "A trained attention decoder aligns each output position with the source positions it translates.",
            bool(min(align) > 2 * float(metrics["alignment_chance"])) if align else None,
            f"Best layer's weight on the right source position: {Spread.of(align)} vs "
            f"{float(metrics['alignment_chance']):.3f} for a uniform spread."
            if align
            else "",
        ),
    ]
