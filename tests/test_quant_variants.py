"""Every variant of a tiny exported Llama builds, loads, runs and writes a valid measures.json.

One tree (corpus, tokenizer, model, optimum ONNX export with KV cache) is built per module; the
variant step runs on it exactly as its Snakemake rules call it: one call per variant family.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from quant_support import TINY_QUANT_SETTINGS, build_tree, run_family, run_variant
from whylab.quant import onnx_graph
from whylab.quant.torch_quant import linear_count, load_model
from whylab.quant.variants import parse, validate_measures, variant_names

torch.set_num_threads(1)
NAMES = variant_names(TINY_QUANT_SETTINGS)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tree(tmp_path_factory.mktemp("quanttree"))


def families() -> list[list[str]]:
    """The variants by family, references first."""
    refs = [n for n in NAMES if parse(n).is_reference]
    rest = [[n for n in NAMES if parse(n).family == f and n not in refs] for f in ("half", "int8", "int4")]
    return [refs, *rest]


@pytest.fixture(scope="module")
def measures(tree: dict[str, Path]) -> dict[str, dict]:
    """Every variant in one step, as workflow/rules/quant_variants.smk's job runs them;
    named references last, so the step must measure them first by itself."""
    return run_family(tree, list(reversed(NAMES)), tree["root"] / "variants")


def test_one_job_measures_each_variant_as_a_job_of_its_own_would(measures, tree, tmp_path):
    """One process for every variant (tokenizer, blocks, references shared) changes no number
    that does not depend on timing."""
    alone = run_variant(tree, "ort-int4-gptq-b32", tmp_path)
    together = measures["ort-int4-gptq-b32"]
    for key in ("valid_ppl", "block_nll", "size_bytes", "quantized_op_count", "ppl_change_interval"):
        assert alone[key] == together[key], key
    assert alone["calibration_draws"] == together["calibration_draws"]


def test_a_family_read_against_its_references_files_measures_as_the_one_job(measures, tree, tmp_path):
    """A family whose references were measured by an earlier job (their measures.json read from
    disk) gets the numbers the one job gets, its reference-relative ones included."""
    for ref in families()[0]:
        (tmp_path / ref).mkdir()
        (tmp_path / ref / "measures.json").write_text(
            (tree["root"] / "variants" / ref / "measures.json").read_text()
        )
    int8 = run_family(tree, families()[2], tmp_path)
    for name, m in int8.items():
        for key in ("valid_ppl", "block_nll", "size_bytes", "ppl_change_pct_vs_fp32", "ppl_change_interval"):
            assert m.get(key) == measures[name].get(key), (name, key)


def test_a_failing_family_job_leaves_no_variant_behind(measures, tree, tmp_path):
    """The first variant builds and is measured, the second fails: neither's measures.json is
    written and no model folder is left (the job's outputs are all or nothing)."""
    from whylab.errors import InputError

    reference = tmp_path / "ort-fp32" / "measures.json"
    reference.parent.mkdir()
    reference.write_text((tree["root"] / "variants/ort-fp32/measures.json").read_text())
    with pytest.raises(InputError, match="block_sizes"):
        run_family(tree, ["ort-int4-rtn-b32", "ort-int4-rtn-b256"], tmp_path)
    for name in ("ort-int4-rtn-b32", "ort-int4-rtn-b256"):
        assert not (tmp_path / name / "measures.json").exists()
        assert not (tmp_path / name / "model").exists()
    assert reference.is_file()


def test_variant_list_covers_every_family():
    assert {parse(n).family for n in NAMES} == {"fp32", "half", "int8", "int4"}
    assert {parse(n).algorithm for n in NAMES if parse(n).family == "int4"} == {"rtn", "hqq", "gptq", "awq"}


def test_every_variant_writes_valid_measures(measures):
    for name, m in measures.items():
        validate_measures(m)
        assert m["variant"] == name
        if m["skipped"] is None:
            assert m["valid_ppl"] > 1 and m["latency_ms_p50"] > 0 and m["throughput_tokens_per_s"] > 0
            assert m["size_bytes"] > 0 and m["provider"]


def test_gpu_only_variants_are_skipped_with_a_reason_on_cpu(measures):
    for name in ("ort-fp16", "torch-fp16"):
        assert "CUDA" in measures[name]["skipped"] and measures[name]["valid_ppl"] is None
    assert measures["torch-bf16"]["skipped"] is None  # bf16 runs on CPU


def test_onnx_runtime_and_torch_agree_on_fp32_perplexity(measures):
    ort_ppl, torch_ppl = measures["ort-fp32"]["valid_ppl"], measures["torch-fp32"]["valid_ppl"]
    assert abs(ort_ppl / torch_ppl - 1) < 1e-4
    assert measures["ort-fp32"]["providers"] == ["CPUExecutionProvider"]


def test_quantized_models_load_and_stay_close_to_fp32(measures, tree):
    for name, m in measures.items():
        if m["skipped"] is not None or m["family"] in ("fp32",):
            continue
        assert abs(m["ppl_change_pct_vs_fp32"]) < 25, name  # a broken quantizer gives garbage, not a few %
        assert m["size_ratio_vs_fp32"] < 1.0, name
        if m["runtime"] == "onnxruntime":
            model_file = tree["root"] / "variants" / name / "model" / "model.onnx"
            assert model_file.is_file()


def test_int4_op_count_equals_the_linear_layers(measures, tree):
    expected = linear_count(load_model(tree["model"]))
    fp32 = onnx_graph.load(tree["onnx"] / "model.onnx")
    assert len(onnx_graph.weight_matmuls(fp32)) == expected
    for name, m in measures.items():
        if m["family"] == "int4":  # the LM head stays float, as in the GPTQ/AWQ papers
            assert m["diagnostics"]["float_linears"] == ["lm_head"], name
            assert m["quantized_op_count"]["MatMulNBits"] == expected - 1 == m["expected_quantized_ops"], name
    assert measures["ort-int8-dynamic"]["quantized_op_count"]["MatMulInteger"] == expected
    assert measures["torchao-int8-dynamic"]["quantized_op_count"]["torchao_quantized_linear"] == expected


def test_gptq_weights_differ_from_rtn(measures, tree):
    root = tree["root"] / "variants"
    rtn = onnx_graph.matmulnbits_weights(onnx_graph.load(root / "ort-int4-rtn-b32" / "model" / "model.onnx"))
    gptq = onnx_graph.matmulnbits_weights(
        onnx_graph.load(root / "ort-int4-gptq-b32" / "model" / "model.onnx")
    )
    assert set(rtn) == set(gptq)
    differing = np.mean([np.mean(rtn[k].real_codes != gptq[k].real_codes) for k in rtn])
    assert differing > 0.01
    diag = measures["ort-int4-gptq-b32"]["diagnostics"]
    assert diag["calibration_output_error"]["gptq"] < diag["calibration_output_error"]["rtn"]


def test_awq_differs_from_rtn_and_reports_its_alphas(measures, tree):
    root = tree["root"] / "variants"
    rtn = onnx_graph.matmulnbits_weights(onnx_graph.load(root / "ort-int4-rtn-b32" / "model" / "model.onnx"))
    awq = onnx_graph.matmulnbits_weights(onnx_graph.load(root / "ort-int4-awq-b32" / "model" / "model.onnx"))
    assert any(not np.array_equal(rtn[k].real_codes, awq[k].real_codes) for k in rtn)
    alphas = measures["ort-int4-awq-b32"]["diagnostics"]["alphas"]
    assert set(alphas.values()) - {0.0}  # some group chose a non-trivial scale


def test_speedups_are_timed_against_the_same_runtimes_reference(measures):
    m = measures["ort-int8-dynamic"]
    assert m["reference_timing"]["variant"] == "ort-fp32"
    assert len(m["speedup_latency_rounds"]) == TINY_QUANT_SETTINGS["measure"]["latency_runs"]
    assert measures["torchao-int8-dynamic"]["reference_timing"]["variant"] == "torch-fp32"


def test_block_size_wider_than_a_layer_is_a_clear_error(tree, tmp_path):
    from whylab.errors import InputError

    with pytest.raises(InputError, match="block_sizes"):
        run_variant(tree, "ort-int4-rtn-b256", tmp_path)


@pytest.mark.parametrize("claim", ["C12", "C13", "C15"])
def test_concepts_run_on_the_measures_and_write_results(claim, measures, tree):
    from whylab.concepts import run_concept

    settings = {
        "seeds": [0],
        "device": "cpu",
        "quantization": TINY_QUANT_SETTINGS,
        "variants": NAMES,
        "languages": ["en"],
    }
    inputs = {
        "variants": tree["root"] / "variants",
        "model": tree["model"],
        "onnx": tree["onnx"],
        "corpus": tree["corpus"],
    }
    out = tree["root"] / "concepts" / claim / "result.json"
    record = run_concept(claim, settings, inputs, out)
    assert record["verdict"]["label"] in {"supported", "partly supported", "not supported", "inconclusive"}
    assert record["figures"] and all((out.parent / f["path"]).is_file() for f in record["figures"])
    assert record["tables"][0]["rows"] and record["literature"]
    if claim in ("C12", "C13"):
        assert any("needs a CUDA GPU" in s for s in record["skipped"])
        assert {row[0] for row in record["tables"][0]["rows"]} == set(NAMES)
    if claim == "C15":
        assert record["metrics"]["gradients"]["backward_calls"] == 0
        assert record["metrics"]["probe_control"]["backward_calls"] == 1
        assert record["metrics"]["hessian"]["identity_equals_rtn"] is True


def test_ort_session_records_the_providers_it_really_uses(tree):
    import onnxruntime as ort

    from whylab.quant.measure import ort_session

    sess = ort_session(tree["onnx"] / "model.onnx", device="cuda", threads=1)
    assert sess.providers == list(sess.session.get_providers())
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert sess.provider == "CPUExecutionProvider" and "no CUDA provider" in sess.note
    elif sess.provider != "CUDAExecutionProvider":
        assert "fell back" in sess.note


def test_calibrated_int4_variants_are_scored_on_further_calibration_draws(measures):
    from whylab.quant.variants import draw_indices

    for name in ("ort-int4-gptq-b32", "ort-int4-awq-b32"):
        draws = measures[name]["calibration_draws"]
        assert [d["draw"] for d in draws] == [0, 1]
        assert draws[0]["block_nll"] == measures[name]["block_nll"]  # draw 0 is the measured variant
        assert draws[0]["blocks"] == [0, 1, 2, 3] and draws[1]["blocks"] != draws[0]["blocks"]
        assert all(len(d["block_nll"]) == len(measures[name]["block_nll"]) for d in draws)
    assert "calibration_draws" not in measures["ort-int4-rtn-b32"]  # no calibration data to draw
    # seeded: the same (seed, draw) picks the same blocks for every variant, so draws pair up
    assert draw_indices(64, 16, 2, seed=0) == draw_indices(64, 16, 2, seed=0) != draw_indices(64, 16, 2, 1)
    assert len(set(draw_indices(64, 16, 2, 0))) == 16
