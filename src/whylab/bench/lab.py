"""What the bench-model experiments share when they measure: the corpus, seeded models trained
on it or on a synthetic task, and the shared learned baseline LM (C03, C04, C06).

Each experiment trains variants of the same bench transformer, built and trained from the
``mechanisms`` config (``model``, ``train``, ``tokenizer`` sections merged into the settings by
the rule; :func:`whylab.bench.train.bench_config` / :func:`~whylab.bench.train.train_settings`
turn a section plus per-experiment overrides into a BenchConfig / TrainSettings). Measuring
only: no statistics, figures or texts (those are in ``whylab.concepts._bench_stats`` and
``_bench_figures``), so editing them re-runs no training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from whylab.bench.train import TrainHistory, TrainSettings, bench_config, train_lm, train_settings


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


def history_dict(hist: TrainHistory) -> dict[str, Any]:
    """The evaluation curve of a run, JSON-able (non-finite losses as None)."""
    return {
        "eval_steps": list(hist.eval_steps),
        "eval_loss": [float(v) if math.isfinite(v) else None for v in hist.eval_loss],
    }


__all__ = [
    "Corpus",
    "SyntheticTask",
    "baseline_inputs",
    "build_model",
    "given",
    "history_dict",
    "last_position_loss",
    "learned_baseline",
    "load_corpus",
    "train_on_corpus",
    "train_on_task",
]
