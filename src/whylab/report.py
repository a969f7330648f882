"""The HTML report, rendered from result files alone (no experiment re-runs).

One self-contained page: figures are embedded as data URIs and the page's
Content-Security-Policy forbids any other source, so it opens offline and
makes no network request. All text, corpus-derived tokens included, is
HTML-escaped by Jinja's autoescaping.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import subprocess
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import yaml

from whylab import claims
from whylab.files import read_json, write_text
from whylab.results import environment, load_result
from whylab.verdict import Label

MAX_TABLE_ROWS = 40
# headings of the extra sections the stage rules hand to the report (REPORT_EXTRA_INPUTS)
EXTRA_TITLES = {"lm_train_metrics": "The language model behind C12–C16: training summary"}


def _css_class(label: str) -> str:
    return str(label).replace(" ", "-")


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: files("whylab").joinpath(f"templates/{name}").read_text("utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["css_class"] = _css_class
    env.filters["cell"] = _cell
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, indent=2)
    return env


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(
        path.suffix, "application/octet-stream"
    )
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    if out.returncode != 0:
        return "unknown (not a git checkout)"
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def rule_timings(folder: Path | None) -> list[dict[str, Any]]:
    """Wall time and peak RSS per rule, from Snakemake's ``benchmark:`` files."""
    if folder is None or not folder.is_dir():
        return []
    rows = []
    for path in sorted(folder.glob("*.tsv")):
        with path.open(encoding="utf-8") as fh:
            records = list(csv.DictReader(fh, delimiter="\t"))
        if records:
            rss = records[-1].get("max_rss", "NA")
            rows.append(
                {
                    "rule": path.stem,
                    "seconds": float(records[-1]["s"]),
                    "max_rss": float(rss) if rss not in ("NA", "", None) else None,
                }
            )
    return rows


def _scalars(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten the scalar leaves of a JSON object (lists are left out) for a key/value table."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_scalars(value, name + "."))
        elif not isinstance(value, list):
            out.append((name, value))
    return out


def render(
    results: Mapping[str, Path],
    *,
    config: Mapping[str, Any],
    title: str,
    corpus_stats: Path | None = None,
    extras: Mapping[str, Path] | None = None,
    benchmarks: Path | None = None,
) -> str:
    loaded: dict[str, dict[str, Any]] = {}
    for claim_id, path in results.items():
        record = load_result(path)
        for fig in record["figures"]:
            fig["data_uri"] = _data_uri(Path(path).parent / fig["path"])
        loaded[claim_id] = record
    rows = [
        {"claim": c, "result": loaded.get(c.id), "path": str(results.get(c.id, ""))} for c in claims.CLAIMS
    ]
    tally = Counter(r["verdict"]["label"] for r in loaded.values())
    counts = [(str(label), tally[str(label)]) for label in Label if tally[str(label)]]
    counts.append(("not tested yet", len(claims.CLAIMS) - len(loaded)))
    env_info = next(iter(loaded.values()))["environment"] if loaded else environment("cpu")
    return (
        _env()
        .get_template("report.html")
        .render(
            title=title,
            css=files("whylab").joinpath("templates/report.css").read_text("utf-8"),
            rows=rows,
            counts=counts,
            max_rows=MAX_TABLE_ROWS,
            extras=[
                {
                    "name": name,
                    "title": EXTRA_TITLES.get(name, name.replace("_", " ")),
                    "scalars": _scalars(read_json(p)),
                }
                for name, p in (extras or {}).items()
            ],
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
            git_commit=git_commit(),
            device=env_info["device"],
            python=env_info["python"],
            versions=env_info["versions"],
            corpus=read_json(corpus_stats) if corpus_stats else None,
            timings=rule_timings(benchmarks),
            config_yaml=yaml.safe_dump(dict(config), allow_unicode=True, sort_keys=False),
        )
    )


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    results = {name: path for name, path in inputs.items() if name in claims.BY_ID}
    extras = {
        name: path
        for name, path in inputs.items()
        if name not in claims.BY_ID and name not in ("corpus_stats", "benchmarks")
    }
    html = render(
        results,
        config=settings.get("config", {}),
        title=settings.get("title", "whylab report"),
        corpus_stats=inputs.get("corpus_stats"),
        extras=extras,
        benchmarks=inputs.get("benchmarks"),
    )
    write_text(outputs["html"], html)
