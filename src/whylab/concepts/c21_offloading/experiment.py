"""C21's measurements: both offloading mechanisms checked against the plain model, what they would
move computed from the model, and, on CUDA, peak accelerator memory and step times with and
without each; on a CPU-only machine a recorded GPU run (memory.C21.recorded_gpu_run) is read
instead: reading it, and checking its provenance, is part of measuring.

Measuring only: deciding is in ``verdict.py``, drawing in ``figures.py``.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from whylab.concepts.context import ConceptContext
from whylab.concepts.spec import measure_settings
from whylab.errors import InputError
from whylab.files import read_json
from whylab.memory import calculator as calc
from whylab.memory import measure as mem
from whylab.memory import offload, provenance, training

CLAIM_ID = "C21"
# the code a recorded run's numbers depend on: a recorded run made at another version of it is flagged
CODE = [
    "src/whylab/concepts/c21_offloading/experiment.py",
    "src/whylab/memory/offload.py",
    "src/whylab/memory/measure.py",
]


def _precision(s: Mapping[str, Any]) -> tuple[str, str]:
    """(weight precision, the plain optimizer): mixed_bf16 trains BF16 weights with an FP32 master copy."""
    prec = str(s.get("precision", "mixed_bf16"))
    return prec, ("mixed_adamw" if prec == "mixed_bf16" else "adamw")


def computed(s: Mapping[str, Any], model: torch.nn.Module, device: str) -> dict[str, Any]:
    """What offloading would move, and the calculator's predicted peaks, from the model's shapes."""
    shape = calc.LlamaShape.from_model_cfg(s["model"])
    shapes = training.param_shapes(model)
    b, q = int(s["batch_size"]), int(s["seq_len"])
    prec, opt_name = _precision(s)
    plain = calc.training_estimate(shapes, shape, b, q, opt_name, prec, step_bytes=0)
    # ZeRO-Offload: optimizer state and FP32 master on the host, gradients streamed there during backward;
    # the device keeps the weights, the activations and the loss gradients at the start of backward
    offloaded_peak = plain.weights + plain.activations + plain.loss_grads
    p = plain.params
    n_off = min(int(s["offload_layers"]), int(s["model"]["num_layers"]))
    layer_bytes = offload.layer_weight_bytes(model, n_off)
    return {
        "params": p,
        "precision": prec,
        "weights_bytes": plain.weights,
        "optimizer_state_offloaded_bytes": plain.optimizer + (4 * p if prec == "fp32" else 0),
        "optimizer_state_leaving_accelerator_bytes": plain.optimizer,
        "transfer_per_step_bytes": plain.gradients + plain.weights,  # gradients down, weights up
        "estimated_train_peak_plain": plain.phase_peak,
        "estimated_train_peak_offload": offloaded_peak,
        "estimated_train_saving": 1 - offloaded_peak / plain.phase_peak,
        "offload_layers": n_off,
        "layer_weights_offloaded_bytes": layer_bytes,
        "layer_transfer_per_forward_bytes": layer_bytes,
        "inference_weights_bytes": 4 * p,  # the forward-pass measurement runs the FP32 model
        "layer_share_of_weights": layer_bytes / (4 * p),
    }


def layer_placement(s: Mapping[str, Any]) -> dict[str, Any]:
    """Where accelerate's ``infer_auto_device_map`` puts a LlamaForCausalLM's modules when the
    accelerator's budget holds all but ``offload_layers`` decoder layers: someone else's rule for
    what CPU offloading moves (a plan only: device 0 is a name here, nothing is allocated, so it
    runs on a CPU-only machine). The budget adds one layer for the buffer accelerate keeps free
    for the largest layer it may have to fetch."""
    import accelerate
    import transformers
    from accelerate.utils import compute_module_sizes

    m = s["model"]
    cfg = transformers.LlamaConfig(
        vocab_size=int(m["vocab_size"]),
        hidden_size=int(m["hidden_size"]),
        intermediate_size=int(m["intermediate_size"]),
        num_hidden_layers=int(m["num_layers"]),
        num_attention_heads=int(m["num_heads"]),
    )
    with accelerate.init_empty_weights():
        model = transformers.LlamaForCausalLM(cfg)
    sizes = compute_module_sizes(model)
    n_layers = int(m["num_layers"])
    keep = n_layers - min(int(s["offload_layers"]), n_layers)
    budget = sizes["model.embed_tokens"] + (keep + 1) * sizes["model.layers.0"]
    quiet = logging.getLogger("accelerate.utils.modeling")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "device 0 is not available": a plan needs no device
    try:
        device_map = accelerate.infer_auto_device_map(
            model,
            max_memory={0: budget, "cpu": 64 * sizes[""]},
            no_split_module_classes=["LlamaDecoderLayer"],
        )
    finally:
        quiet.setLevel(level)
    layer_keys = [f"model.layers.{i}" for i in range(n_layers)]
    return {
        "library": f"accelerate {accelerate.__version__}",
        "device_map": {k: str(v) for k, v in device_map.items()},
        "decoder_layers": n_layers,
        "decoder_layers_on_cpu": sum(str(device_map.get(k)) == "cpu" for k in layer_keys),
        "decoder_layers_on_accelerator": sum(str(device_map.get(k)) == "0" for k in layer_keys),
        # each decoder layer is one entry (placed whole), none is split across devices
        "layers_placed_whole": all(k in device_map for k in layer_keys),
        "accelerator_budget_bytes": int(budget),
        "layer_bytes": int(sizes["model.layers.0"]),
    }


def equivalence(s: Mapping[str, Any], seed: int, device: str) -> dict[str, Any]:
    """Offloaded training and inference compute what the plain model computes."""
    vocab, b, q = int(s["model"]["vocab_size"]), int(s["batch_size"]), int(s["seq_len"])
    prec, opt_name = _precision(s)
    plain = training.build_llama(s["model"], seed, prec, device)
    again = training.build_llama(s["model"], seed, prec, device)  # the same run twice: the noise floor
    other = training.build_llama(s["model"], seed, prec, device)
    start = [p.detach().cpu().float().clone() for p in plain.parameters()]
    opt_a = training.make_optimizer(plain, opt_name)
    opt_a2 = training.make_optimizer(again, opt_name)
    opt_b = offload.CPUOffloadAdamW(other.parameters(), lr=1e-3)
    losses: dict[str, list[float]] = {"plain": [], "offload": []}
    for step in range(int(s["steps"])):
        ids = training.random_ids(vocab, b, q, seed + step, device)
        losses["plain"].append(training.train_step(plain, opt_a, ids))
        training.train_step(again, opt_a2, ids)
        losses["offload"].append(training.train_step(other, opt_b, ids))

    def params(m: torch.nn.Module, opt: Any = None) -> list[torch.Tensor]:
        """The weights the optimizer updates: the FP32 master copy when the model is 16-bit (a 1-ulp
        FP32 difference between two AdamW kernels can flip a bf16 rounding, which is not a lost update)."""
        if isinstance(opt, offload.CPUOffloadAdamW):
            return [w.detach().cpu() for w in opt.master]
        if isinstance(opt, training.MixedPrecisionAdamW):
            return [
                opt.state[p]["master"].detach().cpu() if opt.state[p] else p.detach().cpu().float()
                for p in m.parameters()
            ]
        return [p.detach().cpu() for p in m.parameters()]

    def norm_diff(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> float:
        return sum(float((x.double() - y.double()).pow(2).sum()) for x, y in zip(xs, ys, strict=True)) ** 0.5

    ref, off, rerun = params(plain, opt_a), params(other, opt_b), params(again, opt_a2)
    update = norm_diff(ref, start)  # how far training moved the weights
    diff, floor = norm_diff(off, ref), norm_diff(rerun, ref)
    max_abs = max(float((x - y).abs().max()) for x, y in zip(off, ref, strict=True))
    del again, opt_a2, start
    # CPU and GPU AdamW kernels round differently (1 ulp); Adam's normalised update amplifies that on
    # near-zero gradients, so a few elements can differ by a fraction of the learning rate. What must
    # hold is that the offloaded run makes the same update: its distance from the plain run is under 1%
    # of how far the weights moved (a lost or stale update would be of the order of the update itself).
    rel = diff / update if update else 0.0
    plain.eval()
    other.eval()
    ids = training.random_ids(vocab, b, q, seed, device)
    with torch.no_grad():
        ref = plain(input_ids=ids).logits
        moved = offload.offload_layers(plain, int(s["offload_layers"]), device)
        got = plain(input_ids=ids).logits
    loss_gap = max(abs(x - y) / abs(x) for x, y in zip(losses["plain"], losses["offload"], strict=True))
    return {
        "optimizer_offload_max_param_diff": max_abs,
        "optimizer_offload_diff_over_update": rel,
        "plain_rerun_diff_over_update": floor / update if update else 0.0,
        "optimizer_offload_max_rel_loss_gap": loss_gap,
        "optimizer_offload_equivalent": rel <= max(10 * floor / update if update else 0.0, 1e-2),
        "optimizer_offload_bytes_to_host_per_step": opt_b.bytes_to_host / int(s["steps"]),
        "optimizer_offload_bytes_to_device_per_step": opt_b.bytes_to_device / int(s["steps"]),
        "layer_offload_max_logit_diff": float((ref - got).abs().max()),
        "layer_offload_moved_bytes": moved,
    }


def accelerator(s: Mapping[str, Any], seed: int, device: str, repeats: int) -> dict[str, Any]:
    """Peak allocated accelerator memory and every timed step, with and without each kind of offloading
    (CUDA); the savings and time ratios are computed by the decision."""
    vocab, b, q = int(s["model"]["vocab_size"]), int(s["batch_size"]), int(s["seq_len"])
    ids = training.random_ids(vocab, b, q, seed, device)
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device == "cuda" else device}
    for name in ("plain", "offload"):
        gc.collect()
        torch.cuda.empty_cache()
        # what an earlier case left on the device: it must be (near) zero for the peaks to compare
        out[f"train_leftover_before_{name}"] = int(torch.cuda.memory_allocated())
        prec, opt_name = _precision(s)
        model = training.build_llama(s["model"], seed, prec, device)
        opt: Any = (
            training.make_optimizer(model, opt_name)
            if name == "plain"
            else offload.CPUOffloadAdamW(model.parameters(), lr=1e-3)
        )
        training.train_step(model, opt, ids)  # state exists
        step = functools.partial(training.train_step, model, opt, ids)
        peak = mem.tracked_peak(step, [], device, use_tracker=False)
        out[f"train_times_{name}_s"] = mem.time_calls(step, repeats, device)
        out[f"train_peak_{name}"] = peak.peak_bytes
        out[f"train_reserved_{name}"] = peak.extra.get("max_memory_reserved")
        out["cuda_context"] = peak.extra.get("cuda_context")
        if isinstance(opt, offload.CPUOffloadAdamW):
            opt.remove_hooks()
        del model, opt
    for name in ("plain", "offload"):
        gc.collect()
        torch.cuda.empty_cache()
        out[f"infer_leftover_before_{name}"] = int(torch.cuda.memory_allocated())
        model = training.build_llama(s["model"], seed, "fp32", device)
        model.eval()
        if name == "offload":
            offload.offload_layers(model, int(s["offload_layers"]), device)

        def fwd(m: torch.nn.Module = model) -> None:
            with torch.no_grad():
                m(input_ids=ids)

        fwd()
        peak = mem.tracked_peak(fwd, [], device, use_tracker=False)
        out[f"infer_times_{name}_s"] = mem.time_calls(fwd, repeats, device)
        out[f"infer_peak_{name}"] = peak.peak_bytes
        del model
    return out


def _describe(model: Mapping[str, Any]) -> str:
    keys = ("num_layers", "hidden_size", "vocab_size")
    return ", ".join(f"{k}={model[k]}" for k in keys if k in model) or "unknown"


def recorded(path: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded GPU run's accelerator measurements, where they came from, its model, what its
    provenance says against this run's settings and code, and its predicted saving."""
    if not path.is_file():
        raise InputError(f"memory.C21.recorded_gpu_run: {str(path)!r} does not exist")
    record = read_json(path)
    metrics = record.get("metrics", {})
    acc = metrics.get("accelerator")
    if record.get("claim_id") != CLAIM_ID or not acc:
        raise InputError(
            f"memory.C21.recorded_gpu_run: {str(path)!r} is not a C21 result with accelerator measurements"
        )
    model = dict(record.get("config", {}).get("model", {}))
    model["offload_layers"] = record.get("config", {}).get("offload_layers")
    recorded_comp = metrics.get("computed")
    out = {
        "accelerator": acc,
        "source": {
            "key": "C21.source.recorded",
            "device": record["environment"]["device"],
            "finished": record.get("finished_at", "?"),
            "file": path.name,
            "model": _describe(model),
        },
        "model": model,
        "provenance": provenance.findings(metrics.get("provenance"), settings, CODE),
    }
    if recorded_comp:
        out["predicted_train_saving"] = recorded_comp.get("estimated_train_saving")
    return out


def measure(ctx: ConceptContext) -> dict[str, Any]:
    s = ctx.settings
    seed, device, repeats = ctx.seeds[0], ctx.device, int(s["repeats"])
    model = training.build_llama(s["model"], seed, "fp32", device)
    comp = computed(s, model, device)
    del model
    out: dict[str, Any] = {
        # what decides the measurement: the settings less those only the decision reads (as a measure job gets them)
        "provenance": provenance.record(measure_settings(CLAIM_ID, s)),
        "device": device,
        "computed": comp,
        "equivalence": equivalence(s, seed, device),
        "layer_placement": layer_placement(s),
        "model": {**s["model"], "offload_layers": int(s["offload_layers"])},
        "accelerator": None,
        "recorded": None,
    }
    if device.startswith("cuda"):
        out["accelerator"] = accelerator(s, seed, device, repeats)
        out["accelerator_device"] = torch.cuda.get_device_name(0)
    elif "recorded_gpu_run" in ctx.inputs:
        out["recorded"] = recorded(ctx.inputs["recorded_gpu_run"], measure_settings(CLAIM_ID, s))
    return out
