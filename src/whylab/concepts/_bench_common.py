"""What the bench-model claims (C03, C04, C06, C07, C08, C09) share: the corpus, seeded models,
mean ± spread over seeds, and the seed-band figure of training curves.

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
from typing import Any

import pandas as pd
import torch

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


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and the per-seed values, as JSON-able numbers for the
    metrics. A non-finite value (a run that blew up) is kept as None and left out of mean and std."""
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "values": [None] * len(vals)}
    s = Spread.of(finite)
    return {"mean": s.mean, "std": None if math.isnan(s.std) else s.std,
            "values": [v if math.isfinite(v) else None for v in vals]}


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


def plot_curves(histories: Mapping[str, Sequence[Any]], outdir: Path, name: str, title: str,
                caption: str) -> FigureRef:
    """Validation loss vs step: the mean over seeds as a line, ±1 standard deviation as a band."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    frame = curves_frame(histories)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.lineplot(data=frame, x="step", y="eval_loss", hue="variant", errorbar="sd", ax=ax,
                 marker="o", markersize=4)
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation loss (nats/token)")
    return plotting.save(fig, outdir, name, title, caption)
