"""C06: queries and keys decide where to look; values (W_v) decide what is fetched.

The notes' example: for "먹었다" the query matches the key of "사과를", and the value supplies the
meaning of "사과". To separate the two roles we need a task where the matched thing and the
fetched thing differ: a key–value retrieval. Each context token is a (key, value) pair — its id
encodes both — and the final token asks for a key; the answer is the value stored with that key.
So the query must match the *key part* of one context token and output its *value part*.

The roles are then separated by intervention on a trained one-layer model:
- change the value part of the matched pair: attention should stay put, the output should follow;
- change its key part: attention should move away (control);
- replace W_v by a random matrix: attention weights cannot change (they depend on Q, K only),
  and accuracy should collapse.
And an ablation, over seeds: V = X (no W_v) vs learned W_v, on this task and as a corpus LM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
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
from whylab.verdict import Label, Verdict, clearly_less

CLAIM_ID = "C06"

VARIANTS = {"learned W_v": True, "V = X": False}
KEYS = {"learned W_v": "learned", "V = X": "v_is_x"}


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


def run_task(ctx: ConceptContext, seed: int, v_proj: bool) -> dict[str, Any]:
    tc = ctx.settings["task"]
    task = KeyValueTask(tc["n_keys"], tc["n_values"], tc["n_pairs"])
    model, history = train_on_task(ctx.settings, task, seed, ctx.device, v_proj=v_proj)
    held_out = task.sample(tc["eval_size"], torch.Generator().manual_seed(10_000 + seed))
    pred, att = query_view(model, held_out["ids"], ctx.device)
    result: dict[str, Any] = {
        "accuracy": float((pred == held_out["target"]).float().mean()),
        "diverged": bool(history.diverged),
        "attention": att,
        "position": held_out["position"],
    }
    if v_proj:
        result["interventions"] = interventions(model, task, held_out, seed, ctx.device)
    return result


def run_lm(ctx: ConceptContext, corpus: Any, seed: int, v_proj: bool) -> dict[str, Any]:
    _, _, history = train_on_corpus(ctx.settings, corpus, seed, ctx.device, {"v_proj": v_proj})
    return {"history": history, "eval_loss": history.final_eval_loss, "diverged": bool(history.diverged)}


# --------------------------------------------------------------------------- run
def run(ctx: ConceptContext) -> Evidence:
    seeds = ctx.seeds
    tc = ctx.settings["task"]
    task_runs = over_seeds(seeds, VARIANTS, lambda seed, vp: run_task(ctx, seed, vp))
    corpus = load_corpus(ctx.inputs)
    lm_runs = over_seeds(seeds, VARIANTS, lambda seed, vp: run_lm(ctx, corpus, seed, vp))

    inter = [r["interventions"] for r in task_runs["learned W_v"]]
    metrics: dict[str, Any] = {
        "n_seeds": len(seeds),
        "task": {
            "n_keys": tc["n_keys"],
            "n_values": tc["n_values"],
            "n_pairs": tc["n_pairs"],
            "n_layers": tc["n_layers"],
            "chance_accuracy": 1.0 / tc["n_values"],
            "uniform_attention": 1.0 / (tc["n_pairs"] + 1),
        },
        "task_accuracy": {KEYS[v]: summary([r["accuracy"] for r in runs]) for v, runs in task_runs.items()},
        "lm_eval_loss": {KEYS[v]: summary([r["eval_loss"] for r in runs]) for v, runs in lm_runs.items()},
        "roles": {name: summary([i[name] for i in inter]) for name in inter[0]},
        "diverged": {KEYS[v]: sum(r["diverged"] for r in task_runs[v] + lm_runs[v]) for v in VARIANTS},
        "thresholds": {
            k: float(ctx.settings[k])
            for k in ("min_accuracy_gap", "min_loss_gain", "min_follow_value", "max_value_swap_shift")
        },
    }
    roles = metrics["roles"]
    tables = [
        Table.from_records(
            "roles",
            "Interventions on the trained model with learned W_v (mean ± std over seeds). "
            "Attention change is the total-variation distance of the query's first-layer attention "
            "(0 = unchanged, 1 = moved entirely elsewhere).",
            [
                {
                    "intervention": "none",
                    "attention change": "0",
                    "accuracy / share": fmt([i["accuracy"] for i in inter], notation="f"),
                    "what the share counts": "answers correct",
                },
                {
                    "intervention": "value of the matched pair changed",
                    "attention change": fmt([i["value_swap_attention_tv"] for i in inter], notation="f"),
                    "accuracy / share": fmt([i["value_swap_follows_new_value"] for i in inter], notation="f"),
                    "what the share counts": "answers that follow the new value",
                },
                {
                    "intervention": "key of the matched pair changed",
                    "attention change": fmt([i["key_swap_attention_tv"] for i in inter], notation="f"),
                    "accuracy / share": fmt([i["key_swap_keeps_old_answer"] for i in inter], notation="f"),
                    "what the share counts": "answers still giving the old value",
                },
                {
                    "intervention": "W_v replaced by a random matrix",
                    "attention change": fmt([i["wv_random_attention_tv"] for i in inter], notation="f"),
                    "accuracy / share": fmt([i["wv_random_accuracy"] for i in inter], notation="f"),
                    "what the share counts": "answers correct",
                },
            ],
        ),
        Table.from_records(
            "ablation",
            "V = X (no W_v) vs learned W_v, mean ± std over seeds.",
            [
                {
                    "variant": v,
                    "task accuracy": fmt([r["accuracy"] for r in task_runs[v]], notation="f"),
                    "LM validation loss (nats/token)": fmt(
                        [r["eval_loss"] for r in lm_runs[v]], notation="f"
                    ),
                }
                for v in VARIANTS
            ],
        ),
    ]
    figures = [
        _roles_figure(inter, ctx),
        _ablation_figure(task_runs, metrics["task"]["chance_accuracy"], ctx),
        _attention_figure(task_runs["learned W_v"][0], ctx),
        plot_curves(
            {v: [r["history"] for r in lm_runs[v]] for v in VARIANTS},
            ctx.outdir,
            "lm_curves",
            "C06: language-model loss with learned W_v and with V = X",
            "Validation next-token loss on the corpus; line = mean over seeds, band = ±1 std.",
        ),
    ]
    separated = _roles_separated(metrics)
    literature = [
        LiteratureCheck(
            "Vaswani et al. 2017, section 3.2",
            "Attention output is a weighted sum of the values, with weights computed from the query "
            "and the keys; values, like queries and keys, get their own learned projection per head.",
            agrees=separated if len(seeds) > 1 else None,
            note=f"This run: changing the matched pair's value moved the query's attention by "
            f"{roles['value_swap_attention_tv']['mean']:.3f} (total variation) while "
            f"{roles['value_swap_follows_new_value']['mean']:.2f} of answers followed the new value; "
            f"a random W_v moved attention by {roles['wv_random_attention_tv']['mean']:.3f} and left "
            f"accuracy {roles['wv_random_accuracy']['mean']:.2f}.",
        )
    ]
    method = (
        "The notes say Q and K decide where to look (먹었다 → 사과를) and V decides what is fetched (the "
        "meaning of 사과). We build a key–value retrieval task in which each context token carries a "
        f"key and a value ({tc['n_pairs']} pairs, {tc['n_keys']} keys, {tc['n_values']} values) and the "
        "last token asks for one key; the answer is that pair's value, so the token the query matches "
        "(by key) and the content it must output (the value) differ. On the trained one-layer model we "
        "change the matched pair's value, its key, or W_v itself, and measure separately how the "
        "query's attention moves and how the answer changes. We also compare V = X (no W_v) with "
        "learned W_v over seeds, on the task and as a language model on the corpus."
    )
    return Evidence(
        method=method,
        metrics=metrics,
        seeds=list(seeds),
        tables=tables,
        figures=figures,
        literature=literature,
    )


def _roles_figure(inter: list[dict[str, float]], ctx: ConceptContext) -> Any:
    labels = {"value_swap": "value changed", "key_swap": "key changed", "wv_random": "W_v randomised"}
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
            {"intervention": "W_v randomised", "quantity": "accuracy", "value": i["wv_random_accuracy"]}
        )
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    sns.barplot(data=frame, x="intervention", y="value", hue="quantity", errorbar="sd", ax=ax)
    ax.set_xlabel("intervention on the trained model (learned W_v)")
    ax.set_ylabel("fraction (0–1)")
    return plotting.save(
        fig,
        ctx.outdir,
        "roles",
        "C06: where the model looks vs what it fetches",
        "Bars: mean over seeds, error bars ±1 std. Attention change = total-variation distance of the "
        "query's first-layer attention before and after the intervention. Changing the value leaves "
        "attention in place and the answer follows it; changing the key moves attention.",
    )


def _ablation_figure(
    task_runs: Mapping[str, list[dict[str, Any]]], chance: float, ctx: ConceptContext
) -> Any:
    frame = pd.DataFrame(
        [{"variant": v, "accuracy": r["accuracy"]} for v, runs in task_runs.items() for r in runs]
    )
    fig, ax = plt.subplots(figsize=(5, 4))
    sns.barplot(data=frame, x="variant", y="accuracy", errorbar="sd", ax=ax, alpha=0.7)
    sns.stripplot(data=frame, x="variant", y="accuracy", ax=ax, color="black", size=5)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("value path")
    ax.set_ylabel("task accuracy (fraction correct)")
    return plotting.save(
        fig,
        ctx.outdir,
        "ablation",
        "C06: key–value retrieval with learned W_v and with V = X",
        f"Held-out accuracy; bars = mean over seeds (±1 std), dots = seeds; dashed = chance ({chance:.3f}).",
    )


def _attention_figure(r: Mapping[str, Any], ctx: ConceptContext) -> Any:
    n_show = int(ctx.settings["attention_examples"])
    panels = {"learned W_v": (r["attention"][:n_show].mean(dim=1).numpy(), r["position"][:n_show].tolist())}
    return attention_rows_figure(
        panels,
        ctx.outdir,
        "attention_map",
        f"C06: the query's attention (learned W_v, seed {ctx.seeds[0]})",
        "Each row is one held-out sequence; colour is the query's first-layer attention, averaged over "
        "heads. Red box: the pair whose key matches the query.",
        "key position (index; last = the query token)",
    )


# --------------------------------------------------------------------------- verdict
def _roles_separated(metrics: Mapping[str, Any]) -> bool:
    """Changing the value leaves attention in place while the answer follows it; changing the key
    moves attention more than changing the value; a random W_v leaves attention unchanged but breaks
    the answer."""
    th = metrics["thresholds"]
    roles = metrics["roles"]
    acc = roles["accuracy"]["values"]
    return (
        roles["value_swap_follows_new_value"]["mean"] >= th["min_follow_value"]
        and roles["value_swap_attention_tv"]["mean"] <= th["max_value_swap_shift"]
        and clearly_less(roles["value_swap_attention_tv"]["values"], roles["key_swap_attention_tv"]["values"])
        and roles["wv_random_attention_tv"]["mean"] <= th["max_value_swap_shift"]
        and clearly_less(roles["wv_random_accuracy"]["values"], acc)
    )


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    """Supported when the roles separate by intervention and learned W_v clearly beats V = X
    (on the task or the LM); partly when the roles separate but V = X does as well."""
    ab = compare_ablation(metrics, "v_is_x")
    if isinstance(ab, Verdict):
        return ab
    if not ab.task_learned:
        return Verdict(
            Label.INCONCLUSIVE,
            f"The retrieval task was not learned (accuracy {ab.acc.mean:.3f}, chance {ab.chance:.3f}), "
            "so the interventions cannot separate the roles.",
        )
    roles = metrics["roles"]
    role_numbers = (
        f"changing the matched value moves attention by {roles['value_swap_attention_tv']['mean']:.3f} "
        f"(TV) while {roles['value_swap_follows_new_value']['mean']:.2f} of answers follow it; "
        f"changing the key moves attention by {roles['key_swap_attention_tv']['mean']:.3f}"
    )
    task_gain, lm_gain = ab.task_gain, ab.lm_gain
    ablation = (
        f"task accuracy {ab.acc} (learned W_v) vs {ab.acc_ablated} (V = X); LM loss {ab.loss} vs "
        f"{ab.loss_ablated} nats/token"
    )
    if not _roles_separated(metrics):
        return Verdict(
            Label.NOT_SUPPORTED,
            f"The interventions do not separate where-to-look from what-to-fetch: {role_numbers}.",
        )
    if task_gain or lm_gain:
        where = (
            "on the task and the LM"
            if task_gain and lm_gain
            else ("on the task" if task_gain else "as a language model, though V = X also solves the task")
        )
        return Verdict(
            Label.SUPPORTED,
            f"Q/K pick the position and V the content: {role_numbers}; "
            f"a learned W_v clearly helps {where} ({ablation}).",
        )
    return Verdict(
        Label.PARTLY,
        f"Q/K pick the position and V the content ({role_numbers}), but a "
        f"separate learned W_v adds nothing clear over V = X ({ablation}).",
    )
