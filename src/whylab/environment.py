"""The environment a measurement ran in: package versions, device, CPU instruction sets.

Light on purpose (no torch unless the device is CUDA, no message catalogues): the measuring
steps import it, and what they import decides when Snakemake re-runs them.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "whylab",
    "torch",
    "transformers",
    "tokenizers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "pandas",
    "seaborn",
    "matplotlib",
    "snakemake",
    "bitsandbytes",
    "peft",
    "torchao",
    "accelerate",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.processor() or platform.machine()})"


# the CPU instruction sets that decide INT8/INT4 kernel speed, as Linux names them in /proc/cpuinfo
CPU_FEATURES = {
    "avx2": "avx2",
    "avx512": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "amx": "amx_int8",
}


def cpu_features(cpuinfo: str | None = None) -> dict[str, bool] | None:
    """Which of :data:`CPU_FEATURES` the CPU reports (Linux ``/proc/cpuinfo``); None where unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if not flags:
        return None
    return {name: flag in flags for name, flag in CPU_FEATURES.items()}


def gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return str(torch.cuda.get_device_name(torch.device(device)))


def environment(device: str, threads: int | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "versions": package_versions(),
        "device": device_description(device),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_features": cpu_features(),
        "gpu": gpu_name(device),
    }
    if threads is not None:
        env["threads"] = threads
    return env
