"""C11's measurements: where library encoder–decoders take Q, K, V from, and both wirings trained.

Measuring only. ``measure``: T5, BART and GPT-2 built from transformers configs with hooks on the
cross-attention's W_q, W_k, W_v (``wiring.library_roles``), and the notes' wiring run on a source
and a target of different lengths. ``measure_seed``: the standard and the notes' wiring trained
from the same initial weights on the same batches, their held-out accuracies, and for the
standard model the interventions on Q, K, V, the cross-attention switched off and its maps.
Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whylab.bench.model import BenchConfig, EncoderDecoder, MultiHeadAttention
from whylab.bench.train import LossFn, TrainSettings, train_lm
from whylab.concepts.c11_cross_attention import wiring
from whylab.concepts.context import ConceptContext
from whylab.errors import InputError

CLAIM_ID = "C11"
WIRINGS = ("standard", "notes")  # Q from the decoder, K and V from the encoder; the notes' wiring


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


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
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


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """The notes' wiring on a source and a target of different lengths (the task with EOS), and
    the library models' cross-attention inputs (None when the library check is off)."""
    s = ctx.settings
    seed = ctx.seeds[0]
    long_task = task_of(s, eos=True)
    src, tgt = long_task.sample(4, torch.Generator().manual_seed(1))
    unequal = wiring.failure_at_unequal_lengths(
        build(s, long_task, seed, notes=True), src, long_task.decoder_input(tgt)
    )
    library = None
    if s["library_check"]:
        library = [wiring.library_roles(lib, seed) for lib in wiring.library_models()]
    return {"unequal_lengths": unequal, "library": library}
