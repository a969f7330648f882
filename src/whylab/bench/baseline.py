"""The learned baseline bench LM: the standard bench model (learned embedding, W_q, W_k, W_v, W_o)
trained on the corpus with the shared ``mechanisms.model`` and ``mechanisms.train`` settings.

C03 (learned vs frozen embedding), C04 (learned W_q, W_k vs Q = K = X) and C06 (reference row)
all compare against this one model, so it is trained once per seed as its own DAG node
(``workflow/rules/bench_baseline.smk``) and loaded by each of them: weights as safetensors,
the training history as JSON (never pickle). A claim run without the files (a benchmark, a
unit test) trains the same model in-process; both paths give the same numbers for a seed,
because the weights are seeded by the seed and the batches come from a generator seeded by it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from whylab.bench.model import BenchTransformer
from whylab.bench.train import TrainHistory, bench_config, train_lm, train_settings
from whylab.errors import InputError
from whylab.files import atomic_path, write_json

FORMAT = "whylab-bench-baseline/1"


def baseline_spec(settings: Mapping[str, Any], vocab_size: int, seed: int) -> dict[str, Any]:
    """What defines the baseline of one seed: the bench config and the train settings, as JSON."""
    cfg = bench_config(settings.get("model", {}), vocab_size=vocab_size)
    ts = train_settings(settings.get("train", {}), seed=seed)
    return {"model": dataclasses.asdict(cfg), "train": dataclasses.asdict(ts), "seed": int(seed)}


def build_baseline(settings: Mapping[str, Any], vocab_size: int, seed: int, device: str) -> BenchTransformer:
    """The untrained baseline of ``seed`` (its initial weights depend only on the seed)."""
    cfg = bench_config(settings.get("model", {}), vocab_size=vocab_size)
    torch.manual_seed(int(seed))
    return BenchTransformer(cfg).to(device)


def train_baseline(
    settings: Mapping[str, Any],
    train: torch.Tensor,
    valid: torch.Tensor,
    vocab_size: int,
    seed: int,
    device: str,
) -> tuple[BenchTransformer, TrainHistory]:
    """Build and train the baseline of ``seed`` on the id streams ``train`` / ``valid``."""
    model = build_baseline(settings, vocab_size, seed, device)
    ts = train_settings(settings.get("train", {}), seed=seed)
    return model, train_lm(model, train, valid, ts, device=device)


def history_from_dict(d: Mapping[str, Any]) -> TrainHistory:
    names = {f.name for f in dataclasses.fields(TrainHistory)}
    values = {k: v for k, v in d.items() if k in names}
    values["final_eval_loss"] = (
        math.nan if values.get("final_eval_loss") is None else float(values["final_eval_loss"])
    )
    return TrainHistory(**values)


def save_baseline(
    model: BenchTransformer, history: TrainHistory, spec: Mapping[str, Any], weights: Path, history_path: Path
) -> None:
    with atomic_path(weights) as tmp:
        save_model(model.cpu(), str(tmp), metadata={"format": FORMAT})
    h = history.to_dict()
    if not math.isfinite(h["final_eval_loss"]):
        h["final_eval_loss"] = None
    write_json(Path(history_path), {"format": FORMAT, "spec": dict(spec), "history": h})


def load_baseline(
    settings: Mapping[str, Any], vocab_size: int, seed: int, device: str, weights: Path, history_path: Path
) -> tuple[BenchTransformer, TrainHistory]:
    """The trained baseline of ``seed`` from its files; an InputError when they were made with
    other settings than the claim's (a stale file would silently pair the wrong runs)."""
    record = json.loads(Path(history_path).read_text(encoding="utf-8"))
    want = json.loads(json.dumps(baseline_spec(settings, vocab_size, seed)))
    if record.get("format") != FORMAT or record.get("spec") != want:
        raise InputError(
            f"baseline {str(history_path)!r} was trained with other settings than mechanisms.model / "
            f"mechanisms.train / seed {seed} of this run; rebuild it"
        )
    model = build_baseline(settings, vocab_size, seed, "cpu")
    load_model(model, str(weights))
    return model.to(device), history_from_dict(record["history"])


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """``python -m whylab bench_baseline``: train the baseline of ``settings["seed"]``; outputs
    ``weights`` (safetensors) and ``history`` (JSON)."""
    from whylab.bench.data import lm_data
    from whylab.runtime import resolve_device, set_threads

    for key in ("weights", "history"):
        if key not in outputs:
            raise InputError(f"bench_baseline: no output named {key} was given")
    if "seed" not in settings:
        raise InputError("bench_baseline: settings need a seed")
    set_threads(threads)
    device = resolve_device(str(settings.get("device", "auto")))
    seed = int(settings["seed"])
    tokenizer, train, valid = lm_data(inputs)
    vocab = int(tokenizer.get_vocab_size())
    spec = baseline_spec(settings, vocab, seed)
    model, history = train_baseline(settings, train, valid, vocab, seed, device)
    save_baseline(model, history, spec, outputs["weights"], outputs["history"])
