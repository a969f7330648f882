"""C04's measurements: per seed, the directed-relation task with and without W_q, W_k, and the
corpus LM with and without them.

Measuring only: task accuracy and where the query's attention goes (with a few held-out rows for
the attention-map figure), the LM's validation loss, curve and self-attention share, and the notes'
sentence through both LMs. Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from whylab.bench.lab import history_dict, learned_baseline, load_corpus, train_on_corpus, train_on_task
from whylab.bench.train import train_settings
from whylab.concepts.c04_qk_projection import KEYS
from whylab.concepts.context import ConceptContext
from whylab.files import finite

VARIANTS = {"learned W_q, W_k": True, "Q = K = X": False}  # display name -> has W_q, W_k
ILLUSTRATION_KO = "내일 점심에 팀장님이랑 밥 약속이 있어."


# --------------------------------------------------------------------------- the synthetic task
@dataclass(frozen=True)
class RelationTask:
    """Sequences ``e_1 … e_L q``: L distinct entity tokens, then a query entity q (not among them).

    A fixed random *directed* relation σ (one random cycle through all entities: a → σ(a)) says
    which token each query is looking for. The context always holds σ(q), the token to find, and
    σ⁻¹(q), the token that looks for q (a hard negative: same relation, other direction), plus
    L − 2 random distractors. The target at the last position is the answer token "position j"
    of σ(q), so the model must attend to it and read where it sits; attending to q itself gives
    no information. Q = K = X scores are symmetric, s(q, σ(q)) vs s(q, σ⁻¹(q)) summed over all q
    cancel, so it cannot prefer the right direction for every query; learned W_q, W_k can.
    Vocabulary: ids [0, n_entities) are entities, [n_entities, n_entities + context_len) answers.
    """

    n_entities: int
    context_len: int
    forward: torch.Tensor  # (n_entities,) forward[a] = σ(a)
    backward: torch.Tensor  # (n_entities,) backward[σ(a)] = a

    @classmethod
    def make(cls, n_entities: int, context_len: int, seed: int) -> RelationTask:
        if n_entities < 4:
            raise ValueError("n_entities must be at least 4")
        if not 2 <= context_len <= n_entities - 1:
            raise ValueError("context_len must be in [2, n_entities - 1] (distinct entities, not q)")
        cycle = torch.randperm(n_entities, generator=torch.Generator().manual_seed(seed))
        forward = torch.empty(n_entities, dtype=torch.long)
        forward[cycle] = cycle.roll(-1)
        backward = torch.empty(n_entities, dtype=torch.long)
        backward[forward] = torch.arange(n_entities)
        return cls(n_entities, context_len, forward, backward)

    @property
    def vocab_size(self) -> int:
        return self.n_entities + self.context_len

    @property
    def seq_len(self) -> int:
        return self.context_len + 1

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """ids (B, L+1), target answer ids (B,), positions of σ(q) and of σ⁻¹(q) (B,)."""
        n, length = self.n_entities, self.context_len
        query = torch.randint(n, (batch,), generator=gen)
        wanted, reverse = self.forward[query], self.backward[query]
        # L-2 distractors: distinct entities other than q, σ(q) and σ⁻¹(q)
        scores = torch.rand(batch, n, generator=gen)
        rows = torch.arange(batch)
        for taken in (query, wanted, reverse):
            scores[rows, taken] = -1.0
        distractors = scores.topk(length - 2, dim=1).indices
        tokens = torch.cat([wanted[:, None], reverse[:, None], distractors], dim=1)
        order = torch.rand(batch, length, generator=gen).argsort(dim=1)
        context = tokens.gather(1, order)
        position = (order == 0).long().argmax(dim=1)
        ids = torch.cat([context, query[:, None]], dim=1)
        return {
            "ids": ids,
            "target": n + position,
            "position": position,
            "reverse_position": (order == 1).long().argmax(dim=1),
        }


@torch.no_grad()
def task_measures(model: Any, s: Mapping[str, torch.Tensor], device: str) -> dict[str, Any]:
    """Accuracy, and per layer the query's attention (mean over heads) on the token it looks for
    (σ(q)), on the token that looks for it (σ⁻¹(q)) and on itself."""
    model.eval()
    out = model(s["ids"].to(device), return_attention=True)
    pred = out.logits[:, -1, :].argmax(dim=-1).cpu()
    rows = torch.arange(len(s["ids"]))
    partner_att, reverse_att, self_att = [], [], []
    for att in out.attentions:
        q_row = att[:, :, -1, :].mean(dim=1).cpu()  # (B, T): query's attention, averaged over heads
        partner_att.append(float(q_row[rows, s["position"]].mean()))
        reverse_att.append(float(q_row[rows, s["reverse_position"]].mean()))
        self_att.append(float(q_row[:, -1].mean()))
    first = out.attentions[0][:, :, -1, :].mean(dim=1).cpu()
    return {
        "accuracy": float((pred == s["target"]).float().mean()),
        "partner_attention": partner_att,
        "reverse_attention": reverse_att,
        "self_attention": self_att,
        "first_layer_rows": first,
    }


def run_task(ctx: ConceptContext, seed: int, qk_proj: bool) -> dict[str, Any]:
    """One task run (JSON-able): accuracy and the query's attention, plus the first
    ``attention_examples`` held-out rows for the attention-map figure."""
    cfg_task = ctx.settings["task"]
    task = RelationTask.make(cfg_task["n_entities"], cfg_task["context_len"], seed)
    model, history = train_on_task(
        ctx.settings,
        task,
        seed,
        ctx.device,
        n_heads=cfg_task["n_heads"],
        ffn=cfg_task["ffn"],
        qk_proj=qk_proj,
        init_std=cfg_task["init_std"],
    )
    held_out = task.sample(cfg_task["eval_size"], torch.Generator().manual_seed(10_000 + seed))
    measures = task_measures(model, held_out, ctx.device)
    n_show = int(ctx.settings["attention_examples"])
    rows = measures.pop("first_layer_rows")
    measures.update(
        diverged=bool(history.diverged),
        map_rows=[[round(float(v), 4) for v in row] for row in rows[:n_show]],
        map_positions=held_out["position"][:n_show].tolist(),
    )
    return measures


# --------------------------------------------------------------------------- corpus LM
@torch.no_grad()
def self_attention_share(model: Any, windows: torch.Tensor, device: str) -> list[float]:
    """Per layer: mean attention a token gives to itself (heads and positions t ≥ 1 averaged)."""
    model.eval()
    out = model(windows.to(device), return_attention=True)
    shares = []
    for att in out.attentions:
        diag = att.diagonal(dim1=-2, dim2=-1)[..., 1:]  # (B, H, T-1); t = 0 can only see itself
        shares.append(float(diag.mean()))
    return shares


@torch.no_grad()
def illustration_rows(models: Mapping[str, Any], tokenizer: Any, device: str) -> list[dict[str, Any]]:
    """The notes' sentence through each trained LM: how much each token attends to itself (layer 1)."""
    enc = tokenizer.encode(ILLUSTRATION_KO)
    ids = torch.tensor([enc.ids], dtype=torch.long)
    per_variant = {}
    for name, model in models.items():
        model.eval()
        att = model(ids.to(device), return_attention=True).attentions[0][0].mean(dim=0).cpu()
        per_variant[name] = att
    rows = []
    for t, (start, end) in enumerate(enc.offsets):
        # the text the token covers (byte-level pieces of one Hangul syllable share it)
        row: dict[str, Any] = {"position": t, "token covers": ILLUSTRATION_KO[start:end]}
        for name, att in per_variant.items():
            row[f"self attention, {name}"] = round(float(att[t, t]), 3)
        rows.append(row)
    return rows


def lm_measures(ctx: ConceptContext, corpus: Any, model: Any, history: Any) -> dict[str, Any]:
    from whylab.bench import data

    ts = train_settings(ctx.settings.get("train", {}))
    windows = data.eval_windows(corpus.valid, seq_len=ts.seq_len, max_windows=ts.eval_windows)
    shares = self_attention_share(model, windows[0][: ctx.settings["attention_windows"]], ctx.device)
    return {
        "eval_loss": finite(history.final_eval_loss),
        "self_share": shares,
        "diverged": bool(history.diverged),
        "curve": history_dict(history),
        "seq_len": ts.seq_len,
    }


# --------------------------------------------------------------------------- one seed
def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """One seed: the relation task with and without W_q, W_k, and the corpus LM: the learned
    baseline (shared with C03, C06) against the same model with Q = K = X, same initial weights
    where the shapes agree and the same batches (paired)."""
    corpus = load_corpus(ctx.inputs)
    task = {KEYS[v]: run_task(ctx, seed, qk) for v, qk in VARIANTS.items()}
    learned, hist = learned_baseline(ctx.settings, ctx.inputs, corpus, seed, ctx.device)
    plain, _, hist_plain = train_on_corpus(ctx.settings, corpus, seed, ctx.device, {"qk_proj": False})
    models = {"learned W_q, W_k": learned, "Q = K = X": plain}
    return {
        "seed": seed,
        "task": task,
        "lm": {
            "learned": lm_measures(ctx, corpus, learned, hist),
            "no_qk": lm_measures(ctx, corpus, plain, hist_plain),
        },
        "illustration": illustration_rows(models, corpus.tokenizer, ctx.device),
    }
