"""C10's measurements: the causality test and the heads of library stacks and of our bench model.

Measuring only: BERT, GPT-2 and T5 built from transformers configs (the library check), and the
bench transformer with and without the causal mask, at initialisation and after brief training:
per run the leak at earlier positions, the change by offset, the attention to later tokens, the
training curve and the first layer's attention map. Deciding is in ``verdict.py``, drawing in
``figures.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from whylab.bench.data import eval_windows, lm_data
from whylab.bench.model import BenchTransformer
from whylab.bench.train import TrainHistory, bench_config, train_lm, train_settings
from whylab.concepts.context import ConceptContext
from whylab.files import finite_or_text

CLAIM_ID = "C10"
KINDS = {"decoder (causal mask)": True, "encoder (no mask)": False}  # model -> causal mask

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


def _curve(hist: TrainHistory) -> dict[str, Any]:
    """A training run's evaluation curve and final loss (NaN becomes None through JSON)."""
    return {
        "eval_steps": list(hist.eval_steps),
        "eval_loss": [float(v) for v in hist.eval_loss],
        "final_eval_loss": float(hist.final_eval_loss),
    }


def _bench_runs(ctx: ConceptContext, seed: int, data: tuple[Any, Any, Any], out: dict[str, Any]) -> None:
    """One seed of the bench model: encoder and decoder from the same weights, at init and trained."""
    s = ctx.settings
    tokenizer, train_ids, valid_ids = data
    vocab = tokenizer.get_vocab_size()
    steps = int(s["steps"])
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
            final = None
            if stage == "trained":
                hist = train_lm(model, train_ids, valid_ids, ts, device=ctx.device)
                out["curves"].setdefault(kind, []).append(_curve(hist))
                final = float(hist.final_eval_loss)
                model.eval()
            gen = torch.Generator().manual_seed(seed + 1)  # the same perturbations for both kinds
            prof = causality_profile(_logits_of(model), x, positions, vocab, gen)
            out["rows"].append(
                {
                    "kind": kind,
                    "stage": stage,
                    "seed": seed,
                    "earlier_max_abs": prof["earlier_max_abs"],
                    "later_mean_abs": prof["later_mean_abs"],
                    "relative_leak": finite_or_text(prof["relative_leak"]),
                    "future_attention_share": future_attention_share(model, x),
                    "final_eval_loss": final,
                }
            )
            out["offsets"].extend(
                {"kind": kind, "stage": stage, "seed": seed, "offset": int(off), "delta": val}
                for off, val in prof["by_offset"].items()
            )
            if seed == ctx.seeds[0] and stage == stages[-1]:
                with torch.no_grad():
                    att = model(x[:1], return_attention=True).attentions
                assert att is not None
                out["maps"][kind] = att[0][0].mean(0).cpu().tolist()  # first layer, mean over heads


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """Every seed's bench runs (rows, change by offset, curves), the first seed's attention maps,
    and the library check (None when it is switched off)."""
    data = lm_data(ctx.inputs)
    out: dict[str, Any] = {"rows": [], "offsets": [], "curves": {}, "maps": {}, "library": None}
    for seed in ctx.seeds:
        _bench_runs(ctx, seed, data, out)
    if ctx.settings["library_check"]:
        positions = perturbation_positions(32, int(ctx.settings["positions"]))
        lib = library_check(32, 100, positions, ctx.seeds[0])
        out["library"] = {
            k: {**v, "relative_leak": finite_or_text(v["relative_leak"])} for k, v in lib.items()
        }
    return out
