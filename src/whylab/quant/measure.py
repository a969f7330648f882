"""Measuring a model variant the same way for every row: size, perplexity, latency, throughput.

* Perplexity is exp(mean next-token NLL) over the same validation blocks for every variant
  (the definition of :mod:`whylab.lm.evaluate`); per-block NLLs are kept so a change against
  FP32 gets a paired confidence interval.
* Latency is batch 1 at a fixed prompt length, after warm-up, p50/p90 over N runs;
  throughput is a batched forward pass in tokens/s. The variant and its FP32 reference are
  timed *interleaved in the same process* (ref, variant, ref, variant, ...), so a speed-up is a
  ratio measured under the same machine load even when other jobs run in parallel. Each call
  is timed on two clocks, wall and the thread's CPU time; on one CPU thread speed-ups use the
  CPU clock, which a busy machine's preemptions do not inflate (see ``interleaved_times``).
* ONNX Runtime sessions ask for CUDA only when the device is CUDA and onnxruntime-gpu offers
  it; whatever happens, the providers the session *actually* uses are recorded
  (``get_providers()``), so a silent CPU fallback can never be reported as GPU.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- ONNX Runtime
@dataclass
class OrtSession:
    """An ONNX Runtime causal-LM session that takes token blocks and returns float32 logits."""

    session: Any
    providers: list[str]
    requested: list[str]
    note: str = ""
    _past: list[tuple[str, list[Any], Any]] = field(default_factory=list)

    @property
    def provider(self) -> str:
        return self.providers[0]

    def feeds(self, input_ids: np.ndarray) -> dict[str, np.ndarray]:
        batch, length = input_ids.shape
        names = {i.name for i in self.session.get_inputs()}
        out: dict[str, np.ndarray] = {"input_ids": input_ids.astype(np.int64)}
        if "attention_mask" in names:
            out["attention_mask"] = np.ones((batch, length), dtype=np.int64)
        if "position_ids" in names:
            out["position_ids"] = np.tile(np.arange(length, dtype=np.int64), (batch, 1))
        for name, shape, dtype in self._past:  # an export "with past": feed an empty cache
            dims = [batch if i == 0 else (0 if i == 2 else int(d)) for i, d in enumerate(shape)]
            out[name] = np.zeros(dims, dtype=dtype)
        return out

    def logits(self, input_ids: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], self.feeds(input_ids))[0]


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def ort_session(
    path: str | Path, device: str = "cpu", threads: int = 1, profile_dir: str | Path | None = None
) -> OrtSession:
    """Open ``path`` with CUDA when (device is cuda and the CUDA provider is offered), else CPU.
    With ``profile_dir`` the session's profiler is on until :func:`whylab.quant.ort_profile.profile`
    stops it (its file goes to that folder)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_dir is not None:
        from whylab.quant.ort_profile import enable

        enable(options, profile_dir)
    requested = ["CPUExecutionProvider"]
    note = ""
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            requested = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            note = "device is cuda but this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    session = ort.InferenceSession(str(path), options, providers=requested)
    actual = list(session.get_providers())
    if requested[0] == "CUDAExecutionProvider" and actual[0] != "CUDAExecutionProvider":
        note = f"CUDA provider requested but the session fell back to {actual[0]}"
    past = []
    for inp in session.get_inputs():
        if inp.name.startswith("past_key_values"):
            past.append((inp.name, list(inp.shape), _ORT_DTYPES.get(inp.type, np.float32)))
    return OrtSession(session, actual, requested, note, past)


def ort_block_scores(sess: OrtSession, blocks: torch.Tensor, batch_size: int) -> dict[str, list[float]]:
    """Per block under an ONNX Runtime session: mean next-token NLL (nats) and top-1 accuracy."""
    out: dict[str, list[float]] = {"nll": [], "top1": []}
    ids = blocks.numpy()
    for start in range(0, ids.shape[0], batch_size):
        batch = ids[start : start + batch_size]
        logits = torch.from_numpy(np.asarray(sess.logits(batch), dtype=np.float32))
        _extend(out, logits, torch.from_numpy(batch))
    return out


def ort_block_nll(sess: OrtSession, blocks: torch.Tensor, batch_size: int) -> list[float]:
    """Mean next-token NLL (nats) of each block under an ONNX Runtime session."""
    return ort_block_scores(sess, blocks, batch_size)["nll"]


@torch.no_grad()
def torch_block_scores(
    model: Any, blocks: torch.Tensor, batch_size: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Per block under a torch model (already on ``device``): mean next-token NLL and top-1 accuracy."""
    model.eval()
    out: dict[str, list[float]] = {"nll": [], "top1": []}
    for start in range(0, blocks.shape[0], batch_size):
        batch = blocks[start : start + batch_size].to(device)
        logits = model(input_ids=batch, attention_mask=torch.ones_like(batch), use_cache=False).logits
        _extend(out, logits.float().cpu(), batch.cpu())
    return out


def torch_block_nll(model: Any, blocks: torch.Tensor, batch_size: int, device: str = "cpu") -> list[float]:
    """Mean next-token NLL (nats) of each block under a torch model (already on ``device``)."""
    return torch_block_scores(model, blocks, batch_size, device)["nll"]


def _extend(out: dict[str, list[float]], logits: torch.Tensor, ids: torch.Tensor) -> None:
    out["nll"].extend(_nll_rows(logits, ids))
    out["top1"].extend(_top1_rows(logits, ids))


def _nll_rows(logits: torch.Tensor, ids: torch.Tensor) -> list[float]:
    pred = logits[:, :-1, :]
    target = ids[:, 1:]
    nll = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none")
    return nll.view(target.shape).mean(dim=1).tolist()


def _top1_rows(logits: torch.Tensor, ids: torch.Tensor) -> list[float]:
    """Share of positions whose most likely next token is the actual next token, per block."""
    hit = logits[:, :-1, :].argmax(dim=-1) == ids[:, 1:]
    return hit.float().mean(dim=1).tolist()


def perplexity_from_blocks(block_nll: Sequence[float]) -> float:
    """exp(mean NLL): blocks have equal length, so the mean of block means is the token mean."""
    return math.exp(statistics.fmean(block_nll))


def ppl_change_interval(
    variant_nll: Sequence[float], reference_nll: Sequence[float], z: float = 2.0
) -> dict[str, float]:
    """Perplexity change vs the reference in %, with a ±z·SE interval from paired block differences."""
    diffs = np.asarray(variant_nll, dtype=float) - np.asarray(reference_nll, dtype=float)
    mean = float(diffs.mean())
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan
    to_pct = lambda d: 100.0 * (math.exp(d) - 1.0)  # noqa: E731
    return {
        "pct": to_pct(mean),
        "low_pct": to_pct(mean - z * se),
        "high_pct": to_pct(mean + z * se),
        "n_blocks": len(diffs),
    }


# ----------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved_times(
    runners: Mapping[str, Callable[[], Any]], warmup: int, runs: int, device: str = "cpu"
) -> dict[str, dict[str, list[float]]]:
    """Times (ms) of each runner, run in turn within every round, after ``warmup`` rounds.

    Two clocks per call: ``wall`` (what a user waits) and ``cpu`` (CPU time of the calling
    thread). On a shared CPU, a call is either run through (~its real cost) or preempted for a
    whole time slice (tens of ms); the thread's CPU time does not count the preemption, so with
    one compute thread it measures the work itself. (ONNX Runtime with one intra-op thread and
    torch with one thread both compute on the calling thread.)
    """
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in runners}
    for round_index in range(warmup + runs):
        for name, fn in runners.items():
            _sync(device)
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            _sync(device)
            wall, cpu = time.perf_counter() - start, time.thread_time() - start_cpu
            if round_index >= warmup:
                times[name]["wall"].append(1000.0 * wall)
                times[name]["cpu"].append(1000.0 * cpu)
    return times


def speedup_clock(device: str, threads: int) -> str:
    """The clock speed-ups are computed from: thread CPU time on one CPU thread, else wall time."""
    return "cpu" if device == "cpu" and threads == 1 else "wall"


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


# ----------------------------------------------------------------------------- sizes
def disk_bytes(path: str | Path) -> int:
    """Size of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor really holds, looking inside quantized tensor subclasses (torchao)."""
    if (
        hasattr(t, "__tensor_flatten__")
        and type(t) is not torch.Tensor
        and not isinstance(t, torch.nn.Parameter)
    ):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    if isinstance(t, torch.nn.Parameter) and type(t.data) is not torch.Tensor:
        return tensor_bytes(t.data)
    return t.numel() * t.element_size()


def torch_weight_bytes(model: torch.nn.Module) -> int:
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += tensor_bytes(t)
    return total


def thread_env(threads: int) -> None:
    """Pin BLAS/OpenMP thread pools before heavy imports, so timings use exactly ``threads`` cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
