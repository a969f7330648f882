"""Training throughput of the default bench lab model, against this CPU's FP32 matmul peak.

    python benchmarks/bench_lab_throughput.py [--configfile config/config.yaml] [--steps 30]
                                              [--replicas 5] [--profile]

Builds the ``mechanisms.model`` / ``mechanisms.train`` shape of the config (vocab from
``mechanisms.tokenizer``) on random token ids and trains it on one thread, one model at a time
(``train_lm``) and R models at once (``train_replicas``, R = the default seed count). Prints for
each the training GFLOP/s, its share of this process's 2048x2048 FP32 matmul GFLOP/s, and
training tokens per CPU-second. FLOPs per token: 6 x the matmul parameters (every Linear
weight, lm_head included; embedding tables are lookups, not matmuls) plus the attention
score and value products, 2 x 2 x T x d_model per layer forward, x3 for forward + backward
(the full T x T square is counted, as the kernel computes it). Both the peak and the training
rates are per CPU-second of this thread, so a busy shared machine skews them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from whylab.bench.model import BenchConfig, BenchTransformer  # noqa: E402
from whylab.bench.replicas import train_replicas  # noqa: E402
from whylab.bench.train import TrainSettings, bench_config, train_lm, train_settings  # noqa: E402

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


def run(cfg: BenchConfig, ts: TrainSettings, replicas: int, data: torch.Tensor) -> dict[str, float]:
    """Train ``replicas`` models (1: train_lm; more: train_replicas) without evaluation."""
    models = []
    for seed in range(replicas):
        torch.manual_seed(seed)
        models.append(BenchTransformer(cfg))
    per = [dataclasses.replace(ts, seed=s) for s in range(replicas)]
    wall, cpu = time.perf_counter(), time.thread_time()
    if replicas == 1:
        train_lm(models[0], data, None, per[0])
    else:
        train_replicas(models, data, None, per)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    tokens = replicas * ts.steps * ts.batch_size * ts.seq_len
    gflop = tokens * flops_per_token(models[0], cfg, ts.seq_len) / 1e9
    return {"gflops": gflop / cpu, "tok_per_cpu_s": tokens / cpu, "wall": wall}


def profile(cfg: BenchConfig, ts: TrainSettings, replicas: int, data: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run(cfg, dataclasses.replace(ts, steps=10), replicas, data)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--replicas", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="best of this many runs per path")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg, ts = lab_shape(args.configfile)
    ts = dataclasses.replace(ts, steps=args.steps, eval_every=10**9)
    data = torch.randint(0, cfg.vocab_size, (200_000,), generator=torch.Generator().manual_seed(0))
    print(f"cpu: {cpu_flags()}")
    print(
        f"model: d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, vocab {cfg.vocab_size}; "
        f"batch {ts.batch_size}x{ts.seq_len}; {args.steps} steps; torch {torch.__version__}, 1 thread"
    )
    peak = matmul_gflops()
    print(f"matmul 2048x2048 FP32: {peak:.1f} GFLOP/s")
    results: dict[str, dict[str, Any]] = {}
    for name, r in (("one at a time", 1), (f"batched R={args.replicas}", args.replicas)):
        run(cfg, dataclasses.replace(ts, steps=3), r, data)  # warm-up
        best = max((run(cfg, ts, r, data) for _ in range(args.rounds)), key=lambda d: d["gflops"])
        results[name] = best
        print(
            f"{name:>14}: {best['gflops']:6.1f} GFLOP/s = {100 * best['gflops'] / peak:4.1f}% of peak, "
            f"{best['tok_per_cpu_s']:,.0f} tokens per CPU-second"
        )
    if args.profile:
        profile(cfg, ts, args.replicas, data)
    name, best = max(results.items(), key=lambda kv: kv[1]["gflops"])
    print(
        f"bench lab: {best['gflops']:.1f} GFLOP/s = {100 * best['gflops'] / peak:.0f}% of matmul peak ({peak:.1f} GFLOP/s)"
    )


if __name__ == "__main__":
    main()
