"""``lm.pretrained``: a local Hugging Face causal-LM folder that C12–C16 use instead of the trained LM.

The folder is what ``save_pretrained`` writes (``config.json``, ``*.safetensors``) plus the
model's tokenizer (``tokenizer.json`` or ``tokenizer_config.json``). It is checked when the
config is read (this module imports no torch, so the DAG parses fast) and loaded with
``HF_HUB_OFFLINE=1`` and ``local_files_only``: nothing is fetched from a hub.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from whylab.errors import InputError

KEY = "lm.pretrained"


def check_folder(path: str | Path, base_dir: str | Path = ".") -> Path:
    """The folder as an absolute path, or a one-line InputError naming ``lm.pretrained``."""
    folder = Path(path)
    if not folder.is_absolute():
        folder = Path(base_dir) / folder
    folder = folder.resolve()
    where = f"config error: {KEY}: {str(path)!r}"
    if not folder.is_dir():
        raise InputError(f"{where} is not a folder")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputError(f"{where} has no config.json (save the model with save_pretrained)")
    try:
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: config.json cannot be read: {exc}") from None
    architectures = [str(a) for a in cfg.get("architectures") or []]
    if architectures and not any(a.endswith("ForCausalLM") for a in architectures):
        raise InputError(f"{where} holds {', '.join(architectures)}, not a causal LM (…ForCausalLM)")
    if not any(folder.glob("*.safetensors")):
        raise InputError(
            f"{where} has no *.safetensors weights (save_pretrained(..., safe_serialization=True))"
        )
    if not ((folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()):
        raise InputError(f"{where} has no tokenizer (tokenizer.json or tokenizer_config.json)")
    return folder


def load_causal_lm(folder: str | Path, dtype: Any = None, device: str = "cpu", **kwargs: Any) -> Any:
    """``AutoModelForCausalLM`` from a local folder, offline, safetensors only, in eval mode."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(
        str(folder),
        dtype=torch.float32 if dtype is None else dtype,
        local_files_only=True,
        use_safetensors=True,
        **kwargs,
    )
    if "device_map" not in kwargs:
        model = model.to(device)
    return model.eval()


def folder_parameter_count(folder: str | Path) -> int:
    """Weights stored in a save_pretrained folder, read from the safetensors headers (no torch, no load)."""
    import struct

    total = 0
    for file in sorted(Path(folder).glob("*.safetensors")):
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for d in entry["shape"]:
                n *= int(d)
            total += n
    return total


def parameter_count(model: Any) -> int:
    """Weights the model stands for (a packed 4-bit tensor counts its logical shape)."""
    total = 0
    for p in model.parameters():
        shape = getattr(getattr(p, "quant_state", None), "shape", None)
        n = 1
        for d in shape if shape is not None else p.shape:
            n *= int(d)
        total += n
    return total
