"""What the bench-model claims C03, C04 and C06 share: the corpus, the model and training settings,
and the seed-band figure of training curves.

Kept in one place so the three experiments build their language models the same way from the
``mechanisms`` config (``model``, ``train``, ``tokenizer`` sections merged into the settings by
the rule), and a reader of one concept module sees only what is specific to its claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

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


def bench_config(settings: Mapping[str, Any], vocab_size: int, **overrides: Any) -> Any:
    """A BenchConfig from the ``model`` section of the settings, with per-experiment overrides."""
    from whylab.bench.train import bench_config as from_section

    return from_section(settings.get("model", {}), vocab_size=vocab_size, **overrides)


def train_settings(settings: Mapping[str, Any], seed: int, **overrides: Any) -> Any:
    """TrainSettings from the ``train`` section of the settings, with per-experiment overrides."""
    from whylab.bench.train import train_settings as from_section

    return from_section(settings.get("train", {}), **overrides, seed=int(seed))


def build_model(cfg: Any, seed: int, device: str) -> Any:
    """A BenchTransformer whose initial weights depend only on ``seed`` (paired comparisons:
    two variants built with the same seed start from the same embedding)."""
    from whylab.bench.model import BenchTransformer

    torch.manual_seed(seed)
    return BenchTransformer(cfg).to(device)


def spread_dict(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std and the per-seed values, as JSON-able numbers for the metrics."""
    vals = [float(v) for v in values]
    s = Spread.of(vals)
    return {"mean": s.mean, "std": None if math.isnan(s.std) else s.std, "values": vals}


def fmt(values: Sequence[float], digits: int = 3) -> str:
    """'mean ± std' for a table cell."""
    s = Spread.of([float(v) for v in values])
    if s.n < 2:
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


def curves_frame(histories: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Long table (variant, seed index, step, eval loss) from TrainHistory objects per variant."""
    rows = []
    for variant, runs in histories.items():
        for i, hist in enumerate(runs):
            for step, loss in zip(hist.eval_steps, hist.eval_loss, strict=True):
                rows.append({"variant": variant, "run": i, "step": step, "eval_loss": float(loss)})
    return pd.DataFrame(rows)


def plot_curves(histories: Mapping[str, Sequence[Any]], outdir: Path, name: str, title: str,
                caption: str) -> Any:
    """Validation loss vs step, mean line and ±1 std band over seeds, one colour per variant."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from whylab import plotting

    frame = curves_frame(histories)
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=frame, x="step", y="eval_loss", hue="variant", errorbar="sd", ax=ax,
                 marker="o")
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel("validation loss (nats/token)")
    return plotting.save(fig, outdir, name, title, caption)
