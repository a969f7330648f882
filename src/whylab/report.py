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
import os
import subprocess
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
import yaml

from whylab import claims, fonts, report_robustness
from whylab.drawn_texts import translate
from whylab.files import read_json, write_text
from whylab.messages import LANGUAGES, Msg, catalogue, glossary, text
from whylab.report_drawn import cell_text as _cell
from whylab.report_drawn import figure_view, table_view
from whylab.report_labels import CORRECTED_LABELS as CORRECTED_LABELS
from whylab.report_labels import KINDS as KINDS
from whylab.report_labels import UNTESTED as UNTESTED
from whylab.report_labels import VERDICT_COLOURS as VERDICT_COLOURS
from whylab.report_labels import _css_class as _css_class
from whylab.report_labels import _label_key as _label_key
from whylab.report_labels import localized as localized
from whylab.report_labels import verdict_view as verdict_view
from whylab.report_notes import annotate_notes as annotate_notes
from whylab.report_reading import further_reading, linked
from whylab.report_scale import claim_scale
from whylab.report_scale import run_scale as run_scale
from whylab.report_verdict import bottom_line, parts_view
from whylab.results import environment, load_result
from whylab.verdict import Label

MAX_TABLE_ROWS = 40


def _env(lang: str) -> jinja2.Environment:
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
    env.filters["label_text"] = lambda label: Msg(_label_key(str(label))).in_(lang)
    env.filters["kind_text"] = lambda kind: Msg(f"report.kind.{str(kind).replace(' ', '_')}").in_(lang)
    env.filters["text"] = lambda value: text(value, lang)
    env.globals["t"] = lambda key, **params: Msg(f"report.{key}", **params).in_(lang)
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


def _scalar_text(value: Any, lang: str) -> Any:
    """A settings-table value on the ``lang`` page: a text with an entry in messages/<lang>/drawn/
    in that language, anything else as it is."""
    if not isinstance(value, str) or lang == "en":
        return value
    found = translate(value, lang)
    return value if found is None else found


def glance_figure(labels: Mapping[str, str], kinds: Mapping[str, str], lang: str = "en") -> str:
    """The 21 claims by topic, coloured by verdict, a square for an experiment and a diamond
    for a definition check, as an embedded PNG (checked like every figure)."""
    import tempfile

    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from whylab import plotting

    sections = claims.SECTIONS
    width = max(len(ids) for _, ids in sections)
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(sections) + 1.5))
    for row, (_, ids) in enumerate(sections):
        y = len(sections) - 1 - row
        for col, cid in enumerate(ids):
            label = labels.get(cid, UNTESTED)
            kind = kinds.get(cid, "")
            marker = "D" if kind == "definition check" else "s"
            ax.scatter(
                [col],
                [y],
                s=760 if marker == "s" else 560,
                marker=marker,
                c=VERDICT_COLOURS.get(label, "#ffffff"),
                edgecolors="#555555",
                linewidths=1.0,
                linestyle="--" if label == UNTESTED else "-",
                zorder=3,
            )
            ax.text(col, y, cid, ha="center", va="center", fontsize=8, zorder=4)
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-0.6, len(sections) - 0.4)
    ax.set_yticks(range(len(sections)), [text(name, lang) for name, _ in reversed(sections)])
    ax.set_xticks(range(width), [str(i + 1) for i in range(width)])
    ax.set_xlabel(Msg("report.glance.xlabel").in_(lang))
    ax.set_ylabel(Msg("report.glance.ylabel").in_(lang))
    ax.grid(False)
    shown = {labels.get(c.id, UNTESTED) for c in claims.CLAIMS}
    present = [lab for lab in VERDICT_COLOURS if lab in shown]
    handles: list[Patch | Line2D] = [
        Patch(facecolor=VERDICT_COLOURS[lab], edgecolor="#555555", label=Msg(_label_key(lab)).in_(lang))
        for lab in present
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="s",
            color="none",
            markerfacecolor="none",
            markeredgecolor="#555555",
            markersize=9,
            label=Msg("report.kind.experiment").in_(lang),
        ),
        Line2D(
            [],
            [],
            marker="D",
            color="none",
            markerfacecolor="none",
            markeredgecolor="#555555",
            markersize=8,
            label=Msg("report.kind.definition_check").in_(lang),
        ),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.subplots_adjust(bottom=0.27, left=0.28)
    with tempfile.TemporaryDirectory() as tmp:
        ref = plotting.save(
            fig,
            Path(tmp),
            "glance",
            Msg("report.glance.title").in_(lang),
            Msg("report.glance.caption").in_(lang),
            languages=(),  # drawn in the page's language already
        )
        return _data_uri(Path(tmp) / ref.path)


FONT_MARKER = "/* font-face */"


def render(
    results: Mapping[str, Path],
    *,
    config: Mapping[str, Any],
    title: str,
    corpus_stats: Path | None = None,
    extras: Mapping[str, Path] | None = None,
    benchmarks: Path | None = None,
    lang: str = "en",
    links: Mapping[str, str] | None = None,
    second_text: Path | None = None,
) -> str:
    """The page in ``lang``; ``links`` maps the other languages to their pages' addresses."""
    if lang not in LANGUAGES:
        raise ValueError(
            f"report.languages: no message catalogue for {lang!r} (have: {', '.join(LANGUAGES)})"
        )
    loaded: dict[str, dict[str, Any]] = {}
    robustness = report_robustness.load(second_text)
    for claim_id, path in results.items():
        record = localized(load_result(path), lang)
        figures = []
        for fig in record["figures"]:
            view = figure_view(fig, Path(path).parent, lang)
            png = view.pop("png")
            figures.append(
                view
                | {"data_uri": _data_uri(png), "problems": [text(p, lang) for p in _recorded_problems(png)]}
            )
        record["figures"] = figures
        record["tables"] = [table_view(t, lang) for t in record["tables"]]
        record["literature"] = [
            localized(lit, lang) | {"linked": linked(str(lit["source"]))} for lit in record["literature"]
        ]
        record["verdict"] = verdict_view(record["verdict"], lang) | parts_view(record["verdict"], lang)
        record["scale"] = text(claim_scale(record), lang)
        record["second_text"] = report_robustness.claim_view(robustness, claim_id, record["verdict"]["label"])
        loaded[claim_id] = record
    rows = [
        {"claim": c, "result": loaded.get(c.id), "path": str(results.get(c.id, ""))} for c in claims.CLAIMS
    ]
    labels = {cid: r["verdict"]["badge"] for cid, r in loaded.items()}
    kinds = {cid: r["verdict"]["kind"] for cid, r in loaded.items()}
    by_id = {cid: r["verdict"] for cid, r in loaded.items()}
    tally = Counter(labels.values())
    counts = [(str(label), tally[str(label)]) for label in Label if tally[str(label)]]
    counts.append((UNTESTED, len(claims.CLAIMS) - len(loaded)))
    env_info = next(iter(loaded.values()))["environment"] if loaded else environment("cpu")
    extra_data = {name: read_json(p) for name, p in (extras or {}).items()}
    corpus = read_json(corpus_stats) if corpus_stats else None
    if title == catalogue("en")["report.title"]:  # the default title has a translation
        title = catalogue(lang)["report.title"]
    html = (
        _env(lang)
        .get_template("report.html")
        .render(
            lang=lang,
            title=title,
            links=[
                (other, href, catalogue(other)["report.language_name"])
                for other, href in (links or {}).items()
            ],
            css=files("whylab").joinpath("templates/report.css").read_text("utf-8"),
            rows=rows,
            counts=counts,
            scale=[
                (text(what, lang), text(value, lang))
                for what, value in run_scale(config, extra_data, corpus, env_info["device"])
            ],
            glance=glance_figure(labels, kinds, lang),
            notes=annotate_notes(claims.notes_text(), labels, {cid: v["parts"] for cid, v in by_id.items()}),
            by_id=by_id,
            bottom=bottom_line([(c, by_id.get(c.id)) for c in claims.CLAIMS], lang),
            reading=further_reading(loaded),
            corrected_labels=CORRECTED_LABELS,
            untested=UNTESTED,
            max_rows=MAX_TABLE_ROWS,
            extras=[
                {
                    "name": name,
                    "title": _extra_title(name, lang),
                    "scalars": [(k, _scalar_text(v, lang)) for k, v in _scalars(data)],
                }
                for name, data in extra_data.items()
            ],
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
            git_commit=git_commit(),
            device=env_info["device"],
            python=env_info["python"],
            versions=env_info["versions"],
            corpus=corpus,
            timings=rule_timings(benchmarks),
            glossary=glossary(lang),
            config_yaml=yaml.safe_dump(dict(config), allow_unicode=True, sort_keys=False),
        )
    )
    # Hangul renders without a Korean font on the reader's machine: embed the glyphs the page uses
    return html.replace(FONT_MARKER, fonts.font_face_css(html), 1)


def _extra_title(name: str, lang: str) -> str:
    """The heading of an extra section the stage rules hand to the report (REPORT_EXTRA_INPUTS)."""
    key = f"report.extra.{name}"
    return Msg(key).in_(lang) if key in catalogue(lang) else name.replace("_", " ")


def _recorded_problems(png: Path) -> list[str]:
    from whylab.plotting import recorded_problems

    return recorded_problems(png) if png.suffix == ".png" else []


def run_step(
    settings: dict[str, Any], inputs: dict[str, Path], outputs: dict[str, Path], threads: int
) -> None:
    """One page per language: outputs ``html_<lang>`` (``html`` alone: the first language's)."""
    results = {name: path for name, path in inputs.items() if name in claims.BY_ID}
    extras = {
        name: path
        for name, path in inputs.items()
        if name not in claims.BY_ID and name not in ("corpus_stats", "benchmarks", "second_text")
    }
    config = settings.get("config", {})
    languages = list((config.get("report") or {}).get("languages") or ["en"])
    pages = {lang: outputs[f"html_{lang}"] for lang in languages if f"html_{lang}" in outputs}
    if not pages and "html" in outputs:
        pages = {languages[0]: outputs["html"]}
    for lang, page in pages.items():
        links = {
            other: os.path.relpath(path, Path(page).parent) for other, path in pages.items() if other != lang
        }
        html = render(
            results,
            config=config,
            title=settings.get("title", catalogue("en")["report.title"]),
            corpus_stats=inputs.get("corpus_stats"),
            extras=extras,
            benchmarks=inputs.get("benchmarks"),
            lang=lang,
            links=links,
            second_text=inputs.get("second_text"),
        )
        write_text(page, html)
