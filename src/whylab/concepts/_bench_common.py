"""What the bench-model claims (C03, C04, C06, C07, C08, C09) share: the corpus, seeded models
trained on it or on a synthetic task, the shared learned baseline LM (C03, C04, C06), paired
comparisons over seeds, mean ± spread, the seed-band figure of training curves and the
query-attention heatmap.

Each of these experiments trains variants of the same bench transformer, built and trained from
the ``mechanisms`` config (``model``, ``train``, ``tokenizer`` sections merged into the settings
by the rule; ``whylab.bench.train.bench_config`` / ``train_settings`` turn a section plus
per-experiment overrides into a BenchConfig / TrainSettings). Keeping the rest of the plumbing
here lets a reader of one concept module see only what is specific to its claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch
import torch.nn.functional as F

from whylab.bench.train import TrainHistory, TrainSettings, bench_config, train_lm, train_settings
from whylab.messages import Msg
from whylab.results import FigureRef
from whylab.verdict import Spread


@dataclass
class Corpus:
    """The concatenated train and validation token ids of every corpus file the rule passed in."""

    train: torch.Tensor
    valid: torch.Tensor
    vocab_size: int
    tokenizer: Any


def load_corpus(inputs: Mapping[str, Path]) -> Corpus:
    """Encode every input named ``train*`` / ``valid*`` with the ``tokenizer`` input."""
    from whylab.bench.data import lm_data

    tokenizer, train, valid = lm_data(inputs)
    return Corpus(train, valid, int(tokenizer.get_vocab_size()), tokenizer)


def given(settings: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The ``keys`` a concept's section sets (not None), as overrides of the shared model or
    train section: a key left unset (None) keeps the shared value."""
    return {k: settings[k] for k in keys if settings.get(k) is not None}


def build_model(cfg: Any, seed: int, device: str) -> Any:
    """A BenchTransformer whose initial weights depend only on ``seed``, so two variants built
    with the same seed start from the same random draws where their shapes agree (paired
    comparisons)."""
    from whylab.bench.model import BenchTransformer

    torch.manual_seed(int(seed))
    return BenchTransformer(cfg).to(device)


def train_on_corpus(
    settings: Mapping[str, Any],
    corpus: Corpus,
    seed: int,
    device: str,
    model_over: Mapping[str, Any] | None = None,
    train_over: Mapping[str, Any] | None = None,
) -> tuple[Any, TrainSettings, TrainHistory]:
    """A bench LM built from ``seed`` (``model`` section plus ``model_over``) and trained on the
    corpus (``train`` section plus ``train_over``): the model, its train settings and history."""
    cfg = bench_config(settings.get("model", {}), vocab_size=corpus.vocab_size, **(model_over or {}))
    model = build_model(cfg, seed, device)
    ts = train_settings(settings.get("train", {}), seed=seed, **(train_over or {}))
    return model, ts, train_lm(model, corpus.train, corpus.valid, ts, device=device)


class SyntheticTask(Protocol):
    """A task of fixed-length sequences whose answer is predicted at the last position."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def seq_len(self) -> int: ...

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """At least ``ids`` (B, seq_len) and ``target`` (B,), drawn from ``gen`` only."""
        ...


def last_position_loss(model: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the answer at the last position only (the query's prediction)."""
    return F.cross_entropy(model(x).logits[:, -1, :], y)


def train_on_task(
    settings: Mapping[str, Any], task: SyntheticTask, seed: int, device: str, **model_over: Any
) -> tuple[Any, TrainHistory]:
    """A bench model for ``task``, built from ``seed`` with the ``task`` section's depth and no
    dropout (``model_over`` on top), trained on fresh task batches with the last-position loss
    for the section's steps, batch size and learning rate (no warm-up)."""
    tc = settings["task"]
    cfg = bench_config(
        settings.get("model", {}),
        vocab_size=task.vocab_size,
        n_layers=tc["n_layers"],
        max_len=task.seq_len,
        dropout=0.0,
        **model_over,
    )
    model = build_model(cfg, seed, device)
    ts = train_settings(
        settings.get("train", {}),
        seed=seed,
        steps=tc["steps"],
        batch_size=tc["batch_size"],
        seq_len=task.seq_len,
        lr=tc["lr"],
        warmup_steps=0,
    )

    def batch_fn(step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s = task.sample(tc["batch_size"], gen)
        return s["ids"], s["target"]

    history = train_lm(model, None, None, ts, device=device, loss_fn=last_position_loss, batch_fn=batch_fn)
    return model, history


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and the per-seed values, as JSON-able numbers for the
    metrics. A non-finite value (a run that blew up) is kept as None and left out of mean and std."""
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "values": [None] * len(vals)}
    s = Spread.of(finite)
    return {
        "mean": s.mean,
        "std": None if math.isnan(s.std) else s.std,
        "values": [v if math.isfinite(v) else None for v in vals],
    }


def values(entry: Mapping[str, Any]) -> list[float]:
    """The per-seed values of a :func:`summary` (None, i.e. a failed run, dropped)."""
    return [float(v) for v in entry.get("values", []) if v is not None]


def fmt(spread: Mapping[str, Any] | Sequence[float], digits: int = 3, notation: str = "g") -> str:
    """'mean ± std' for a table cell or a reason, of a :func:`summary` or of raw per-seed values
    (summarised first); 'n/a' when no run finished. ``notation`` is the format type: "g" counts
    significant digits, "f" digits after the point."""
    entry = spread if isinstance(spread, Mapping) else summary(spread)
    if entry.get("mean") is None:
        return "n/a"
    if entry.get("std") is None:
        return f"{entry['mean']:.{digits}{notation}}"
    return f"{entry['mean']:.{digits}{notation}} ± {entry['std']:.{digits}{notation}}"


def curves_frame(histories: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Long table (variant, run, step, validation loss) from TrainHistory objects per variant;
    non-finite losses (a run that blew up) are left out."""
    rows = []
    for variant, runs in histories.items():
        for i, hist in enumerate(runs):
            for step, loss in zip(hist.eval_steps, hist.eval_loss, strict=True):
                if math.isfinite(loss):
                    rows.append({"variant": variant, "run": i, "step": step, "eval_loss": float(loss)})
    return pd.DataFrame(rows, columns=["variant", "run", "step", "eval_loss"])


def plot_curves(
    histories: Mapping[str, Sequence[Any]], outdir: Path, name: str, title: str, caption: str
) -> FigureRef:
    """Validation loss vs step: the mean over seeds as a line, ±1 standard deviation as a band."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    frame = curves_frame(histories)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(
        data=frame, x="step", y="eval_loss", hue="variant", errorbar="sd", ax=ax, marker="o", markersize=4
    )
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation loss (nats/token)")
    return plotting.save(fig, outdir, name, title, caption)


def attention_rows_figure(
    panels: Mapping[str, tuple[Any, Sequence[int]]],
    outdir: Path,
    name: str,
    title: str,
    caption: str,
    xlabel: str,
) -> FigureRef:
    """One heatmap per panel (titled by its key when there are several): row i is example i's
    query attention over key positions, with a red box on the position it should find."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    n_rows = max(len(rows) for rows, _ in panels.values())
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 0.45 * n_rows + 1.8), squeeze=False, layout="constrained"
    )
    for k, (ax, (label, (rows, positions))) in enumerate(zip(axes[0], panels.items(), strict=True)):
        sns.heatmap(
            rows,
            ax=ax,
            vmin=0,
            vmax=1,
            cmap="viridis",
            cbar=k == len(panels) - 1,
            cbar_kws={"label": "attention weight (probability)"},
        )
        for i, p in enumerate(positions):
            ax.add_patch(plt.Rectangle((p, i), 1, 1, fill=False, edgecolor="red", linewidth=2))
        if len(panels) > 1:
            ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("example sequence (index)")
    return plotting.save(fig, outdir, name, title, caption)


# --------------------------------------------------------------------------- the shared baseline


def baseline_inputs(inputs: Mapping[str, Path], seed: int) -> tuple[Path, Path] | None:
    """(weights, history) of the baseline of ``seed`` among a rule's inputs, or None.

    The rules name them ``baseline_<seed>`` / ``baseline_history_<seed>`` (the mechanisms.smk hook
    for inputs that are a function of the seed); a hand-made call may pass ``baseline`` /
    ``baseline_history`` for its one seed.
    """
    for weights, history in (
        (f"baseline_{seed}", f"baseline_history_{seed}"),
        ("baseline", "baseline_history"),
    ):
        if weights in inputs:
            path = Path(inputs[weights])
            return path, Path(inputs.get(history, path.with_name("history.json")))
    return None


def learned_baseline(
    settings: Mapping[str, Any], inputs: Mapping[str, Path], corpus: Corpus, seed: int, device: str
) -> tuple[Any, TrainHistory]:
    """The learned baseline bench LM of ``seed`` (the standard model with the shared ``model`` and
    ``train`` settings): loaded from the baseline rule's files when the rule passed them, trained
    here otherwise. Either way the same seed gives the same model."""
    from whylab.bench.baseline import load_baseline, train_baseline

    found = baseline_inputs(inputs, seed)
    if found is not None:
        return load_baseline(settings, corpus.vocab_size, seed, device, *found)
    return train_baseline(settings, corpus.train, corpus.valid, corpus.vocab_size, seed, device)


# --------------------------------------------------------------------------- paired statistics


def history_dict(hist: TrainHistory) -> dict[str, Any]:
    """The evaluation curve of a run, JSON-able (non-finite losses as None)."""
    return {
        "eval_steps": list(hist.eval_steps),
        "eval_loss": [float(v) if math.isfinite(v) else None for v in hist.eval_loss],
    }


@dataclass
class Curve:
    """A stored evaluation curve, shaped like a TrainHistory for :func:`plot_curves`."""

    eval_steps: list[int]
    eval_loss: list[float]


def curve(d: Mapping[str, Any]) -> Curve:
    return Curve(list(d["eval_steps"]), [math.nan if v is None else float(v) for v in d["eval_loss"]])


def finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def paired(a: Sequence[float | None], b: Sequence[float | None], min_effect: float) -> dict[str, Any]:
    """Paired test of a − b over seeds (only seeds where both are finite), with the effect
    decision at ``min_effect`` (+1 a clearly above b, −1 clearly below, 0 not clear) and whether
    the 95% CI of the difference lies inside ±min_effect (no difference that matters)."""
    from whylab.verdict import effect, equivalent, paired_test

    both = [(finite(x), finite(y)) for x, y in zip(a, b, strict=True)]
    pairs = [(x, y) for x, y in both if x is not None and y is not None]
    out: dict[str, Any] = {"n": len(pairs), "min_effect": float(min_effect)}
    if len(pairs) < 2:
        out.update(effect=0, equivalent=False, test=None)
        return out
    test = paired_test([p[0] for p in pairs], [p[1] for p in pairs])
    out.update(
        test=jsonable_test(test.to_dict()),
        effect=effect(test, min_effect),
        equivalent=equivalent(test, min_effect),
    )
    return out


def jsonable_test(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def describe(p: Mapping[str, Any], unit: str, digits: int = 3) -> Msg:
    """'Δ = +0.123 unit (95% CI +0.05 to +0.2, p = 0.01, n = 5)' for a :func:`paired` entry."""
    t = p.get("test")
    if not t:
        return Msg("common.paired.too_few", n=p.get("n", 0))
    return Msg(
        "common.paired.delta",
        mean=t["mean_diff"],
        low=t["ci_low"],
        high=t["ci_high"],
        p=t["p"],
        n=t["n"],
        digits=digits,
        unit=f" {unit}" if unit else "",
    )


def part_status(p: Mapping[str, Any], rejected: bool) -> str:
    """A verdict part from a :func:`paired` comparison a − b whose Holm decision is ``rejected``:
    'confirmed' (a clearly above b past the floor), 'contradicted' (clearly below, or a 95% CI
    inside ±floor: no difference that matters) or 'limited' (neither: this run cannot judge it;
    a limited part never lowers a label, VALIDITY.md)."""
    t = p.get("test")
    if t and rejected and t["mean_diff"] > p["min_effect"]:
        return "confirmed"
    if (t and rejected and t["mean_diff"] < -p["min_effect"]) or p.get("equivalent"):
        return "contradicted"
    return "limited"


def label_of(statuses: Sequence[str]) -> str:
    """The label from the judged parts: all confirmed → supported; all contradicted → not
    supported; a mix → partly; nothing judged → inconclusive (as the Label's value)."""
    judged = [s for s in statuses if s != "limited"]
    if not judged:
        return "inconclusive"
    if all(s == "confirmed" for s in judged):
        return "supported"
    if all(s == "contradicted" for s in judged):
        return "not supported"
    return "partly supported"


def holm_of(comparisons: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
    """Holm over the named :func:`paired` comparisons (a missing test counts as p = nan)."""
    from whylab.verdict import holm

    return holm({k: _p(c) for k, c in comparisons.items()})


def _p(c: Mapping[str, Any]) -> float:
    t = c.get("test")
    return float(t["p"]) if t and t.get("p") is not None else math.nan
