"""llmcompressor's cross-check of C15 (GPTQ) and C16 (SmoothQuant): its JSON to each verdict, the
script itself on a tiny Llama in .venv-llmc, and the environment's pins (Makefile, conda file, README)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalogue_checks import assert_in_korean
from test_c15 import C15_BASE
from whylab.concepts.c15_gptq import figures as c15_figures
from whylab.concepts.c15_gptq import verdict as c15_verdict
from whylab.concepts.c16_smoothquant import parts as c16_parts
from whylab.thirdparty import llmcompressor_check
from whylab.thirdparty.records import llmcompressor_part
from whylab.verdict import Label

REPO = Path(__file__).resolve().parents[1]
ENV_FILE = REPO / "workflow/envs/llmcompressor.yaml"
ABSENT = {
    "ran": False,
    "absent": True,
    "why_not": "ModuleNotFoundError: No module named 'llmcompressor' in /x/bin/python (make setup-llmc builds .venv-llmc)",
    "python": "/x/bin/python",
}
FAILED = {"ran": False, "why_not": "RuntimeError: an error inside llmcompressor"}

# as .venv-llmc measured them on the default config's trained LM (results/thirdparty/llmcompressor.json)
LLMC_GPTQ: dict[str, Any] = {
    "ran": True,
    "modified": False,
    "grad_mode_on": True,
    "backward_calls": 0,
    "grad_calls": 0,
    "probe_control": {"backward_calls": 1, "grad_calls": 0, "saved_for_backward": 3},
    "quantized_modules": 28,
    "codes_differ_from_rtn_frac": 0.207,
    "layer": "model.layers.0.self_attn.q_proj",
    "layer_codes_differ_from_rtn_frac": 0.150,
    "error_ratio_vs_rtn": 0.489,
    "rtn_fallback_modules": [],
    "scheme": {"group_size": 128},
    "actorder": "ActivationOrdering.STATIC",
    "versions": {"llmcompressor": "0.14.0.1"},
    "python": "/repo/.venv-llmc/bin/python",
}
LLMC_SQ: dict[str, Any] = {
    "ran": True,
    "formula_max_rel_err": 0.0,
    "paper_formula_max_rel_diff": 0.215,
    "norm_fed_first_layer_max_rel_diff": 0.0,
    "down_max_rel_diff": 0.059,
    "down_first_layer_max_rel_diff": 0.0,
    "versions": {"llmcompressor": "0.14.0.1"},
}
TORCHAO_SQ = {
    "formula_max_rel_err": 0.0,
    "swap_max_rel_diff": 0.0,
    "norm_fed_first_layer_max_rel_diff": 0.0,
    "down_max_rel_diff": 0.58,
}


def c15(llmc: dict[str, Any] | None = None, **torchao: Any) -> dict[str, Any]:
    m = copy.deepcopy(C15_BASE)
    m["third_party"].update(torchao)
    m["llmcompressor"] = {**LLMC_GPTQ, **(llmc or {})}
    return m


# ----------------------------------------------------------------------------- C15: JSON -> verdict
def test_c15_is_decided_on_llmcompressor_with_torchao_as_the_cross_check() -> None:
    v = c15_verdict.verdict(c15())
    assert v.label is Label.NOT_SUPPORTED
    assert "llmcompressor 0.14.0.1's GPTQModifier (unmodified" in v.reason
    assert "20.7% of its round-to-nearest codes" in v.reason and "0.49× RTN's" in v.reason
    assert "Cross-check: torchao's GPTQ" in v.reason and "it agrees" in v.reason
    assert_in_korean(v.parts[0].reason, differs_from_english=True)


@pytest.mark.parametrize(
    ("llmc", "torchao", "label", "branch"),
    [
        ({"backward_calls": 2}, {"backward_calls": 1}, Label.SUPPORTED, "gradients"),
        ({"backward_calls": 2}, {}, Label.INCONCLUSIVE, "disagree"),  # the two answer differently
        (
            {"codes_differ_from_rtn_frac": 0.0},
            {"ran": False, "why_not": "x"},
            Label.INCONCLUSIVE,
            "no_hessian_evidence",
        ),
        (
            {"error_ratio_vs_rtn": 1.3},
            {"ran": False, "why_not": "x"},
            Label.INCONCLUSIVE,
            "no_hessian_evidence",
        ),
        (ABSENT, {}, Label.NOT_SUPPORTED, "hessian"),  # torchao decides
        (ABSENT, {"ran": False, "why_not": "y"}, Label.INCONCLUSIVE, "no_third_party"),
    ],
)
def test_c15_each_label_from_llmcompressors_record(
    llmc: dict[str, Any], torchao: dict[str, Any], label: Label, branch: str
) -> None:
    label_got, key, _params = c15_verdict.decide(c15(llmc, **torchao))
    assert (label_got, key) == (label, f"C15.verdict.{branch}")
    v = c15_verdict.verdict(c15(llmc, **torchao))
    assert v.label is label
    assert_in_korean(v.parts[0].reason, differs_from_english=True)
    if llmc.get("absent"):  # said in every language; the error line stays in the metrics
        assert "llmcompressor is not installed in /x/bin/python" in v.reason


def test_c15_an_error_inside_llmcompressor_is_shown_as_its_line() -> None:
    v = c15_verdict.verdict(c15(FAILED))
    assert v.label is Label.NOT_SUPPORTED and "RuntimeError: an error inside llmcompressor" in v.reason


def test_c15_table_names_which_implementation_decides() -> None:
    rows = c15_figures.library_rows(None, c15()["third_party"], LLMC_GPTQ)
    assert str(rows[0]["what was checked"]).startswith("DECIDES: oneshot with GPTQModifier")
    assert str(rows[1]["what was checked"]).startswith("cross-check: observer")
    rows = c15_figures.library_rows(None, c15()["third_party"], ABSENT)
    assert "not installed in /x/bin/python" in str(rows[0]["what was checked"])
    assert str(rows[1]["what was checked"]).startswith("DECIDES")


# ----------------------------------------------------------------------------- C16: JSON -> part
def test_c16_llmcompressor_agrees_the_factor_takes_statistics_only() -> None:
    part = c16_parts.definition_part(TORCHAO_SQ, LLMC_SQ)
    assert part.run is Label.NOT_SUPPORTED
    assert "llmcompressor 0.14.0.1's SmoothQuantModifier" in str(part.reason) and "It agrees" in str(
        part.reason
    )
    assert_in_korean(part.reason, differs_from_english=True)


@pytest.mark.parametrize(
    ("llmc", "label", "cross"),
    [
        (
            {**LLMC_SQ, "formula_max_rel_err": 0.1},
            Label.INCONCLUSIVE,
            "DISAGREES",
        ),  # its factors follow no formula
        (
            {**LLMC_SQ, "down_max_rel_diff": 0.0},
            Label.INCONCLUSIVE,
            "DISAGREES",
        ),  # it could not see the function
        (ABSENT, Label.NOT_SUPPORTED, "not installed in /x/bin/python"),  # torchao alone decides
        (None, Label.NOT_SUPPORTED, "not measured"),
    ],
)
def test_c16_each_label_with_llmcompressors_record(
    llmc: dict[str, Any] | None, label: Label, cross: str
) -> None:
    part = c16_parts.definition_part(TORCHAO_SQ, llmc)
    assert part.run is label and cross in str(part.reason)
    assert_in_korean(part.reason)


def test_records_read_back_one_part_with_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "llmcompressor.json"
    path.write_text(json.dumps({"gptq": LLMC_GPTQ, "versions": {"llmcompressor": "0.14.0.1"}, "python": "p"}))
    assert llmcompressor_part(path, "gptq")["versions"] == {"llmcompressor": "0.14.0.1"}
    assert llmcompressor_part(path, "smoothquant")["ran"] is False
    assert llmcompressor_part(None, "gptq") == {"ran": False}


def test_without_llmcompressor_the_script_records_the_error_line(tmp_path: Path) -> None:
    """In an interpreter without llmcompressor (this one) nothing is loaded and both checks say why."""
    from pt_quant_helpers import build_tree

    tree = build_tree(tmp_path)
    out = tmp_path / "out.json"
    settings = {"languages": ["en"], "block_size": 16, "calibration_blocks": 2, "group_size": 32}
    settings |= {"symmetric": False, "dampening": 0.01, "alpha": 0.5}
    argv = ["--settings", json.dumps(settings), "--input", f"model={tree['model']}"]
    llmcompressor_check.main([*argv, "--input", f"corpus={tree['corpus']}", "--output", f"result={out}"])
    record = json.loads(out.read_text(encoding="utf-8"))
    for part in ("gptq", "smoothquant"):
        assert record[part]["ran"] is False and record[part]["absent"] is True
        assert record[part]["why_not"].startswith("ModuleNotFoundError: No module named 'llmcompressor'")


# ----------------------------------------------------------------------------- the script, in .venv-llmc
def llmc_python() -> Path | None:
    """.venv-llmc's interpreter as the rule finds it: this checkout's, or the one beside this venv."""
    candidates = [REPO / ".venv-llmc/bin/python", Path(f"{sys.prefix}-llmc") / "bin/python"]
    return next((c for c in candidates if c.is_file()), None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = llmc_python()
    if python is None:
        pytest.skip(".venv-llmc is absent (make setup-llmc builds it; make test does)")
    from pt_quant_helpers import build_tree

    tree = build_tree(tmp_path_factory.mktemp("llmc"))
    out = tree["root"] / "llmcompressor.json"
    settings = {"languages": ["en"], "block_size": 32, "calibration_blocks": 4, "group_size": 32}
    settings |= {"symmetric": False, "dampening": 0.01, "alpha": 0.5}
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            str(python),
            "-m",
            "whylab.thirdparty.llmcompressor_check",
            "--settings",
            json.dumps(settings),
            "--input",
            f"model={tree['model']}",
            "--input",
            f"corpus={tree['corpus']}",
            "--output",
            f"result={out}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    record["path"] = out
    return record


def test_llmcompressors_gptq_runs_unmodified_and_uses_no_gradients(tiny_run: dict[str, Any]) -> None:
    g = tiny_run["gptq"]
    assert g["ran"], g.get("why_not")
    assert (
        tiny_run["versions"]["llmcompressor"] == "0.14.0.1"
        and tiny_run["versions"]["transformers"] == "5.17.0"
    )
    assert g["probe_control"]["backward_calls"] == 1  # the probe sees a gradient step
    assert g["grad_mode_on"] and g["backward_calls"] + g["grad_calls"] == 0
    assert g["quantized_modules"] == 14 and not g["rtn_fallback_modules"]  # 2 layers x 7 linears
    assert g["scales_max_abs_diff_vs_rtn"] == 0.0  # the same grid as its RTN: only the rounding differs
    assert g["layer_weight_vs_codes_max_abs_diff"] == 0.0
    assert 0 < g["codes_differ_from_rtn_frac"] < 1 and g["error_ratio_vs_rtn"] < 1


def test_llmcompressors_smoothing_factors_follow_its_formula_under_each_function(
    tiny_run: dict[str, Any],
) -> None:
    s = tiny_run["smoothquant"]
    assert s["ran"], s.get("why_not")
    assert s["smoothed_modules"] == 6 and s["functions"] == ["silu", "gelu", "relu"]
    assert s["formula_max_rel_err"] <= c16_parts.EXACT
    assert s["norm_fed_first_layer_max_rel_diff"] <= c16_parts.EXACT
    assert s["down_first_layer_max_rel_diff"] <= c16_parts.EXACT  # up_proj's output: no function before it
    assert s["paper_formula_max_rel_diff"] > c16_parts.EXACT  # range and 2·max|W|, not Eq. 4's absmax


def test_its_json_reaches_both_verdicts(tiny_run: dict[str, Any]) -> None:
    gptq = llmcompressor_part(tiny_run["path"], "gptq")
    label, key, _ = c15_verdict.decide({**C15_BASE, "llmcompressor": gptq})
    assert (label, key) == (Label.NOT_SUPPORTED, "C15.verdict.hessian")
    sq = llmcompressor_part(tiny_run["path"], "smoothquant")
    assert c16_parts.factor_label(sq)[0] in (Label.NOT_SUPPORTED, Label.INCONCLUSIVE)
    assert "llmcompressor 0.14.0.1's SmoothQuantModifier" in str(
        c16_parts.definition_part(TORCHAO_SQ, sq).reason
    )


# ----------------------------------------------------------------------------- the environment
def env_pins() -> list[str]:
    deps = yaml.safe_load(ENV_FILE.read_text(encoding="utf-8"))["dependencies"]
    conda = [d for d in deps if isinstance(d, str) and d.split("=")[0] not in ("python", "pip")]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    names = {"pytorch-cpu": "torch"}  # conda-forge's name of torch's CPU build
    return [f"{names.get(n, n)}=={v}" for n, v in (c.split("=") for c in conda)] + pip


def test_the_makefile_installs_exactly_the_conda_files_pins() -> None:
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "show-llmc-pins"],
        input="show-llmc-pins:\n\t@echo $(LLMC_PINS)\n",
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == env_pins() and "torch==2.13.0" in shown
    assert {"llmcompressor==0.14.0.1", "transformers==5.17.0"} <= set(shown)


def test_readme_lists_the_environment() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `.venv-llmc`"))
    for pin in env_pins():
        name, _, version = pin.partition("==")
        assert re.search(rf"\b{re.escape(name)} {re.escape(version)}\b", row), pin
