"""C11's two wirings of cross-attention, and where a library encoder–decoder takes Q, K, V from.

The notes say cross-attention "uses the encoder output as query and key". Taken literally, the
queries and keys both come from the encoder output (the memory) and only the values are left for
the decoder. ``NotesCrossAttention`` builds exactly that from the *same* projections as the
standard module (so both wirings start from the same weights for a seed):

    scores  = (memory W_q)(memory W_k)ᵀ        (S × S: source positions on both axes)
    weights = softmax(scores / √d_k), causal     (row i may use decoder positions ≤ i)
    out     = weights · (decoder W_v)            (needs S == T: one value per score column)

With a source and a target of different lengths the last product has no defined shape and the
forward pass fails inside the bench model's ``attention`` (``weights @ v``); with equal lengths it
runs and can be trained. The causal mask over the value positions is the charitable reading: it
keeps a decoder from reading the target tokens it is asked to predict.

``library_roles`` hooks the cross-attention projections of T5 and BART built from configs (random
weights, nothing downloaded) and records which tensors enter W_q, W_k and W_v (measuring only:
``verdict.roles`` decides from those numbers where each comes from).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from whylab.bench.model import EncoderDecoder, MultiHeadAttention, attention, make_mask


class NotesCrossAttention(nn.Module):
    """Cross-attention wired as the notes describe it: Q and K from the encoder output, V from the
    decoder. It reuses the projections of a standard ``MultiHeadAttention`` (same parameters)."""

    def __init__(self, standard: MultiHeadAttention) -> None:
        super().__init__()
        if standard.q_proj is None or standard.k_proj is None or standard.v_proj is None:
            raise ValueError("the notes' wiring needs the W_q, W_k and W_v projections")
        self.cfg = standard.cfg
        self.q_proj: nn.Linear = standard.q_proj
        self.k_proj: nn.Linear = standard.k_proj
        self.v_proj: nn.Linear = standard.v_proj
        self.out_proj = standard.out_proj
        self.scale = standard.scale

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, d_head)
        b, t, _ = x.shape
        return x.view(b, t, self.cfg.n_heads, self.cfg.d_head).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        *,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if context is None:
            raise ValueError("cross-attention needs the encoder output (context)")
        q = self._heads(self.q_proj(context))  # the notes: queries from the encoder output
        k = self._heads(self.k_proj(context))  # keys from the encoder output
        v = self._heads(self.v_proj(x))  # what is left for the decoder: the values
        s = context.shape[1]
        # a source-length causal mask: score column j stands for decoder position j (its value)
        causal = make_mask(1, s, s, causal=True, key_padding=None, device=x.device)
        out, weights = attention(q, k, v, mask=causal, scale=self.scale)  # S ≠ T fails here
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.cfg.d_model)
        if self.out_proj is not None:
            out = self.out_proj(out)
        return out, (weights if return_weights else None)


def use_notes_wiring(model: EncoderDecoder) -> EncoderDecoder:
    """Rewire every decoder block's cross-attention as the notes describe it (in place; the
    parameters stay the same tensors, so the model's initial weights do not change)."""
    for block in model.decoder_blocks:
        standard = block.cross_attn
        if not isinstance(standard, MultiHeadAttention):
            raise ValueError("every decoder block needs a standard cross-attention to rewire")
        block.cross_attn = NotesCrossAttention(standard)
    return model


def failure_at_unequal_lengths(model: EncoderDecoder, src: Tensor, tgt_in: Tensor) -> dict[str, Any]:
    """Run the notes' wiring on a source and a decoder input of different lengths and report
    whether it runs, and if not, the error and the line of code where it fails."""
    out: dict[str, Any] = {
        "source_length": int(src.shape[1]),
        "target_length": int(tgt_in.shape[1]),
        "runs": True,
        "error": "",
        "where": "",
    }
    try:
        with torch.no_grad():
            model(src, tgt_in)
    except RuntimeError as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        path = Path(frame.filename)
        short = "/".join(path.parts[path.parts.index("whylab") :]) if "whylab" in path.parts else path.name
        out.update(
            runs=False,
            error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
            where=f"{short}, line {frame.lineno}, in {frame.name}: {(frame.line or '').strip()}",
        )
    return out


# --------------------------------------------------------------------------- library models


@dataclass(frozen=True)
class LibraryModel:
    name: str
    build: Callable[[], nn.Module]
    decoder_layers: Callable[[nn.Module], list[nn.Module]]  # the layers of the decoder (stack)
    cross_attentions: Callable[[nn.Module], list[nn.Module]]  # one per decoder layer, [] if none
    qkv: Callable[[nn.Module], tuple[nn.Module, nn.Module, nn.Module]]  # W_q, W_k, W_v of one


def library_models() -> list[LibraryModel]:
    """T5 and BART (encoder–decoders) and GPT-2 (decoder-only), tiny, from their configs."""
    from transformers import BartConfig, BartModel, GPT2Config, GPT2Model, T5Config, T5Model

    def t5() -> nn.Module:
        cfg = T5Config(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=2, vocab_size=64)
        return T5Model(cfg)

    def bart() -> nn.Module:
        cfg = BartConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            vocab_size=64,
            max_position_embeddings=64,
        )
        return BartModel(cfg)

    def gpt2() -> nn.Module:
        return GPT2Model(GPT2Config(n_embd=32, n_head=2, n_layer=2, vocab_size=64, n_positions=64))

    def layers(path: str) -> Callable[[nn.Module], list[nn.Module]]:
        return lambda m: list(m.get_submodule(path).children())

    def cross(path: str, name: str) -> Callable[[nn.Module], list[nn.Module]]:
        # a decoder-only model (GPT-2) has no such module unless built with add_cross_attention
        return lambda m: [
            mod for layer in m.get_submodule(path).children() if (mod := _get(layer, name)) is not None
        ]

    def qkv(q: str, k: str, v: str) -> Callable[[nn.Module], tuple[nn.Module, nn.Module, nn.Module]]:
        return lambda a: (a.get_submodule(q), a.get_submodule(k), a.get_submodule(v))

    return [
        LibraryModel(
            "T5",
            t5,
            layers("decoder.block"),
            cross("decoder.block", "layer.1.EncDecAttention"),
            qkv("q", "k", "v"),
        ),
        LibraryModel(
            "BART",
            bart,
            layers("decoder.layers"),
            cross("decoder.layers", "encoder_attn"),
            qkv("q_proj", "k_proj", "v_proj"),
        ),
        LibraryModel(
            "GPT-2", gpt2, layers("h"), cross("h", "crossattention"), qkv("q_attn", "c_attn", "c_attn")
        ),
    ]


def _get(module: nn.Module, name: str) -> nn.Module | None:
    try:
        return module.get_submodule(name)
    except AttributeError:
        return None


@contextmanager
def _inputs_of(modules: dict[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    seen: dict[str, Tensor] = {}
    handles = []
    for key, mod in modules.items():

        def hook(m: nn.Module, args: tuple[Any, ...], key: str = key) -> None:
            seen[key] = args[0].detach().clone()

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def _moved(a: Tensor, b: Tensor) -> float | None:
    """Largest absolute difference; None when the shapes differ (not the same tensor at all)."""
    return float((a - b).abs().max()) if a.shape == b.shape else None


@torch.no_grad()
def library_roles(lib: LibraryModel, seed: int, src_len: int = 7, tgt_len: int = 5) -> dict[str, Any]:
    """Which tensors enter the cross-attention's W_q, W_k, W_v of a library model.

    Source and target have different lengths, so the shapes tell the sides apart; the key input is
    compared with the encoder's output tensor; then the source ids and the decoder ids are changed
    in turn and the first decoder layer's projection inputs are compared with the unchanged run.
    """
    torch.manual_seed(seed)
    model = lib.build().eval()
    cross = lib.cross_attentions(model)
    row: dict[str, Any] = {"model": lib.name, "cross_attention_layers": len(cross)}
    row["decoder_layers"] = len(lib.decoder_layers(model))
    if not cross:
        return row
    q, k, v = lib.qkv(cross[0])
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 64, (2, src_len), generator=gen)
    tgt = torch.randint(4, 64, (2, tgt_len), generator=gen)

    def forward(s: Tensor, t: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        with _inputs_of({"Q": q, "K": k, "V": v}) as seen:
            out = model(input_ids=s, decoder_input_ids=t, use_cache=False)
        return dict(seen), out.encoder_last_hidden_state

    base, memory = forward(src, tgt)
    src2 = src.clone()
    src2[:, src_len // 2] = (src2[:, src_len // 2] - 4 + 7) % 60 + 4  # another ordinary token
    tgt2 = tgt.clone()
    tgt2[:, tgt_len // 2] = (tgt2[:, tgt_len // 2] - 4 + 7) % 60 + 4
    by_src, _ = forward(src2, tgt)
    by_dec, _ = forward(src, tgt2)
    row.update(
        {
            "source_length": src_len,
            "target_length": tgt_len,
            **{f"{p.lower()}_input_length": int(base[p].shape[1]) for p in ("Q", "K", "V")},
            **{f"{p.lower()}_vs_encoder_output": _moved(base[p], memory) for p in ("Q", "K", "V")},
            **{f"{p.lower()}_moved_by_source": _moved(base[p], by_src[p]) for p in ("Q", "K", "V")},
            **{f"{p.lower()}_moved_by_decoder": _moved(base[p], by_dec[p]) for p in ("Q", "K", "V")},
        }
    )
    return row
