"""C04: attention needs learned W_q and W_k, because raw token embeddings cannot express relations.

The notes' example: in "내일 점심에 팀장님이랑 밥 약속이 있어." the relation (내일 점심 ↔ 팀장님) is
not a similarity between the tokens themselves. With Q = K = X the score of a token with another
is the plain dot product of their vectors, which is symmetric, and a token's score with itself,
‖x‖², is the largest a vector of that norm can get; so a token tends to look at itself or at tokens
that *look like it*. Learned W_q, W_k make the score an arbitrary bilinear form xᵢᵀ W_q W_kᵀ xⱼ,
which can rank a different, related token first.

Learned embeddings can make related tokens *similar*, so Q = K = X is not helpless; what it cannot
do is break the symmetry s(a, b) = s(b, a) or stop preferring itself. So the synthetic task uses a
*directed* relation (a looks for σ(a), which looks for σ(σ(a)), ...), like 내일 점심 → 팀장님.

Two measurements, each over seeds, the same model with and without the projections:
(a) the relation task, on a one-layer, one-head, attention-only model (so the attention score alone
    must express the relation): accuracy, and where the query's attention goes (the token it looks
    for, the token that looks for it, itself);
(b) next-token loss on the corpus and the share of attention tokens give themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.concepts._bench_common import (
    attention_rows_figure,
    compare_ablation,
    fmt,
    load_corpus,
    over_seeds,
    plot_curves,
    summary,
    train_on_corpus,
    train_on_task,
)
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Label, Spread, Verdict, clearly_less

CLAIM_ID = "C04"

VARIANTS = {"learned W_q, W_k": True, "Q = K = X": False}
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
    measures.update(diverged=bool(history.diverged), held_out=held_out, train_loss=history.train_loss)
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


def uniform_self_share(seq_len: int) -> float:
    """What a causal token would give itself under uniform attention: mean of 1/(t+1), t ≥ 1."""
    return float(np.mean([1.0 / (t + 1) for t in range(1, seq_len)]))


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


def run_lm(ctx: ConceptContext, corpus: Any, seed: int, qk_proj: bool) -> dict[str, Any]:
    from whylab.bench import data

    model, ts, history = train_on_corpus(ctx.settings, corpus, seed, ctx.device, {"qk_proj": qk_proj})
    windows = data.eval_windows(corpus.valid, seq_len=ts.seq_len, max_windows=ts.eval_windows)
    shares = self_attention_share(model, windows[0][: ctx.settings["attention_windows"]], ctx.device)
    return {
        "history": history,
        "eval_loss": history.final_eval_loss,
        "self_share": shares,
        "model": model,
        "diverged": bool(history.diverged),
        "seq_len": ts.seq_len,
    }


# --------------------------------------------------------------------------- run
def run(ctx: ConceptContext) -> Evidence:
    seeds = ctx.seeds
    task_cfg = ctx.settings["task"]
    task_runs = over_seeds(seeds, VARIANTS, lambda seed, qk: run_task(ctx, seed, qk))
    corpus = load_corpus(ctx.inputs)
    lm_runs = over_seeds(seeds, VARIANTS, lambda seed, qk: run_lm(ctx, corpus, seed, qk))

    keys = {"learned W_q, W_k": "learned", "Q = K = X": "no_qk"}
    seq_len = lm_runs["learned W_q, W_k"][0]["seq_len"]
    # raw per-seed losses: a diverged run's NaN stays in the literature check (never "clear")
    lm_loss = {keys[v]: [r["eval_loss"] for r in runs] for v, runs in lm_runs.items()}
    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "task": {
            **{k: task_cfg[k] for k in ("n_entities", "context_len", "n_layers", "n_heads", "ffn")},
            "chance_accuracy": 1.0 / task_cfg["context_len"],
        },
        "task_accuracy": {keys[v]: summary([r["accuracy"] for r in runs]) for v, runs in task_runs.items()},
        "task_partner_attention_layer1": {
            keys[v]: summary([r["partner_attention"][0] for r in runs]) for v, runs in task_runs.items()
        },
        "task_reverse_attention_layer1": {
            keys[v]: summary([r["reverse_attention"][0] for r in runs]) for v, runs in task_runs.items()
        },
        "task_self_attention_layer1": {
            keys[v]: summary([r["self_attention"][0] for r in runs]) for v, runs in task_runs.items()
        },
        "task_partner_attention_by_layer": {
            keys[v]: [r["partner_attention"] for r in runs] for v, runs in task_runs.items()
        },
        "task_self_attention_by_layer": {
            keys[v]: [r["self_attention"] for r in runs] for v, runs in task_runs.items()
        },
        "lm_eval_loss": {k: summary(v) for k, v in lm_loss.items()},
        "lm_self_attention_layer1": {
            keys[v]: summary([r["self_share"][0] for r in runs]) for v, runs in lm_runs.items()
        },
        "lm_self_attention_uniform": uniform_self_share(seq_len),
        "diverged": {keys[v]: sum(r["diverged"] for r in task_runs[v] + lm_runs[v]) for v in VARIANTS},
        "thresholds": {
            "min_accuracy_gap": float(ctx.settings["min_accuracy_gap"]),
            "min_loss_gain": float(ctx.settings["min_loss_gain"]),
        },
    }

    tables = [
        Table.from_records(
            "summary",
            "Mean ± std over seeds of each measure, with and without W_q, W_k. Attention "
            "numbers are the query's first-layer attention averaged over heads.",
            [
                {
                    "variant": v,
                    "task accuracy": fmt([r["accuracy"] for r in task_runs[v]], notation="f"),
                    "attention on σ(q)": fmt([r["partner_attention"][0] for r in task_runs[v]], notation="f"),
                    "attention on σ⁻¹(q)": fmt(
                        [r["reverse_attention"][0] for r in task_runs[v]], notation="f"
                    ),
                    "attention on itself": fmt([r["self_attention"][0] for r in task_runs[v]], notation="f"),
                    "LM validation loss (nats/token)": fmt(
                        [r["eval_loss"] for r in lm_runs[v]], notation="f"
                    ),
                    "LM self-attention share": fmt([r["self_share"][0] for r in lm_runs[v]], notation="f"),
                }
                for v in VARIANTS
            ],
        ),
        Table.from_records(
            "illustration_ko",
            "Illustration only (not evidence): the notes' sentence through the "
            "seed-0 language models; how much attention each token gives itself in layer 1.",
            illustration_rows({v: lm_runs[v][0]["model"] for v in VARIANTS}, corpus.tokenizer, ctx.device),
        ),
    ]
    figures = [
        _accuracy_figure(task_runs, metrics["task"]["chance_accuracy"], ctx),
        _attention_map_figure(task_runs, ctx),
        plot_curves(
            {v: [r["history"] for r in lm_runs[v]] for v in VARIANTS},
            ctx.outdir,
            "lm_curves",
            "C04: language-model loss with and without W_q, W_k",
            "Validation next-token loss on the corpus during training; line = mean over seeds, "
            "band = ±1 std. Same model, same seeds; only the query/key projections differ.",
        ),
    ]
    gap = metrics["task_accuracy"]["learned"]["mean"] - metrics["task_accuracy"]["no_qk"]["mean"]
    lm_gap = Spread.of(lm_loss["no_qk"]).mean - Spread.of(lm_loss["learned"]).mean
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.2",
            "Queries, keys and values are linearly projected per head with different, learned "
            "projections, which the authors found beneficial.",
            agrees=(
                clearly_less(lm_loss["learned"], lm_loss["no_qk"])
                or clearly_less(
                    metrics["task_accuracy"]["no_qk"]["values"], metrics["task_accuracy"]["learned"]["values"]
                )
            )
            if len(seeds) > 1
            else None,
            note=f"This run: learned projections change task accuracy by {gap:+.3f} and lower LM "
            f"validation loss by {lm_gap:+.3f} nats/token relative to Q = K = X.",
        )
    ]
    method = (
        "The notes' example (내일 점심 → 팀장님) is a relation, not a resemblance between tokens. We train "
        "the same small transformer twice per seed, once with learned W_q, W_k and once with Q = K = X "
        "(each head's query and key are a slice of the token vector itself, so scores are symmetric and "
        "a token's score with itself, ‖x‖², is the largest). In a synthetic task a fixed random directed "
        "relation σ says which token each query looks for; the query must find σ(q) among "
        f"{task_cfg['context_len']} tokens that always include σ⁻¹(q) (the token looking for q) and output "
        "its position. We measure accuracy and where the query's attention goes, on a one-layer, "
        f"{task_cfg['n_heads']}-head model {'with' if task_cfg['ffn'] else 'without'} a feed-forward block "
        f"(weights initialised with std {task_cfg['init_std']}), "
        "and train both variants as language models on the corpus (validation loss, share of "
        "attention tokens give themselves)."
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(seeds),
        tables=tables,
        figures=figures,
        literature=literature,
    )


def _accuracy_figure(
    task_runs: Mapping[str, list[dict[str, Any]]], chance: float, ctx: ConceptContext
) -> Any:
    rows = []
    for v, runs in task_runs.items():
        for i, r in enumerate(runs):
            rows.append(
                {"variant": v, "seed": ctx.seeds[i], "measure": "task accuracy", "value": r["accuracy"]}
            )
            rows.append(
                {
                    "variant": v,
                    "seed": ctx.seeds[i],
                    "measure": "attention on σ(q)",
                    "value": r["partner_attention"][0],
                }
            )
            rows.append(
                {
                    "variant": v,
                    "seed": ctx.seeds[i],
                    "measure": "attention on σ⁻¹(q)",
                    "value": r["reverse_attention"][0],
                }
            )
            rows.append(
                {
                    "variant": v,
                    "seed": ctx.seeds[i],
                    "measure": "attention on itself",
                    "value": r["self_attention"][0],
                }
            )
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=frame, x="measure", y="value", hue="variant", errorbar="sd", ax=ax, alpha=0.7)
    sns.stripplot(
        data=frame,
        x="measure",
        y="value",
        hue="variant",
        dodge=True,
        ax=ax,
        palette="dark:black",
        size=4,
        legend=False,
    )
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("measure on held-out task sequences")
    ax.set_ylabel("accuracy / attention weight (fraction, 0–1)")
    return plotting.save(
        fig,
        ctx.outdir,
        "relation_task",
        "C04: directed-relation task with and without W_q, W_k",
        f"Bars: mean over seeds (error bar ±1 std), dots: single seeds. Dashed line: chance accuracy "
        f"({chance:.3f}). Attention is the query's first-layer attention, averaged over heads: on the "
        "token it must find (σ(q)), on the token that looks for it (σ⁻¹(q)), and on itself.",
    )


def _attention_map_figure(task_runs: Mapping[str, list[dict[str, Any]]], ctx: ConceptContext) -> Any:
    n_show = int(ctx.settings["attention_examples"])
    panels = {
        v: (runs[0]["first_layer_rows"][:n_show].numpy(), runs[0]["held_out"]["position"][:n_show].tolist())
        for v, runs in task_runs.items()
    }
    return attention_rows_figure(
        panels,
        ctx.outdir,
        "attention_maps",
        f"C04: where the query looks (layer 1, seed {ctx.seeds[0]})",
        "Each row is one held-out sequence; colour is the attention the last (query) token gives each "
        "position, averaged over heads. Red box: σ(q), the token the query must find. The rightmost "
        "column is the query attending to itself.",
        "key position (index; last = the query itself)",
    )


# --------------------------------------------------------------------------- verdict
def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Supported when learned W_q, W_k clearly beat Q = K = X on the relation task and on LM loss.

    The task counts only if the learned model solves it (accuracy at least ``min_accuracy_gap``
    above chance); otherwise it cannot tell the variants apart and the verdict is inconclusive.
    """
    ab = compare_ablation(metrics, "no_qk")
    if isinstance(ab, Verdict):
        return ab
    if not ab.task_learned:
        return Verdict(
            Label.INCONCLUSIVE,
            f"Even with learned W_q, W_k the relation task stayed near chance (accuracy "
            f"{ab.acc.mean:.3f} vs chance {ab.chance:.3f}), so it cannot separate the variants.",
        )
    task_ok, lm_ok = ab.task_gain, ab.lm_gain
    self_x = metrics["task_self_attention_layer1"]["no_qk"]["mean"]
    self_l = metrics["task_self_attention_layer1"]["learned"]["mean"]
    numbers = (
        f"relation-task accuracy {ab.acc} with learned W_q, W_k vs {ab.acc_ablated} with Q = K = X "
        f"(query's attention on itself {self_l:.2f} vs {self_x:.2f}); LM loss {ab.loss} vs "
        f"{ab.loss_ablated} nats/token"
    )
    if task_ok and lm_ok:
        return Verdict(Label.SUPPORTED, f"Learned projections clearly win on both tests: {numbers}.")
    if task_ok or lm_ok:
        which = "the relation task" if task_ok else "language-model loss"
        return Verdict(Label.PARTLY, f"Learned projections clearly win only on {which}: {numbers}.")
    return Verdict(Label.NOT_SUPPORTED, f"Q = K = X does as well as learned projections: {numbers}.")
