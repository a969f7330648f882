"""Record the mechanism claims' labels on the default corpus and on a second English text, for the
report's "on another text" line (benchmarks/recorded/second_text_labels.json).

    python benchmarks/second_text.py DEFAULT_RESULTS SECOND_RESULTS [OUT.json]

DEFAULT_RESULTS is the results folder of a default run (config/config.yaml), SECOND_RESULTS one of
config/second_text.yaml run from the same commit, e.g.

    snakemake --cores 2 --configfile config/second_text.yaml --config results_dir=results_second_text \
        results_second_text/concepts/C0{2,3,4,5,6,7,8,9}/result.json

Each claim's run label and what-to-believe label, and each part's, are read from both result.json
files; the parts whose labels differ are named. Nothing is typed in: a label that moves with the
corpus is shown as the part that moved, from the two results. OUT defaults to
benchmarks/recorded/second_text_labels.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CLAIMS = ("C02", "C03", "C04", "C05", "C06", "C07", "C08", "C09")
OUT = Path(__file__).resolve().parent / "recorded" / "second_text_labels.json"


def labels(result: dict[str, Any]) -> dict[str, Any]:
    """A result's run label, what-to-believe label, and each part's (run, believe)."""
    verdict = result["verdict"]
    believe = (verdict.get("believe") or {}).get("label") or verdict["label"]
    parts = {
        str(p["id"]): [
            str(p["run"]["label"]),
            str((p.get("believe") or {}).get("label") or p["run"]["label"]),
        ]
        for p in verdict.get("parts") or []
    }
    return {"label": str(verdict["label"]), "believe": str(believe), "parts": parts}


def compare(default: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The two texts' labels of one claim and the parts whose labels differ."""
    moved = sorted(
        pid
        for pid in set(default["parts"]) | set(second["parts"])
        if default["parts"].get(pid) != second["parts"].get(pid)
    )
    return {
        "default": default,
        "second_text": second,
        "label_flips": default["label"] != second["label"],
        "believe_flips": default["believe"] != second["believe"],
        "parts_moved": moved,
    }


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def record(default_dir: Path, second_dir: Path) -> dict[str, Any]:
    claims = []
    for claim in CLAIMS:
        pair = []
        for folder in (default_dir, second_dir):
            path = folder / "concepts" / claim / "result.json"
            if not path.is_file():
                sys.exit(f"second_text: {path} is missing (run both configs first)")
            pair.append(labels(json.loads(path.read_text(encoding="utf-8"))))
        claims.append({"claim": claim, **compare(*pair)})
    return {
        "what": (
            "C02-C09 labels on the default corpus (English: pydoc_data's topic help) and on "
            "config/second_text.yaml (English: the standard library's docstrings, same size; same Korean)"
        ),
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "commit": _commit(),
        "claims": claims,
    }


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    out = Path(argv[2]) if len(argv) == 3 else OUT
    data = record(Path(argv[0]), Path(argv[1]))
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for c in data["claims"]:
        moved = ", ".join(c["parts_moved"]) or "none"
        print(f"{c['claim']}: {c['default']['label']} -> {c['second_text']['label']} (parts moved: {moved})")


if __name__ == "__main__":
    main(sys.argv[1:])
