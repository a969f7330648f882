"""GPU check of the quantization measure code: half precision on CUDA and honest ORT providers.

Runs what a CPU machine skips: the torch fp32/bf16/fp16 variants measured on CUDA exactly as the
``quant_variant`` step does (perplexity on the same blocks, batch-1 latency interleaved with the
FP32 reference, batched throughput), and an ONNX Runtime session opened with ``device=cuda``, to show
the recorded providers are the session's real ones (a CPU-only onnxruntime build must say CPU).
Needs only torch, transformers, onnx and onnxruntime (no export, no tokenizer: random token blocks).

    python benchmarks/bench_quant_gpu.py [out.json]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

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

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out: dict = {
        "device": device,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "ort_available_providers": ort.get_available_providers(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "variants": {},
    }
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
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)


if __name__ == "__main__":
    main()
