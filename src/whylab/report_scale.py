"""The run's scale for the report's banner: the device and seeds, the bench transformer, the
language model, the memory model and the corpus, each in a line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.messages import Msg, empty


def _bench_parameters(config: Mapping[str, Any]) -> int | None:
    """Parameters of the bench transformer the mechanism claims train (C03–C10), built from the
    config on torch's meta device (no memory, no weights); None when the config lacks it, or
    where torch is not installed (the report rule's torch-free environment under ``--sdm conda``:
    the banner then leaves the count out)."""
    mech = config.get("mechanisms")
    if not isinstance(mech, Mapping) or not isinstance(mech.get("model"), Mapping):
        return None
    vocab = (mech.get("tokenizer") or {}).get("vocab_size")
    if not vocab:
        return None
    try:
        import torch
    except ImportError:
        return None

    from whylab.bench.model import BenchTransformer, count_parameters
    from whylab.bench.train import bench_config

    try:
        cfg = bench_config(mech["model"], vocab_size=int(vocab))
    except (TypeError, ValueError):
        return None
    with torch.device("meta"):
        return count_parameters(BenchTransformer(cfg))


def _count(n: float) -> str:
    """12_345 → "12k", 1_100_000 → "1.1M"."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:g}"


def _n(value: Any, key: str) -> Msg:
    """A count with its noun, e.g. ``report.scale.layers`` with 3 → "3 layers" ("?" when unknown)."""
    return Msg(f"report.scale.{key}.{'one' if value == 1 else 'other'}", n="?" if value is None else value)


def run_scale(
    config: Mapping[str, Any],
    extras: Mapping[str, Mapping[str, Any]],
    corpus: Mapping[str, Any] | None,
    device: str,
) -> list[tuple[Msg, Msg | str]]:
    """The run's scale in a few lines (what, how big), for the banner under the title."""
    none = empty()
    out: list[tuple[Msg, Msg | str]] = []
    seeds = config.get("seeds") or []
    out.append(
        (
            Msg("report.scale.device"),
            Msg("report.scale.device_text", device=device, seeds=_n(len(seeds), "seeds") if seeds else none),
        )
    )
    mech = config.get("mechanisms") or {}
    model = mech.get("model") or {}
    train = mech.get("train") or {}
    params = _bench_parameters(config)
    if model:
        out.append(
            (
                Msg("report.scale.bench"),
                Msg(
                    "report.scale.bench_text",
                    params=Msg("report.scale.bench_params", n=_count(params)) if params else none,
                    layers=_n(model.get("n_layers"), "layers"),
                    width=model.get("d_model", "?"),
                    heads=_n(model.get("n_heads"), "heads"),
                    steps=_n(train.get("steps"), "training_steps"),
                    batch=train.get("batch_size", "?"),
                    seq_len=train.get("seq_len", "?"),
                ),
            )
        )
    lm = extras.get("lm_train_metrics")
    if lm:
        langs = ", ".join(map(str, lm.get("train_languages") or []))
        tokens = lm.get("tokens_trained")
        out.append(
            (
                Msg("report.scale.lm"),
                Msg(
                    "report.scale.lm_text",
                    params=_count(float(lm.get("params_total", 0))),
                    steps=_n(lm.get("steps"), "steps"),
                    tokens=Msg("report.scale.tokens", n=_count(float(tokens))) if tokens else none,
                    languages=Msg("report.scale.languages", languages=langs) if langs else none,
                    device=str(lm.get("device_name") or lm.get("device", "?")),
                    precision=str(lm.get("precision", "?")),
                    threads=_n(lm["threads"], "threads") if lm.get("threads") else none,
                ),
            )
        )
    mem = (config.get("memory") or {}).get("model") or {}
    if mem:
        out.append(
            (
                Msg("report.scale.memory"),
                Msg(
                    "report.scale.memory_text",
                    layers=_n(mem.get("num_layers"), "layers"),
                    width=mem.get("hidden_size", "?"),
                ),
            )
        )
    if corpus and isinstance(corpus.get("languages"), Mapping):
        parts = []
        for lang, stats in corpus["languages"].items():
            chars = stats.get("chars") or {}
            parts.append(
                Msg(
                    "report.scale.corpus_language",
                    language=lang,
                    train=_count(float(chars.get("train", 0))),
                    valid=_count(float(chars.get("valid", 0))),
                )
            )
        out.append((Msg("report.scale.corpus"), Msg("common.list", parts=parts)))
    return out


def _first(config: Mapping[str, Any], *paths: str) -> Any:
    """The first of the dotted ``paths`` the claim's config sets (None when none)."""
    for path in paths:
        value: Any = config
        for key in path.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is not None:
            return value
    return None


# where a claim's config names what it trains, most specific first: a claim's own setting (C08's
# width, C11's task model), its task's, then the shared model it reuses (the bench transformer of
# C03-C10 as ``model.n_layers``, the memory claims' Llama as ``model.num_layers``)
STEPS = ("steps", "task.steps", "train.steps", "max_steps", "training.max_steps")
LAYERS = ("n_layers", "task.n_layers", "model.n_layers", "model.num_layers")
WIDTH = ("d_model", "task.d_model", "model.d_model", "model.hidden_size")


def _layers(config: Mapping[str, Any]) -> Any:
    """The trained model's depth: the depths of the primary cells where a claim trains stacks of
    its own depth (C08: "6 layers", or "6–12 layers" across cells), else the first of ``LAYERS``."""
    cells = config.get("primary_cells")
    depths = (
        sorted({int(c["depth"]) for c in cells if isinstance(c, Mapping) and "depth" in c}) if cells else []
    )
    if depths:
        return depths[0] if len(depths) == 1 else f"{depths[0]}–{depths[-1]}"
    return _first(config, *LAYERS)


def claim_scale(record: Mapping[str, Any]) -> Msg | str:
    """One claim's scale, from its result: its seeds and, where its config sets them, its training
    steps and its model's layers and width ("" when the result records none of these)."""
    config = record.get("config") or {}
    seeds = record.get("seeds") or config.get("seeds") or []
    steps = _first(config, *STEPS)
    layers = _layers(config)
    width = _first(config, *WIDTH)
    if not seeds and steps is None and width is None:
        return ""
    none = empty()
    return Msg(
        "report.scale.claim_text",
        seeds=_n(len(seeds), "claim_seeds"),
        steps=_n(steps, "claim_steps") if steps is not None else none,
        model=Msg("report.scale.claim_model", layers=_n(layers, "layers"), width=width)
        if width is not None
        else none,
    )
