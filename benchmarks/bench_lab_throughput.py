"""Training throughput of the default bench lab model, against this CPU's FP32 matmul peak.

    python benchmarks/bench_lab_throughput.py [--configfile config/config.yaml] [--steps 30]
                                              [--rounds 5] [--replicas 5] [--compile] [--profile]

Builds the ``mechanisms.model`` / ``mechanisms.train`` shape of the config (vocab from
``mechanisms.tokenizer``) on random token ids and trains it on one thread, each path once per
round, the paths interleaved in the same process (a shared machine's noise falls on all alike):

- ``old path``: the loop before the fast path (``whylab.bench.reference``: additive causal mask,
  ``F.cross_entropy``, foreach AdamW, two gradient-norm passes);
- ``fast path``: ``train_lm`` as the claims use it (``is_causal`` attention, the one-pass
  cross-entropy backward, fused AdamW, one norm pass);
- ``batched R=5``: ``train_replicas``, R models at once (R = the default seed count);
- ``compiled`` (``--compile``): the fast path with the model under ``torch.compile`` (inductor,
  its cache in ``--cache-dir``); the first step's wall time, compilation included, is printed
  on its own: it is what a claim's measure job would pay per model shape and process.

Prints for each the median training GFLOP/s over the rounds, its share of this process's
2048x2048 FP32 matmul GFLOP/s, and training tokens per CPU-second. FLOPs per token: 6 x the
matmul parameters (every Linear weight, lm_head included; embedding tables are lookups, not
matmuls) plus the attention score and value products, 2 x 2 x T x d_model per layer forward,
x3 for forward + backward (the full T x T square is counted). Both the peak and the training
rates are per CPU-second of this thread, so a busy shared machine skews them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from whylab.bench.model import BenchConfig, BenchTransformer  # noqa: E402
from whylab.bench.reference import train_reference  # noqa: E402
from whylab.bench.replicas import train_replicas  # noqa: E402
from whylab.bench.train import TrainSettings, bench_config, lm_loss, train_lm, train_settings  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return " ".join(f"{f}{'+' if f in have else '-'}" for f in FLAGS)


def matmul_gflops(n: int = 2048, rounds: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(rounds):
        t = time.thread_time()
        a @ b
        best = min(best, time.thread_time() - t)
    return 2 * n**3 / best / 1e9


def flops_per_token(model: torch.nn.Module, cfg: BenchConfig, seq_len: int) -> float:
    matmul_params = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.requires_grad
    )
    attention = 3 * cfg.n_layers * 2 * 2 * seq_len * cfg.d_model
    return 6 * matmul_params + attention


def lab_shape(configfile: str) -> tuple[BenchConfig, TrainSettings]:
    from whylab.config import load_config

    mech = load_config(Path(configfile))["mechanisms"]
    cfg = bench_config(mech.get("model", {}), vocab_size=int(mech["tokenizer"]["vocab_size"]))
    return cfg, train_settings(mech.get("train", {}))


Trainer = Callable[[list[torch.nn.Module], torch.Tensor, list[TrainSettings]], object]


def _train_compiled(models: list[torch.nn.Module], data: torch.Tensor, per: list[TrainSettings]) -> None:
    compiled = cast(torch.nn.Module, torch.compile(models[0]))

    def loss(_: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lm_loss(compiled, x, y)

    train_lm(models[0], data, None, per[0], loss_fn=loss)


PATHS: dict[str, tuple[int, Trainer]] = {
    "old path": (1, lambda m, d, p: train_reference(m[0], d, p[0])),
    "fast path": (1, lambda m, d, p: train_lm(m[0], d, None, p[0])),
    "batched": (0, lambda m, d, p: train_replicas(m, d, None, p)),
    "compiled": (1, _train_compiled),
}


def run(
    cfg: BenchConfig, ts: TrainSettings, replicas: int, data: torch.Tensor, path: str
) -> dict[str, float]:
    """Train ``replicas`` models along ``path`` (see PATHS) without evaluation."""
    models: list[torch.nn.Module] = []
    for seed in range(replicas):
        torch.manual_seed(seed)
        models.append(BenchTransformer(cfg))
    per = [dataclasses.replace(ts, seed=s) for s in range(replicas)]
    wall, cpu = time.perf_counter(), time.thread_time()
    PATHS[path][1](models, data, per)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    tokens = replicas * ts.steps * ts.batch_size * ts.seq_len
    gflop = tokens * flops_per_token(models[0], cfg, ts.seq_len) / 1e9
    return {"gflops": gflop / cpu, "tok_per_cpu_s": tokens / cpu, "wall": wall}


def compile_cost(cfg: BenchConfig, ts: TrainSettings, data: torch.Tensor) -> float:
    """Wall seconds of one compiled training step on a fresh model: compilation (or a cache hit)."""
    return run(cfg, dataclasses.replace(ts, steps=1), 1, data, "compiled")["wall"]


def profile(cfg: BenchConfig, ts: TrainSettings, data: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run(cfg, dataclasses.replace(ts, steps=10), 1, data, "fast path")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--replicas", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each path's median is shown")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor)")
    ap.add_argument("--cache-dir", default=None, help="TORCHINDUCTOR_CACHE_DIR for --compile")
    ap.add_argument("--profile", action="store_true", help="the fast path's top ops")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cache_dir:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.cache_dir).resolve())
    cfg, ts = lab_shape(args.configfile)
    ts = dataclasses.replace(ts, steps=args.steps, eval_every=10**9)
    data = torch.randint(0, cfg.vocab_size, (200_000,), generator=torch.Generator().manual_seed(0))
    print(f"cpu: {cpu_flags()}")
    print(
        f"model: d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, vocab {cfg.vocab_size}; "
        f"batch {ts.batch_size}x{ts.seq_len}; {args.steps} steps x {args.rounds} rounds, interleaved; "
        f"torch {torch.__version__}, 1 thread"
    )
    peak = matmul_gflops()
    print(f"matmul 2048x2048 FP32: {peak:.1f} GFLOP/s")
    paths = ["old path", "fast path", "batched"] + (["compiled"] if args.compile else [])
    if args.compile:
        print(f"compiled: first step {compile_cost(cfg, ts, data):.1f} s wall (compilation or cache hit)")
    sizes = {p: PATHS[p][0] or args.replicas for p in paths}
    for p in paths:
        run(cfg, dataclasses.replace(ts, steps=3), sizes[p], data, p)  # warm-up
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in paths}
    for _ in range(args.rounds):
        for p in paths:
            runs[p].append(run(cfg, ts, sizes[p], data, p))
    medians: dict[str, dict[str, float]] = {}
    for p in paths:
        med = {k: statistics.median(r[k] for r in runs[p]) for k in ("gflops", "tok_per_cpu_s")}
        medians[p] = med
        name = f"batched R={args.replicas}" if p == "batched" else p
        print(
            f"{name:>14}: {med['gflops']:6.1f} GFLOP/s = {100 * med['gflops'] / peak:4.1f}% of peak, "
            f"{med['tok_per_cpu_s']:,.0f} tokens per CPU-second "
            f"(x{med['gflops'] / medians[paths[0]]['gflops']:.2f} the old path)"
        )
    if args.profile:
        profile(cfg, ts, data)
    best = max(medians.values(), key=lambda m: m["gflops"])
    print(
        f"bench lab: {best['gflops']:.1f} GFLOP/s = {100 * best['gflops'] / peak:.0f}% of matmul peak ({peak:.1f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
