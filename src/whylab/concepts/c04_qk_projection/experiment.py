"""C04's measurements: per seed, the directed- and the symmetric-relation task (``tasks.py``)
with and without W_q, W_k, and the corpus LM with and without them.

Measuring only: task accuracy, the probability of the right answer and where the query's attention
goes (with a few held-out rows for the attention-map figure), the LM's validation loss, curve and
self-attention share, and the notes' sentence through both LMs. Deciding is in ``verdict.py``,
drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from whylab.bench.lab import history_dict, learned_baseline, load_corpus, train_on_corpus, train_on_task
from whylab.bench.train import train_settings
from whylab.concepts.c04_qk_projection import KEYS, LEARN_LOSS, LEARN_WINDOW
from whylab.concepts.c04_qk_projection.tasks import TASKS, RelationTask
from whylab.concepts.context import ConceptContext
from whylab.files import finite

VARIANTS = {"learned W_q, W_k": True, "Q = K = X": False}  # display name -> has W_q, W_k
__all__ = ["RelationTask", "measure_seed", "run_task", "steps_to_learn", "task_measures"]
ILLUSTRATION_KO = "내일 점심에 팀장님이랑 밥 약속이 있어."


# --------------------------------------------------------------------------- the synthetic tasks
@torch.no_grad()
def task_measures(model: Any, s: Mapping[str, torch.Tensor], device: str) -> dict[str, Any]:
    """Accuracy, the mean probability of the right answer, and per layer the query's attention
    (mean over heads) on the token it looks for, on the token that looks for it (directed task
    only) and on itself; and how the query singles out the token it looks for (first layer): the
    share of sequences where that token gets the most attention of the context, and the least."""
    model.eval()
    out = model(s["ids"].to(device), return_attention=True)
    last = out.logits[:, -1, :].float().cpu()
    pred = last.argmax(dim=-1)
    rows = torch.arange(len(s["ids"]))
    partner_att, reverse_att, self_att = [], [], []
    for att in out.attentions:
        q_row = att[:, :, -1, :].mean(dim=1).cpu()  # (B, T): query's attention, averaged over heads
        partner_att.append(float(q_row[rows, s["position"]].mean()))
        if "reverse_position" in s:
            reverse_att.append(float(q_row[rows, s["reverse_position"]].mean()))
        self_att.append(float(q_row[:, -1].mean()))
    first = out.attentions[0][:, :, -1, :].mean(dim=1).cpu()
    context = first[:, :-1]  # the query's attention on the context tokens (itself left out)
    return {
        "accuracy": float((pred == s["target"]).float().mean()),
        "answer_probability": float(last.softmax(dim=-1)[rows, s["target"]].mean()),
        "partner_attention": partner_att,
        "reverse_attention": reverse_att,
        "self_attention": self_att,
        "partner_most": float((context.argmax(dim=1) == s["position"]).float().mean()),
        "partner_least": float((context.argmin(dim=1) == s["position"]).float().mean()),
        "first_layer_rows": first,
    }


def steps_to_learn(
    train_loss: list[float], window: int = LEARN_WINDOW, below: float = LEARN_LOSS
) -> int | None:
    """The first update at which the training loss, averaged over the last ``window`` updates (each
    on fresh task batches), is below ``below`` nats (the right answer at about 90%); None if never."""
    for end in range(window, len(train_loss) + 1):
        if sum(train_loss[end - window : end]) / window < below:
            return end
    return None


def run_task(ctx: ConceptContext, seed: int, qk_proj: bool, kind: str = "directed") -> dict[str, Any]:
    """One run of the ``kind`` task (``tasks.TASKS``; JSON-able): accuracy and the query's
    attention, plus the first ``attention_examples`` held-out rows for the attention-map figure.
    Both tasks of a seed see the same training-batch generator and the same held-out generator."""
    cfg_task = ctx.settings["task"]
    task = TASKS[kind].make(cfg_task["n_entities"], cfg_task["context_len"], seed)
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
        steps_to_learn=steps_to_learn(list(history.train_loss)),
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
    """One seed: the directed and the symmetric relation task with and without W_q, W_k, and the
    corpus LM: the learned baseline (shared with C03, C06) against the same model with Q = K = X,
    same initial weights where the shapes agree and the same batches (paired)."""
    corpus = load_corpus(ctx.inputs)
    task = {KEYS[v]: run_task(ctx, seed, qk, "directed") for v, qk in VARIANTS.items()}
    symmetric = {KEYS[v]: run_task(ctx, seed, qk, "symmetric") for v, qk in VARIANTS.items()}
    learned, hist = learned_baseline(ctx.settings, ctx.inputs, corpus, seed, ctx.device)
    plain, _, hist_plain = train_on_corpus(ctx.settings, corpus, seed, ctx.device, {"qk_proj": False})
    models = {"learned W_q, W_k": learned, "Q = K = X": plain}
    return {
        "seed": seed,
        "task": task,
        "symmetric": symmetric,
        "lm": {
            "learned": lm_measures(ctx, corpus, learned, hist),
            "no_qk": lm_measures(ctx, corpus, plain, hist_plain),
        },
        "illustration": illustration_rows(models, corpus.tokenizer, ctx.device),
    }
