"""C06's measurements: the key–value retrieval task trained in every arm with the role-separating
interventions, per seed, and the corpus LM with and without W_v, each arm at its tuned rate.

Measuring only: ``measure_seed`` gives one seed's task accuracies, interventions and attention rows
and the shared baseline; ``measure`` the LM ablation's tuning grid, losses and curves. Deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from whylab.bench.data import eval_windows
from whylab.bench.lab import build_model, history_dict, learned_baseline, load_corpus, train_on_task
from whylab.bench.train import bench_config, evaluate_lm, train_lm, train_settings
from whylab.concepts._settle import tune
from whylab.concepts.c06_value_projection.arms import LM_ARM_KEYS, TASK_ARMS
from whylab.concepts.context import ConceptContext
from whylab.errors import InputError
from whylab.files import finite


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


def identity_values(model: Any, learned: bool) -> None:
    """Every block's W_v set to the identity (bias 0), trained on when ``learned``, else frozen.

    V = X is W_v = I, so the V = X arm is this model with W_v frozen at I: both arms start as the
    same function from the same weights, and the ablation measures only what learning W_v adds (a
    W_v drawn like the other weights, N(0, init_std), would shrink the values about sixfold at the
    start, a handicap of initialisation rather than of capacity)."""
    with torch.no_grad():
        for block in model.blocks:
            proj = block.attn.v_proj
            proj.weight.copy_(torch.eye(proj.weight.shape[0], dtype=proj.weight.dtype))
            if proj.bias is not None:
                proj.bias.zero_()
            proj.requires_grad_(learned)


def tuning_windows(corpus: Any, settings: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation windows right after the reported ones (held out from both training and the
    reported loss): the text the learning rate is chosen on."""
    ts = train_settings(settings.get("train", {}))
    start = ts.eval_windows * ts.seq_len + 1
    rest = corpus.valid[start:]
    if rest.numel() <= ts.seq_len:
        raise InputError(
            "C06: the validation split is too short to hold tuning windows after the reported ones"
        )
    return eval_windows(rest, seq_len=ts.seq_len, max_windows=ts.eval_windows)


def train_lm_arm(ctx: ConceptContext, corpus: Any, seed: int, learned: bool, lr: float) -> tuple[Any, Any]:
    """One corpus-LM arm at one head without W_o, at ``lr`` for the section's ``lm_steps``: W_v
    starts at the identity and is learned, or stays frozen there (V = X)."""
    s = ctx.settings
    cfg = bench_config(s.get("model", {}), vocab_size=corpus.vocab_size, v_proj=True, o_proj=False, n_heads=1)
    model = build_model(cfg, seed, ctx.device)
    identity_values(model, learned)
    over = {"steps": int(s["lm_steps"]), "lr": lr, "eval_every": int(s["eval_every"])}
    ts = train_settings(s.get("train", {}), seed=seed, **over)
    return model, train_lm(model, corpus.train, corpus.valid, ts, device=ctx.device)


def _lm_record(hist: Any, lr: float) -> dict[str, Any]:
    return {
        "eval_loss": finite(hist.final_eval_loss),
        "diverged": bool(hist.diverged),
        "curve": history_dict(hist),
        "lr": lr,
    }


def measure(ctx: ConceptContext) -> dict[str, Any]:
    """The corpus-LM ablation at one head without W_o, learned W_v vs V = X, each arm at its own
    learning rate: every arm trained from the first seed at every rate of ``lr_grid``, keeping the
    rate with the lowest loss on the tuning windows (never the reported ones), fixed for every seed;
    the first seed's run at the chosen rate is reused (its choice read only the tuning windows)."""
    corpus = load_corpus(ctx.inputs)
    tune_x, tune_y = tuning_windows(corpus, ctx.settings)
    seeds = ctx.seeds

    def run(key: str, lr: float) -> tuple[float | None, Any]:
        model, hist = train_lm_arm(ctx, corpus, seeds[0], LM_ARM_KEYS[key], lr)
        score = None if hist.diverged else finite(evaluate_lm(model, (tune_x, tune_y), ctx.device))
        return score, hist

    tuning, first = tune(list(LM_ARM_KEYS), [float(x) for x in ctx.settings["lr_grid"]], run)
    per_seed: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds):
        lm: dict[str, Any] = {}
        for key, v in LM_ARM_KEYS.items():
            lr = tuning[key]["lr"]
            if lr is None:
                raise InputError(f"C06: every rate of lr_grid diverged for the LM arm {key}")
            hist = first[key] if i == 0 else train_lm_arm(ctx, corpus, seed, v, lr)[1]
            lm[key] = _lm_record(hist, lr)
        per_seed.append({"seed": seed, "lm": lm})
    return {"per_seed": per_seed, "tuning": tuning}


def measure_seed(ctx: ConceptContext, seed: int) -> dict[str, Any]:
    """One seed: the retrieval task in every arm (same seed: same initial weights where the shapes
    agree, same batches) and the shared learned baseline (four heads, W_v and W_o) as a reference.
    The LM ablation is in ``measure`` (its learning rates are tuned before any seed runs)."""
    corpus = load_corpus(ctx.inputs)
    task = {key: run_task(ctx, seed, v, o) for key, v, o in TASK_ARMS.values()}
    _, base = learned_baseline(ctx.settings, ctx.inputs, corpus, seed, ctx.device)
    baseline = {
        "eval_loss": finite(base.final_eval_loss),
        "diverged": bool(base.diverged),
        "curve": history_dict(base),
    }
    return {"seed": seed, "task": task, "lm": {"baseline": baseline}}
