"""Provenance of a measured result: the commit it ran at and a hash of its settings.

A recorded GPU run (benchmarks/recorded/) is read back by a CPU run; the report
must say when the recorded numbers came from other settings or older code. Light (no message
catalogue): a claim's measuring step uses it; the findings are data its decide step words.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
# settings that do not change what is measured
IGNORED = ("device", "recorded_gpu_run", "seeds")


def settings_hash(settings: Mapping[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the settings that decide a measurement, keys sorted."""
    kept = {k: v for k, v in settings.items() if k not in IGNORED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit(root: Path = ROOT) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def record(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "commit": git_commit(),
        "settings_sha256": settings_hash(settings),
        "settings": {k: v for k, v in settings.items() if k not in IGNORED},
    }


def code_changed_since(commit: str, paths: list[str], root: Path = ROOT) -> bool | None:
    """True when ``paths`` differ between ``commit`` and the work tree; None when git cannot tell."""
    try:
        out = subprocess.run(
            ["git", "diff", "--quiet", commit, "--", *paths], cwd=root, capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: False, 1: True}.get(out.returncode)


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += _diff(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(
                _finding("provenance.setting_differs", key=f"{prefix}{key}", recorded=repr(x), now=repr(y))
            )
    return out


def _finding(message: str, /, **params: Any) -> dict[str, Any]:
    return {"key": message, "params": params}


def findings(
    recorded: Mapping[str, Any] | None, current: Mapping[str, Any], code: list[str]
) -> list[dict[str, Any]]:
    """What a reader must know about a recorded result vs this run's settings and code, as data: each a
    message key of the catalogue and its parameters (a parameter may itself be a list of such findings).
    Data, not messages, so that the measuring step that reads a recorded run imports no catalogue."""
    if not recorded:
        return [_finding("provenance.none")]
    out = []
    now = record(current)
    if recorded.get("settings_sha256") != now["settings_sha256"]:
        diffs = _diff(dict(recorded.get("settings", {})), now["settings"])
        out.append(
            _finding(
                "provenance.settings_differ",
                recorded=str(recorded.get("settings_sha256")),
                now=now["settings_sha256"],
                diffs=diffs[:6],
                more=" …" if len(diffs) > 6 else "",
            )
        )
    commit = str(recorded["commit"]) if recorded.get("commit") else None
    changed = code_changed_since(commit, code) if commit else None
    if changed:
        out.append(_finding("provenance.code_changed", code=", ".join(code), commit=(commit or "")[:10]))
    elif changed is None:
        out.append(_finding("provenance.code_unchecked", commit=commit or "?"))
    return out
