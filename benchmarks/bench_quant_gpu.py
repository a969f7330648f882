"""GPU check of the quantization measure code, and the real-shape decode benchmark on CUDA.

Part 1 (real shapes, the C12/C13 speed question on a GPU): Llama-2-7B-width decoder layers
(4096 wide, 11008 MLP, 32 heads; random weights, built from config) decode at batch 1 with the
KV cache in torch on CUDA: bf16 vs INT8 and INT4 weight-only via torchao (Int8WeightOnlyConfig;
Int4WeightOnlyConfig at group 128 in the tile-packed layout of torch's tinygemm kernel), timed
interleaved per round. The result records the GPU's name, the date and the versions; a recorded
run goes in ``benchmarks/recorded/``. Without CUDA the INT4 row is skipped with its reason.

Part 2:
Runs what a CPU machine skips: the torch fp32/bf16/fp16 variants measured on CUDA exactly as the
``quant_variant`` step does (perplexity on the same blocks, batch-1 latency interleaved with the
FP32 reference, batched throughput), and an ONNX Runtime session opened with ``device=cuda``, to show
the recorded providers are the session's real ones (a CPU-only onnxruntime build must say CPU).
Needs only torch, transformers, onnx and onnxruntime (no export, no tokenizer: random token blocks).

    python benchmarks/bench_quant_gpu.py [out.json] [--layers N]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from whylab.quant import measure as ms
from whylab.quant.variants import Inputs, build, measure, parse, skip_reason

SETTINGS = {
    "measure": {
        "block_size": 256,
        "eval_blocks": 64,
        "eval_batch_size": 16,
        "latency_prompt_tokens": 128,
        "latency_warmup": 10,
        "latency_runs": 50,
        "throughput_batch_size": 32,
        "throughput_runs": 10,
    },
    "calibration": {"blocks": 8},
    "int8": {},
    "int4": {},
    "fp16": {"enabled": True},
}


# ----------------------------------------------------------------------------- real-shape decode
REAL = {"hidden": 4096, "intermediate": 11008, "heads": 32, "vocab": 32000, "layers": 4}
TORCHAO = ("int8_weight_only", "int4_weight_only")


def llama_stack(hidden: int, intermediate: int, layers: int, heads: int, vocab: int, seed: int = 0) -> Any:
    """Llama decoder layers at the given width with random weights (nothing downloaded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).eval()


def torchao_skip_reason(name: str, device: str) -> str | None:
    """Why a torchao weight-only format cannot run on ``device`` (None: it can)."""
    if name == "int4_weight_only" and not device.startswith("cuda"):
        return "torchao INT4 weight-only (tinygemm tile-packed layout) needs CUDA"
    return None


def torchao_config(name: str) -> Any:
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig

    if name == "int8_weight_only":
        return Int8WeightOnlyConfig()
    if name == "int4_weight_only":
        from torchao.quantization.quantize_.workflows.int4.int4_packing_format import Int4PackingFormat

        return Int4WeightOnlyConfig(group_size=128, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)
    raise ValueError(f"unknown torchao format {name!r}")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def decode_tokens_per_s(
    model: Any, device: str, prompt: int, new_tokens: int, rounds: int, warmup: int, seed: int = 0
) -> dict[str, Any]:
    """Batch-1 greedy decode with the KV cache: an untimed prefill of ``prompt`` tokens, then
    ``new_tokens`` single-token steps timed; tokens/s from the median round."""
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (1, prompt), generator=gen).to(device)
    times: list[float] = []
    for r in range(warmup + rounds):
        out = model(input_ids=ids, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(device)
        start = time.perf_counter()
        for _ in range(new_tokens):
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(device)
        if r >= warmup:
            times.append(time.perf_counter() - start)
    return {"tokens_per_s": new_tokens / statistics.median(times), "rounds_s": times}


def weight_bytes(model: Any) -> int:
    from whylab.quant.measure import torch_weight_bytes

    return torch_weight_bytes(model)


def real_shape_decode(
    device: str, layers: int, prompt: int = 128, new_tokens: int = 64, rounds: int = 7
) -> dict:
    """bf16 (fp32 on a CPU) vs torchao INT8/INT4 weight-only at Llama-2-7B width, batch-1 decode."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    out: dict[str, Any] = {"shape": {**REAL, "layers": layers}, "prompt": prompt, "new_tokens": new_tokens}
    base = llama_stack(REAL["hidden"], REAL["intermediate"], layers, REAL["heads"], REAL["vocab"])
    base = base.to(device=device, dtype=dtype)
    ref = decode_tokens_per_s(base, device, prompt, new_tokens, rounds, warmup=2)
    out[str(dtype).removeprefix("torch.")] = {**ref, "weight_bytes": weight_bytes(base)}
    state = {k: v.detach().cpu() for k, v in base.state_dict().items()}
    del base
    for name in TORCHAO:
        reason = torchao_skip_reason(name, device)
        if reason:
            out[name] = {"skipped": reason}
            continue
        from torchao.quantization import quantize_

        model = llama_stack(REAL["hidden"], REAL["intermediate"], layers, REAL["heads"], REAL["vocab"])
        model.load_state_dict(state)
        model = model.to(device=device, dtype=dtype)
        quantize_(model, torchao_config(name))
        row = decode_tokens_per_s(model, device, prompt, new_tokens, rounds, warmup=2)
        row["weight_bytes"] = weight_bytes(model)
        row["speedup_vs_reference"] = row["tokens_per_s"] / ref["tokens_per_s"]
        out[name] = row
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def tiny_llama(folder: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=4000,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder)


def logits_onnx(path: Path, vocab: int = 64, hidden: int = 16) -> None:
    """input_ids -> Gather -> MatMul -> logits: the smallest graph the session wrapper can score."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "input_ids"], ["h"]),
            helper.make_node("MatMul", ["h", "w"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s", vocab])],
        [
            numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "emb"),
            numpy_helper.from_array(rng.standard_normal((hidden, vocab)).astype(np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def main() -> None:
    import onnxruntime as ort

    from whylab.results import cpu_features

    device = "cuda" if torch.cuda.is_available() else "cpu"
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    layers = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else REAL["layers"]
    if "--layers" in sys.argv:
        args = [a for a in args if a != str(layers)]
    out: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_features": cpu_features(),
        "device": device,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "ort_available_providers": ort.get_available_providers(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "variants": {},
    }
    if device == "cuda":  # the real-shape decode only where it means something (minutes on a CPU)
        out["real_shape_decode"] = real_shape_decode(device, layers)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny_llama(root / "model")
        gen = torch.Generator().manual_seed(0)
        blocks = torch.randint(0, 4000, (SETTINGS["measure"]["eval_blocks"], 256), generator=gen)
        inp = Inputs(root / "model", root / "none.onnx", blocks, blocks[:8], SETTINGS, device, 4, root / "v")
        reference = build(parse("torch-fp32"), inp)
        ref_row = measure(parse("torch-fp32"), reference, None, None, inp)
        ref_row.update(size_bytes=reference.size_bytes, memory_bytes=reference.memory_bytes)
        out["variants"]["torch-fp32"] = {
            k: ref_row[k]
            for k in ("valid_ppl", "latency_ms_p50", "latency_ms_p90", "throughput_tokens_per_s")
        }
        for name in ("torch-bf16", "torch-fp16", "ort-fp16"):
            variant = parse(name)
            reason = skip_reason(variant, device)
            if reason:
                out["variants"][name] = {"skipped": reason}
                continue
            built = build(variant, inp)
            row = measure(variant, built, reference, ref_row, inp)
            out["variants"][name] = {
                "provider": built.providers[0],
                **{
                    k: row[k]
                    for k in (
                        "valid_ppl",
                        "ppl_change_pct_vs_fp32",
                        "latency_ms_p50",
                        "latency_ms_p90",
                        "speedup_latency_p50",
                        "throughput_tokens_per_s",
                        "speedup_throughput",
                        "memory_ratio_vs_fp32",
                    )
                },
            }
        logits_onnx(root / "tiny.onnx")
        sess = ms.ort_session(root / "tiny.onnx", device, 1)
        out["ort_session"] = {
            "requested": sess.requested,
            "providers": sess.providers,
            "note": sess.note,
            "runs": bool(np.isfinite(sess.logits(np.zeros((1, 4), dtype=np.int64))).all()),
        }
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args:
        Path(args[0]).write_text(text)


if __name__ == "__main__":
    main()
