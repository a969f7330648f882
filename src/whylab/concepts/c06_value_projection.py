"""C06: queries and keys decide where to look; values (W_v) decide what is fetched.

The notes' example: for "먹었다" the query matches the key of "사과를", and the value supplies the
meaning of "사과". To separate the two roles we need a task where the matched thing and the
fetched thing differ: a key–value retrieval. Each context token is a (key, value) pair — its id
encodes both — and the final token asks for a key; the answer is the value stored with that key.
So the query must match the *key part* of one context token and output its *value part*.

The roles are then separated by intervention on a trained one-layer, one-head model (the primary test):
- change the value part of the matched pair: attention should stay put, the output should follow;
- change its key part: attention should move away (control), clearly more than for the value.
(Replacing W_v by a random matrix is shown as an illustration only: in one layer the attention
weights cannot depend on W_v, so "attention unchanged" holds by construction.)
And an ablation over seeds, paired: learned W_v vs V = X at one head and without the output
projection W_o, on the task and as a corpus LM. With several heads V = X confines each head to its
slice of X, and with W_o kept W_o·W_v is a single matrix, so both would confound the ablation; the
task arm "V = X with W_o" shows the second confound.
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
from whylab.concepts import ConceptContext
from whylab.concepts._bench_common import (
    attention_rows_figure,
    curve,
    describe,
    finite,
    fmt,
    history_dict,
    learned_baseline,
    load_corpus,
    paired,
    plot_curves,
    summary,
    train_on_corpus,
    train_on_task,
)
from whylab.messages import Msg
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict, VerdictOf, holm

CLAIM_ID = "C06"


# --------------------------------------------------------------------------- the synthetic task
@dataclass(frozen=True)
class KeyValueTask:
    """Sequences of ``n_pairs`` pair tokens with distinct keys, then one query-key token.

    Ids: pair (k, v) = k * n_values + v for k < n_keys, v < n_values; query for key k =
    n_keys * n_values + k; answer "value v" = n_keys * n_values + n_keys + v. The target at the
    last position is the answer for the value paired with the queried key.
    """

    n_keys: int
    n_values: int
    n_pairs: int

    def __post_init__(self) -> None:
        if not 1 < self.n_pairs < self.n_keys:
            raise ValueError(
                "n_pairs must be at least 2 and below n_keys (a spare key is needed for the key-swap control)"
            )
        if self.n_values < 2:
            raise ValueError("n_values must be at least 2")

    @property
    def query_offset(self) -> int:
        return self.n_keys * self.n_values

    @property
    def answer_offset(self) -> int:
        return self.query_offset + self.n_keys

    @property
    def vocab_size(self) -> int:
        return self.answer_offset + self.n_values

    @property
    def seq_len(self) -> int:
        return self.n_pairs + 1

    def pair_id(self, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return key * self.n_values + value

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """ids (B, n_pairs+1), target (B,), position of the matched pair (B,), keys, values."""
        keys = torch.rand(batch, self.n_keys, generator=gen).argsort(dim=1)[:, : self.n_pairs]
        values = torch.randint(self.n_values, (batch, self.n_pairs), generator=gen)
        position = torch.randint(self.n_pairs, (batch,), generator=gen)
        rows = torch.arange(batch)
        qkey = keys[rows, position]
        ids = torch.cat([self.pair_id(keys, values), (self.query_offset + qkey)[:, None]], dim=1)
        target = self.answer_offset + values[rows, position]
        return {"ids": ids, "target": target, "position": position, "keys": keys, "values": values}

    def swap_value(self, s: Mapping[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Same sequences with the matched pair's value replaced by a different one; new targets."""
        rows = torch.arange(len(s["ids"]))
        old = s["values"][rows, s["position"]]
        new = (old + torch.randint(1, self.n_values, old.shape, generator=gen)) % self.n_values
        ids = s["ids"].clone()
        key = s["keys"][rows, s["position"]]
        ids[rows, s["position"]] = self.pair_id(key, new)
        return {**s, "ids": ids, "target": self.answer_offset + new}

    def swap_key(self, s: Mapping[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Same sequences with the matched pair's key replaced by a key absent from the sequence."""
        batch = len(s["ids"])
        rows = torch.arange(batch)
        used = torch.zeros(batch, self.n_keys, dtype=torch.bool)
        used[rows[:, None], s["keys"]] = True
        scores = torch.rand(batch, self.n_keys, generator=gen).masked_fill(used, -1.0)
        spare = scores.argmax(dim=1)
        value = s["values"][rows, s["position"]]
        ids = s["ids"].clone()
        ids[rows, s["position"]] = self.pair_id(spare, value)
        return {**s, "ids": ids}


@torch.no_grad()
def query_view(model: Any, ids: torch.Tensor, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted ids (B,), first-layer attention of the query over positions (B, H, T))."""
    model.eval()
    out = model(ids.to(device), return_attention=True)
    return out.logits[:, -1, :].argmax(dim=-1).cpu(), out.attentions[0][:, :, -1, :].cpu()


def total_variation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over examples and heads of ½ Σ|a − b| over positions (0: same weights, 1: disjoint)."""
    return float(0.5 * (a - b).abs().sum(dim=-1).mean())


def value_weights(model: Any) -> list[torch.nn.Parameter]:
    """The W_v weights of the first layer's self-attention, found by name (A's module layout)."""
    attn = model.blocks[0].attn
    for name in ("w_v", "v_proj", "value"):
        layer = getattr(attn, name, None)
        if isinstance(layer, torch.nn.Linear):
            return list(layer.parameters())
    raise AttributeError("could not find W_v in model.blocks[0].attn")


def interventions(
    model: Any, task: KeyValueTask, s: Mapping[str, torch.Tensor], seed: int, device: str
) -> dict[str, float]:
    """The role-separating measurements on a trained model with learned W_v."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    rows = torch.arange(len(s["ids"]))
    pred, att = query_view(model, s["ids"], device)
    out: dict[str, float] = {
        "accuracy": float((pred == s["target"]).float().mean()),
        "match_attention_mean_heads": float(att.mean(dim=1)[rows, s["position"]].mean()),
        "match_attention_best_head": float(att[rows, :, s["position"]].mean(dim=0).max()),
    }
    vs = task.swap_value(s, gen)
    pred_v, att_v = query_view(model, vs["ids"], device)
    out["value_swap_attention_tv"] = total_variation(att, att_v)
    out["value_swap_follows_new_value"] = float((pred_v == vs["target"]).float().mean())
    ks = task.swap_key(s, gen)
    pred_k, att_k = query_view(model, ks["ids"], device)
    out["key_swap_attention_tv"] = total_variation(att, att_k)
    out["key_swap_keeps_old_answer"] = float((pred_k == s["target"]).float().mean())
    # replace W_v by a random matrix of the same size and norm, then restore it
    params = value_weights(model)
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p in params:
                noise = torch.randn(p.shape, generator=gen).to(p.device)
                p.copy_(noise * (p.norm() / noise.norm().clamp_min(1e-12)))
        pred_w, att_w = query_view(model, s["ids"], device)
    finally:
        with torch.no_grad():
            for p, old in zip(params, saved, strict=True):
                p.copy_(old)
    out["wv_random_attention_tv"] = total_variation(att, att_w)
    out["wv_random_accuracy"] = float((pred_w == s["target"]).float().mean())
    return out


# task arms at one head: (W_v, W_o) switches; with W_o kept, W_o·W_v is one matrix, so V = X with
# W_o kept is as expressive as a learned W_v (the confound of a V = X ablation that keeps W_o)
TASK_ARMS = {
    "learned W_v (no W_o)": ("w_v", True, False),
    "V = X (no W_o)": ("v_is_x", False, False),
    "V = X with W_o": ("v_is_x_wo", False, True),
}
LM_ARMS = {"learned W_v (no W_o)": ("w_v", True), "V = X (no W_o)": ("v_is_x", False)}


def run_task(ctx: ConceptContext, seed: int, v_proj: bool, o_proj: bool) -> dict[str, Any]:
    """One task run at one head (JSON-able): accuracy, the interventions when W_v is learned,
    and the first held-out attention rows for the figure."""
    tc = ctx.settings["task"]
    task = KeyValueTask(tc["n_keys"], tc["n_values"], tc["n_pairs"])
    model, history = train_on_task(
        ctx.settings, task, seed, ctx.device, v_proj=v_proj, o_proj=o_proj, n_heads=1, ffn=tc["ffn"]
    )
    held_out = task.sample(tc["eval_size"], torch.Generator().manual_seed(10_000 + seed))
    pred, att = query_view(model, held_out["ids"], ctx.device)
    n_show = int(ctx.settings["attention_examples"])
    result: dict[str, Any] = {
        "accuracy": float((pred == held_out["target"]).float().mean()),
        "diverged": bool(history.diverged),
        "map_rows": [[round(float(v), 4) for v in row] for row in att[:n_show].mean(dim=1)],
        "map_positions": held_out["position"][:n_show].tolist(),
    }
    if v_proj:
        result["interventions"] = interventions(model, task, held_out, seed, ctx.device)
    return result


def run_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """One seed: the retrieval task in every arm (same seed: same initial weights where the shapes
    agree, same batches), the corpus LM at one head without W_o with and without W_v, and the shared
    learned baseline (four heads, W_v and W_o) as a reference."""
    corpus = load_corpus(ctx.inputs)
    task = {key: run_task(ctx, seed, v, o) for key, v, o in TASK_ARMS.values()}
    lm: dict[str, Any] = {}
    for key, v in LM_ARMS.values():
        _, _, hist = train_on_corpus(
            ctx.settings, corpus, seed, ctx.device, {"v_proj": v, "o_proj": False, "n_heads": 1}
        )
        lm[key] = {
            "eval_loss": finite(hist.final_eval_loss),
            "diverged": bool(hist.diverged),
            "curve": history_dict(hist),
        }
    _, base = learned_baseline(ctx.settings, ctx.inputs, corpus, seed, ctx.device)
    lm["baseline"] = {
        "eval_loss": finite(base.final_eval_loss),
        "diverged": bool(base.diverged),
        "curve": history_dict(base),
    }
    return {"seed": seed, "task": task, "lm": lm}


# --------------------------------------------------------------------------- combine
def combine(ctx: ConceptContext, per_seed: list[dict[str, Any]]) -> Evidence:
    seeds = [int(r["seed"]) for r in per_seed]
    tc = ctx.settings["task"]
    th = {
        k: float(ctx.settings[k])
        for k in ("min_accuracy_gap", "min_loss_gain", "min_follow_value", "max_value_swap_shift")
    }
    inter = [r["task"]["w_v"]["interventions"] for r in per_seed]
    acc = {key: [r["task"][key]["accuracy"] for r in per_seed] for key, _, _ in TASK_ARMS.values()}
    loss = {key: [r["lm"][key]["eval_loss"] for r in per_seed] for key in ("w_v", "v_is_x", "baseline")}
    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "task": {
            "n_keys": tc["n_keys"],
            "n_values": tc["n_values"],
            "n_pairs": tc["n_pairs"],
            "n_layers": tc["n_layers"],
            "n_heads": 1,
            "ffn": tc["ffn"],
            "chance_accuracy": 1.0 / tc["n_values"],
            "uniform_attention": 1.0 / (tc["n_pairs"] + 1),
        },
        "task_accuracy": {key: summary(v) for key, v in acc.items()},
        "lm_eval_loss": {key: summary([math.nan if x is None else x for x in v]) for key, v in loss.items()},
        "roles": {name: summary([i[name] for i in inter]) for name in inter[0]},
        # the role test: changing the key moves attention more than changing the value (paired)
        "paired_key_minus_value_shift": paired(
            [i["key_swap_attention_tv"] for i in inter],
            [i["value_swap_attention_tv"] for i in inter],
            th["max_value_swap_shift"],
        ),
        # the W_v ablation at one head without W_o: accuracy W_v − V = X, loss V = X − W_v
        "paired_task_accuracy": paired(acc["w_v"], acc["v_is_x"], th["min_accuracy_gap"]),
        "paired_lm_loss": paired(loss["v_is_x"], loss["w_v"], th["min_loss_gain"]),
        "paired_wo_confound_accuracy": paired(acc["v_is_x_wo"], acc["w_v"], th["min_accuracy_gap"]),
        "diverged": {
            key: sum(int(r["task"][key]["diverged"]) for r in per_seed)
            + sum(int(r["lm"][key]["diverged"]) for r in per_seed if key in r["lm"])
            for key, _, _ in TASK_ARMS.values()
        },
        "thresholds": th,
    }
    roles = metrics["roles"]

    def row(intervention: str, tv: str | None, share: str, counts: str) -> dict[str, str]:
        return {
            "intervention": intervention,
            "attention change": fmt([i[tv] for i in inter], notation="f") if tv else "0",
            "accuracy / share": fmt([i[share] for i in inter], notation="f"),
            "what the share counts": counts,
        }

    tables = [
        Table.from_records(
            "roles",
            Msg("C06.table.roles.caption"),
            [
                row("none", None, "accuracy", "answers correct"),
                row(
                    "value of the matched pair changed",
                    "value_swap_attention_tv",
                    "value_swap_follows_new_value",
                    "answers that follow the new value",
                ),
                row(
                    "key of the matched pair changed",
                    "key_swap_attention_tv",
                    "key_swap_keeps_old_answer",
                    "answers still giving the old value",
                ),
                row(
                    "W_v replaced by a random matrix (illustration)",
                    "wv_random_attention_tv",
                    "wv_random_accuracy",
                    "answers correct",
                ),
            ],
        ),
        Table.from_records(
            "ablation",
            Msg("C06.table.ablation.caption", n_heads=ctx.settings["model"].get("n_heads", 4)),
            [
                {
                    "variant": name,
                    "task accuracy": fmt(acc[key], notation="f"),
                    "LM validation loss (nats/token)": fmt(metrics["lm_eval_loss"][key], notation="f")
                    if key in loss
                    else "not trained",
                }
                for name, (key, _, _) in TASK_ARMS.items()
            ]
            + [
                {
                    "variant": "shared baseline (reference)",
                    "task accuracy": "not trained",
                    "LM validation loss (nats/token)": fmt(metrics["lm_eval_loss"]["baseline"], notation="f"),
                },
                {
                    "variant": "paired: W_v − V = X (accuracy); V = X − W_v (loss)",
                    "task accuracy": describe(metrics["paired_task_accuracy"], ""),
                    "LM validation loss (nats/token)": describe(metrics["paired_lm_loss"], ""),
                },
            ],
        ),
    ]
    figures = [
        _roles_figure(inter, ctx),
        _ablation_figure(per_seed, metrics["task"]["chance_accuracy"], ctx),
        _attention_figure(per_seed[0], ctx),
        plot_curves(
            {
                "learned W_v (no W_o, 1 head)": [curve(r["lm"]["w_v"]["curve"]) for r in per_seed],
                "V = X (no W_o, 1 head)": [curve(r["lm"]["v_is_x"]["curve"]) for r in per_seed],
                "shared baseline (reference)": [curve(r["lm"]["baseline"]["curve"]) for r in per_seed],
            },
            ctx.outdir,
            "lm_curves",
            Msg("C06.figure.lm_curves.title"),
            Msg("C06.figure.lm_curves.caption"),
        ),
    ]
    separated = _roles_separated(metrics)
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2",
            Msg("C06.literature.vaswani.finding"),
            agrees=separated if len(seeds) > 1 else None,
            note=Msg(
                "C06.literature.vaswani.note",
                value_tv=roles["value_swap_attention_tv"]["mean"],
                follow=roles["value_swap_follows_new_value"]["mean"],
                key_tv=roles["key_swap_attention_tv"]["mean"],
            ),
        )
    ]
    method = Msg("C06.method", n_pairs=tc["n_pairs"], n_keys=tc["n_keys"], n_values=tc["n_values"])
    return Evidence(
        method=method, metrics=metrics, seeds=seeds, tables=tables, figures=figures, literature=literature
    )


def _roles_figure(inter: list[dict[str, float]], ctx: ConceptContext) -> Any:
    labels = {
        "value_swap": "value changed",
        "key_swap": "key changed",
        "wv_random": "W_v randomised\n(illustration)",
    }
    rows = []
    for i in inter:
        for key, label in labels.items():
            rows.append(
                {
                    "intervention": label,
                    "quantity": "attention change (TV)",
                    "value": i[f"{key}_attention_tv"],
                }
            )
        rows.append(
            {
                "intervention": "value changed",
                "quantity": "answer follows new value",
                "value": i["value_swap_follows_new_value"],
            }
        )
        rows.append(
            {
                "intervention": "key changed",
                "quantity": "answer still old value",
                "value": i["key_swap_keeps_old_answer"],
            }
        )
        rows.append(
            {"intervention": labels["wv_random"], "quantity": "accuracy", "value": i["wv_random_accuracy"]}
        )
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(9.5, 4.2), layout="constrained")
    sns.barplot(data=frame, x="intervention", y="value", hue="quantity", errorbar="sd", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="quantity")
    ax.set_xlabel("intervention on the trained model (learned W_v)")
    ax.set_ylabel("fraction (0–1)")
    return plotting.save_figure(fig, ctx.outdir, "C06.figure.roles")


def _ablation_figure(per_seed: list[dict[str, Any]], chance: float, ctx: ConceptContext) -> Any:
    frame = pd.DataFrame(
        [
            {"variant": name.replace(" (", "\n("), "accuracy": r["task"][key]["accuracy"]}
            for r in per_seed
            for name, (key, _, _) in TASK_ARMS.items()
        ]
    )
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.barplot(data=frame, x="variant", y="accuracy", errorbar="sd", ax=ax, alpha=0.7)
    sns.stripplot(data=frame, x="variant", y="accuracy", ax=ax, color="black", size=5)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("value path (one head)")
    ax.set_ylabel("task accuracy (fraction correct)")
    return plotting.save_figure(fig, ctx.outdir, "C06.figure.ablation", chance=chance)


def _attention_figure(r: Mapping[str, Any], ctx: ConceptContext) -> Any:
    t = r["task"]["w_v"]
    panels = {"learned W_v": (np.asarray(t["map_rows"], dtype=float), list(t["map_positions"]))}
    return attention_rows_figure(
        panels,
        ctx.outdir,
        "attention_map",
        Msg("C06.figure.attention_map.title", seed=r["seed"]),
        Msg("C06.figure.attention_map.caption"),
        "key position (index; last = the query token)",
    )


# --------------------------------------------------------------------------- verdict
def _roles_separated(metrics: Mapping[str, Any]) -> bool:
    """Changing the value leaves attention in place while the answer follows it, and changing the
    key clearly moves attention more than changing the value (paired over seeds)."""
    th = metrics["thresholds"]
    roles = metrics["roles"]
    return bool(
        roles["value_swap_follows_new_value"]["mean"] >= th["min_follow_value"]
        and roles["value_swap_attention_tv"]["mean"] <= th["max_value_swap_shift"]
        and metrics["paired_key_minus_value_shift"]["effect"] == 1
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Decided by the role test (primary). The W_v ablation (one head, no W_o; task and LM, paired,
    Holm over the two) then says whether V needs its own learned projection: clearly yes supports
    the notes' W_v; shown not to matter (equivalent, or V = X better) makes it partly; unclear is
    left as a limit of this run."""
    out = VerdictOf(Kind.EXPERIMENT, Msg("C06.primary", n_seeds=metrics["n_seeds"]))

    comps = {"task": metrics["paired_task_accuracy"], "lm": metrics["paired_lm_loss"]}
    if metrics["n_seeds"] < 2 or metrics["paired_key_minus_value_shift"]["n"] < 2:
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.too_few")
    if sum(metrics["diverged"].values()):
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.diverged")
    acc = metrics["task_accuracy"]["w_v"]["mean"]
    chance = metrics["task"]["chance_accuracy"]
    if acc < chance + metrics["thresholds"]["min_accuracy_gap"]:
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.not_learned", acc=acc, chance=chance)
    roles = metrics["roles"]
    role_numbers = Msg(
        "C06.reason.roles",
        value_tv=roles["value_swap_attention_tv"]["mean"],
        follow=roles["value_swap_follows_new_value"]["mean"],
        key_tv=roles["key_swap_attention_tv"]["mean"],
        key_minus_value=describe(metrics["paired_key_minus_value_shift"], "TV"),
    )
    ablation = Msg(
        "C06.reason.ablation",
        task=describe(comps["task"], ""),
        lm=describe(comps["lm"], "nats/token"),
    )
    kv = metrics["paired_key_minus_value_shift"]
    th = metrics["thresholds"]
    contradicted = (
        roles["value_swap_follows_new_value"]["mean"] < th["min_follow_value"]
        or roles["value_swap_attention_tv"]["mean"] > th["max_value_swap_shift"]
        or kv["effect"] == -1
        or kv["equivalent"]
    )
    if not contradicted and not _roles_separated(metrics):
        return out.branch(Label.INCONCLUSIVE, "C06.verdict.key_unclear", roles=role_numbers)
    if contradicted:
        return out.branch(Label.NOT_SUPPORTED, "C06.verdict.not_separated", roles=role_numbers)
    pvals = {
        k: (c["test"]["p"] if c.get("test") and c["test"]["p"] is not None else math.nan)
        for k, c in comps.items()
    }
    rejected = holm(pvals)
    gain = {k: rejected[k] and c["test"]["mean_diff"] > c["min_effect"] for k, c in comps.items()}
    loss_ = {k: rejected[k] and c["test"]["mean_diff"] < -c["min_effect"] for k, c in comps.items()}
    no_matter = any(loss_.values()) or all(c["equivalent"] for c in comps.values())
    if any(gain.values()):
        where = [Msg(f"C06.reason.part_{k}") for k, g in gain.items() if g]
        return out.branch(
            Label.SUPPORTED, "C06.verdict.w_v_helps", roles=role_numbers, where=where, ablation=ablation
        )
    if no_matter:
        return out.branch(Label.PARTLY, "C06.verdict.w_v_not_needed", roles=role_numbers, ablation=ablation)
    out.limited.append(Msg("C06.limited.w_v"))
    return out.branch(Label.SUPPORTED, "C06.verdict.w_v_unclear", roles=role_numbers, ablation=ablation)
