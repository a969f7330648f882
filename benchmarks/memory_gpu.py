"""Run the memory claims on a CUDA machine with config/gpu.yaml's memory settings, outside Snakemake.

The settings are built exactly as workflow/rules/memory.smk builds them (config/config.yaml, then
config/gpu.yaml on top, schema defaults filled). Each claim's result.json is written under
``outdir/<claim>/``; the C21 one can be committed and named in ``memory.C21.recorded_gpu_run`` so a
CPU-only run reports the accelerator numbers as recorded.

    python benchmarks/memory_gpu.py OUTDIR [C18 C19 C20 C21] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from whylab.concepts import run_concept  # noqa: E402
from whylab.config import check_config  # noqa: E402
from whylab.files import write_json  # noqa: E402
from whylab.memory import provenance  # noqa: E402


def _merge(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(a.get(key), dict):
            _merge(a[key], value)
        else:
            a[key] = value


def settings(claim: str, configs: list[Path]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for path in configs:
        _merge(cfg, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    cfg = check_config(cfg, ROOT)
    memory = cfg["memory"]
    section = memory[claim]
    return {
        "seeds": cfg["seeds"],
        "device": cfg["device"],
        **section,
        "model": {**memory["model"], **section.get("model_overrides", {})},
        "repeats": memory["repeats"],
        **({"plan": memory["plan"]} if claim == "C18" else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir", type=Path)
    parser.add_argument("claims", nargs="*", default=["C18", "C19", "C20", "C21"])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--config",
        action="append",
        type=Path,
        default=None,
        help="config files in order (default: config/config.yaml config/gpu.yaml)",
    )
    args = parser.parse_args()
    configs = args.config or [ROOT / "config/config.yaml", ROOT / "config/gpu.yaml"]
    summary = []
    for claim in args.claims:
        start = time.perf_counter()
        try:
            claim_settings = settings(claim, configs)
            out = args.outdir / claim / "result.json"
            record = run_concept(claim, claim_settings, {}, out, args.threads)
            if (
                "provenance" not in record["metrics"]
            ):  # a recorded file must say what code and settings made it
                record["metrics"]["provenance"] = provenance.record(claim_settings)
                write_json(out, record)
        except Exception as exc:  # keep going: one failing claim must not hide the others' numbers
            summary.append({"claim": claim, "error": f"{type(exc).__name__}: {exc}"})
            print(claim, "FAILED", exc, flush=True)
            continue
        wall = time.perf_counter() - start
        summary.append(
            {
                "claim": claim,
                "label": record["verdict"]["label"],
                "reason": record["verdict"]["reason"],
                "wall_s": round(wall, 1),
                "device": record["environment"]["device"],
            }
        )
        print(
            f"{claim} {record['verdict']['label']} ({wall:.1f} s): {record['verdict']['reason']}", flush=True
        )
    (args.outdir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
