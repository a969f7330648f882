"""Tokens/s of whylab's LM training loop vs a plain hand-written loop, same model and data.

    python benchmarks/bench_lm_train.py [--steps 20] [--rounds 3] [--threads 1] [--device auto]

Both loops train a fresh copy of the same LlamaForCausalLM (the default lm.model shape)
on the same token blocks with the same batch size and precision, in this process.
The reference is the minimal forward / backward / AdamW step; whylab.lm.train adds the
LR schedule, gradient clipping, seeded batch order, deferred loss read-out and
progress bar. Rounds alternate (ours, reference, ours, ...) so that load from other
processes hits both alike; the median round of each is printed, with the ratio.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from whylab.lm.model import build_model
from whylab.lm.train import TrainConfig, make_optimizer, resolve_precision, train_model
from whylab.runtime import resolve_device, set_seed


def reference_loop(
    model: torch.nn.Module, blocks: torch.Tensor, cfg: TrainConfig, device: str, precision: str
) -> float:
    """The plain loop: contiguous batches, forward, backward, step. Returns tokens/s."""
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")
    n = blocks.shape[0]
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(cfg.max_steps):
        lo = (step * cfg.batch_size) % (n - cfg.batch_size + 1)
        batch = blocks[lo : lo + cfg.batch_size].to(device)
        with autocast:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    loss.item()
    if device == "cuda":
        torch.cuda.synchronize()
    return cfg.max_steps * cfg.batch_size * cfg.block_size / (time.perf_counter() - start)


def ours(
    model: torch.nn.Module, blocks: torch.Tensor, cfg: TrainConfig, device: str, precision: str
) -> float:
    result = train_model(
        model, blocks, blocks[:1], cfg, seed=0, device=device, precision=precision, progress=False
    )
    return result.tokens_trained / result.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=384)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=128)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision("auto", device)
    set_seed(0)
    model_cfg = {
        "hidden_size": args.hidden,
        "num_layers": args.layers,
        "num_heads": args.heads,
        "intermediate_size": args.intermediate,
        "max_position_embeddings": max(256, args.block_size),
    }
    base = build_model(model_cfg, args.vocab, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    gen = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, args.vocab, (max(64, 4 * args.batch_size), args.block_size), generator=gen)
    # eval_every > steps: only the one eval at step 0 and the end, and train_seconds excludes both
    cfg = TrainConfig.from_settings(
        {
            "block_size": args.block_size,
            "batch_size": args.batch_size,
            "max_steps": args.steps,
            "warmup_steps": 2,
            "eval_every": 10**9,
            "eval_blocks": 1,
            "log_every": 10,
        }
    )
    # one untimed warm-up of each (allocator, kernels)
    warm = TrainConfig.from_settings({**cfg.__dict__, "max_steps": 2})
    ours(copy.deepcopy(base), blocks, warm, device, precision)
    reference_loop(copy.deepcopy(base), blocks, warm, device, precision)

    mine, ref = [], []
    for _ in range(args.rounds):
        mine.append(ours(copy.deepcopy(base), blocks, cfg, device, precision))
        ref.append(reference_loop(copy.deepcopy(base), blocks, cfg, device, precision))
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {args.threads} thread(s)"
    m, r = statistics.median(mine), statistics.median(ref)
    print(
        f"device: {name}; precision {precision}; {sum(p.numel() for p in base.parameters()):,} "
        f"parameters; batch {args.batch_size} x {args.block_size} tokens; "
        f"{args.steps} steps x {args.rounds} rounds"
    )
    print(f"whylab.lm.train loop : {m:12,.0f} tokens/s  (rounds: {', '.join(f'{x:,.0f}' for x in mine)})")
    print(f"plain reference loop : {r:12,.0f} tokens/s  (rounds: {', '.join(f'{x:,.0f}' for x in ref)})")
    paired = statistics.median(a / b for a, b in zip(mine, ref, strict=True))
    print(f"ratio (ours / reference): {m / r:.3f} of the medians; {paired:.3f} median of paired rounds")


if __name__ == "__main__":
    main()
