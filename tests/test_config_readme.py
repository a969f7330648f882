"""config/README.md documents every config key, generated from the schemas, and is up to date."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from whylab.config import check_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workflow" / "scripts" / "config_readme.py"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_readme", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def leaf_keys(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict) and value:
        return {
            k for name, sub in value.items() for k in leaf_keys(sub, f"{prefix}.{name}" if prefix else name)
        }
    return {prefix}


def test_config_readme_is_up_to_date() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_key_of_the_default_config_is_documented() -> None:
    text = generator().render()
    documented = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `")}
    # maps whose keys are the user's (e.g. a claim's word list) are documented as the map itself
    missing = {
        k
        for k in leaf_keys(check_config({}))
        if k not in documented and k.rsplit(".", 1)[0] not in documented
    }
    assert not missing, sorted(missing)
    assert {
        "device",
        "seeds",
        "claims",
        "per_seed_jobs",
        "gpu_partition",
        "mechanisms.C08.seeds",
    } <= documented
