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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from whylab import plotting
from whylab.bench.train import train_settings
from whylab.concepts import ConceptContext
from whylab.concepts._bench_common import (
    attention_rows_figure,
    curve,
    describe,
    finite,
    fmt,
    history_dict,
    holm_of,
    label_of,
    learned_baseline,
    load_corpus,
    paired,
    part_status,
    plot_curves,
    summary,
    train_on_corpus,
    train_on_task,
)
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C04"

VARIANTS = {"learned W_q, W_k": True, "Q = K = X": False}
KEYS = {"learned W_q, W_k": "learned", "Q = K = X": "no_qk"}
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
def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- combine
def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    seeds = [int(r["seed"]) for r in per_seed]
    task_cfg = ctx.settings["task"]
    names = {v: KEYS[v] for v in VARIANTS}

    def task_values(key: str, measure: str, layer: int | None = 0) -> list[float]:
        vals = [r["task"][key][measure] for r in per_seed]
        return [float(v[layer] if layer is not None else v) for v in vals]

    acc = {k: task_values(k, "accuracy", None) for k in names.values()}
    lm_loss = {k: [r["lm"][k]["eval_loss"] for r in per_seed] for k in names.values()}
    seq_len = per_seed[0]["lm"]["learned"]["seq_len"]
    th = {
        "min_accuracy_gap": float(ctx.settings["min_accuracy_gap"]),
        "min_loss_gain": float(ctx.settings["min_loss_gain"]),
    }
    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "task": {
            **{k: task_cfg[k] for k in ("n_entities", "context_len", "n_layers", "n_heads", "ffn")},
            "chance_accuracy": 1.0 / task_cfg["context_len"],
        },
        "task_accuracy": {k: summary(v) for k, v in acc.items()},
        "task_partner_attention_layer1": {
            k: summary(task_values(k, "partner_attention")) for k in names.values()
        },
        "task_reverse_attention_layer1": {
            k: summary(task_values(k, "reverse_attention")) for k in names.values()
        },
        "task_self_attention_layer1": {k: summary(task_values(k, "self_attention")) for k in names.values()},
        "lm_eval_loss": {
            k: summary([math.nan if v is None else v for v in vals]) for k, vals in lm_loss.items()
        },
        "lm_self_attention_layer1": {
            k: summary([r["lm"][k]["self_share"][0] for r in per_seed]) for k in names.values()
        },
        "lm_self_attention_uniform": uniform_self_share(seq_len),
        # primary comparisons, paired by seed: accuracy learned − plain; loss plain − learned
        "paired_task_accuracy": paired(acc["learned"], acc["no_qk"], th["min_accuracy_gap"]),
        "paired_lm_loss": paired(lm_loss["no_qk"], lm_loss["learned"], th["min_loss_gain"]),
        "diverged": {
            k: sum(int(r["task"][k]["diverged"]) + int(r["lm"][k]["diverged"]) for r in per_seed)
            for k in names.values()
        },
        "thresholds": th,
    }

    def cell(key: str, measure: str) -> str:
        return fmt(task_values(key, measure, None if measure == "accuracy" else 0), notation="f")

    tables = [
        Table.from_records(
            "summary",
            Msg("C04.table.summary.caption"),
            [
                {
                    "variant": v,
                    "task accuracy": cell(k, "accuracy"),
                    "attention on σ(q)": cell(k, "partner_attention"),
                    "attention on σ⁻¹(q)": cell(k, "reverse_attention"),
                    "attention on itself": cell(k, "self_attention"),
                    "LM validation loss (nats/token)": fmt(metrics["lm_eval_loss"][k], notation="f"),
                    "LM self-attention share": fmt(
                        [r["lm"][k]["self_share"][0] for r in per_seed], notation="f"
                    ),
                }
                for v, k in names.items()
            ],
        ),
        Table.from_records(
            "paired",
            Msg("C04.table.paired.caption"),
            [
                {
                    "comparison": "relation-task accuracy",
                    "paired difference": describe(metrics["paired_task_accuracy"], ""),
                },
                {
                    "comparison": "LM validation loss",
                    "paired difference": describe(metrics["paired_lm_loss"], "nats/token"),
                },
            ],
        ),
        Table.from_records(
            "illustration_ko",
            Msg("C04.table.illustration_ko.caption", seed=seeds[0]),
            per_seed[0]["illustration"],
        ),
    ]
    figures = [
        _accuracy_figure(per_seed, metrics["task"]["chance_accuracy"], ctx),
        _attention_map_figure(per_seed[0], ctx),
        plot_curves(
            {v: [curve(r["lm"][k]["curve"]) for r in per_seed] for v, k in names.items()},
            ctx.outdir,
            "lm_curves",
            Msg("C04.figure.lm_curves.title"),
            Msg("C04.figure.lm_curves.caption"),
        ),
    ]
    v = verdict(metrics)
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2.2",
            Msg("C04.literature.vaswani.finding"),
            agrees=(
                True
                if v.label in (Label.SUPPORTED, Label.PARTLY)
                else False
                if v.label is Label.NOT_SUPPORTED
                else None
            ),
            note=Msg(
                "C04.literature.vaswani.note",
                task=describe(metrics["paired_task_accuracy"], ""),
                lm=describe(metrics["paired_lm_loss"], "nats/token"),
            ),
        )
    ]
    method = Msg(
        "C04.method",
        context_len=task_cfg["context_len"],
        n_heads=task_cfg["n_heads"],
        ffn=Msg("C04.method_part.ffn_with" if task_cfg["ffn"] else "C04.method_part.ffn_without"),
        init_std=task_cfg["init_std"],
    )
    return Evidence(
        method=method, metrics=metrics, seeds=seeds, tables=tables, figures=figures, literature=literature
    )


def _accuracy_figure(per_seed: list[dict[str, Any]], chance: float, ctx: ConceptContext) -> Any:
    measures = {
        "accuracy": "task\naccuracy",
        "partner_attention": "attention\non σ(q)",
        "reverse_attention": "attention\non σ⁻¹(q)",
        "self_attention": "attention\non itself",
    }
    rows = []
    for r in per_seed:
        for v, k in KEYS.items():
            for m, label in measures.items():
                value = r["task"][k][m]
                rows.append(
                    {
                        "variant": v,
                        "seed": r["seed"],
                        "measure": label,
                        "value": float(value if m == "accuracy" else value[0]),
                    }
                )
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
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
    ax.set_ylim(0, 1.25)
    ax.legend(loc="upper right", ncols=2, fontsize="small")
    ax.set_xlabel("measure on held-out task sequences")
    ax.set_ylabel("accuracy / attention weight (fraction, 0–1)")
    return plotting.save_figure(fig, ctx.outdir, "C04.figure.relation_task", chance=chance)


def _attention_map_figure(r: Mapping[str, Any], ctx: ConceptContext) -> Any:
    panels = {
        v: (np.asarray(r["task"][k]["map_rows"], dtype=float), list(r["task"][k]["map_positions"]))
        for v, k in KEYS.items()
    }
    return attention_rows_figure(
        panels,
        ctx.outdir,
        "attention_maps",
        Msg("C04.figure.attention_maps.title", seed=r["seed"]),
        Msg("C04.figure.attention_maps.caption"),
        "key position (index; last = the query itself)",
    )


# --------------------------------------------------------------------------- verdict
PART_NAMES = {"task": "C04.reason.part_task", "lm": "C04.reason.part_lm"}
BRANCHES = {
    Label.SUPPORTED: "supported",
    Label.PARTLY: "partly",
    Label.NOT_SUPPORTED: "not_supported",
    Label.INCONCLUSIVE: "inconclusive",
}


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Two parts, paired over seeds and Holm-corrected together: relation-task accuracy and LM loss,
    each 'confirmed' (learned W_q, W_k clearly better past its floor), 'contradicted' (Q = K = X
    clearly better, or no difference that matters) or 'limited' (neither: never lowers the label).
    All judged parts confirmed: supported; a mix: partly; all contradicted: not supported.

    The task counts only if the learned model solves it (accuracy at least ``min_accuracy_gap``
    above chance); otherwise it cannot tell the variants apart and the verdict is inconclusive.
    """
    out = VerdictOf(Kind.EXPERIMENT, Msg("C04.primary", n_seeds=metrics["n_seeds"]))
    th = metrics["thresholds"]
    comps = {"task": metrics["paired_task_accuracy"], "lm": metrics["paired_lm_loss"]}
    if metrics["n_seeds"] < 2 or any(c["n"] < 2 for c in comps.values()):
        return out.branch(Label.INCONCLUSIVE, "C04.verdict.too_few")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C04.verdict.diverged")
    acc = metrics["task_accuracy"]["learned"]["mean"]
    chance = metrics["task"]["chance_accuracy"]
    if acc < chance + th["min_accuracy_gap"]:
        return out.branch(Label.INCONCLUSIVE, "C04.verdict.not_learned", acc=acc, chance=chance)
    rejected = holm_of(comps)
    status = {k: part_status(c, rejected[k]) for k, c in comps.items()}
    label = Label(label_of(list(status.values())))
    out.limited.extend(
        Msg("C04.limited.part", part=Msg(PART_NAMES[k])) for k, st in status.items() if st == "limited"
    )
    numbers = Msg(
        "C04.reason.numbers",
        acc_learned=fmt(metrics["task_accuracy"]["learned"], notation="f"),
        acc_plain=fmt(metrics["task_accuracy"]["no_qk"], notation="f"),
        task=describe(comps["task"], ""),
        self_learned=metrics["task_self_attention_layer1"]["learned"]["mean"],
        self_plain=metrics["task_self_attention_layer1"]["no_qk"]["mean"],
        lm=describe(comps["lm"], "nats/token"),
    )
    won = [Msg(PART_NAMES[k]) for k, st in status.items() if st == "confirmed"]
    lost = [Msg(PART_NAMES[k]) for k, st in status.items() if st == "contradicted"]
    return out.branch(label, f"C04.verdict.{BRANCHES[label]}", won=won, lost=lost, numbers=numbers)
