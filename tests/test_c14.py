"""QLoRA (C14): the NF4 base really is 4-bit, only adapters train, the base stays frozen;
the shared training loop; peak-memory measurement; the verdict every way; a tiny end-to-end run."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch
import yaml

from catalogue_checks import assert_explained, assert_in_korean, record_messages
from claim_packages import assert_measuring_is_light
from pt_quant_helpers import build_tree
from whylab.concepts.c14_qlora import experiment as c14_experiment
from whylab.concepts.c14_qlora import figures as c14_figures
from whylab.concepts.c14_qlora import verdict as c14
from whylab.messages import Msg
from whylab.quant import qlora as ql
from whylab.verdict import Kind, Label

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tree(tmp_path_factory.mktemp("c14"))


@pytest.fixture(scope="module")
def blocks(tree) -> dict[str, torch.Tensor]:
    from whylab.lm.data import load_tokenizer, token_blocks

    tok = load_tokenizer(tree["model"])
    ko = tree["corpus"] / "ko"
    return {
        "train": token_blocks([ko / "train.txt"], tok, 16, 24),
        "valid": token_blocks([ko / "valid.txt"], tok, 16, 4),
    }


def _cfg(**kw) -> ql.FinetuneConfig:
    base = {"steps": 4, "batch_size": 2, "warmup_steps": 1, "eval_batch_size": 4}
    return ql.FinetuneConfig(**{**base, **kw})


def test_nf4_base_has_every_decoder_linear_in_4_bits(tree):
    model = ql.load_base(tree["model"], "qlora", "cpu")
    report = ql.storage_report(model)
    assert report["decoder_linear_count"] == 2 * 7
    assert report["linear4bit_count"] == report["decoder_linear_count"]
    assert report["nf4"]
    # 4-bit codes + an 8-bit absmax per 64 weights + a float per 256 blocks (double quantization)
    # (small layers round the per-256-block float up to one per layer, hence the tolerance)
    assert report["linear_bits_per_weight"] == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=0.05)
    assert report["linear_table_bytes"] > 0
    fp32 = ql.storage_report(ql.load_base(tree["model"], "lora", "cpu"))
    assert fp32["linear4bit_count"] == 0
    assert fp32["linear_bits_per_weight"] == 32.0 and fp32["linear_table_bytes"] == 0
    # embeddings and head are not quantized in either
    other = report["base_storage_bytes"] - report["linear_storage_bytes"]
    assert other == fp32["base_storage_bytes"] - fp32["linear_storage_bytes"]


def test_qlora_trains_only_adapters_and_leaves_the_4bit_base_bit_identical(tree, blocks):
    r = ql.finetune(
        "qlora", tree["model"], blocks["train"], blocks["valid"], _cfg(steps=8, lr_adapters=1e-2), 0, "cpu"
    )
    assert r.only_adapters_trainable and r.base_unchanged
    # LoRA rank r on every projection: r * (in + out) weights per layer
    h, i, layers, rank = 64, 96, 2, 8
    per_layer = 4 * rank * (h + h) + 2 * rank * (h + i) + rank * (i + h)
    assert r.trainable_params == layers * per_layer
    assert r.ppl_after < r.ppl_before
    assert len(r.losses) == 8


def test_full_finetuning_trains_everything_and_lora_the_same_adapters_as_qlora(tree, blocks):
    full = ql.finetune("full", tree["model"], blocks["train"], blocks["valid"], _cfg(), 0, "cpu")
    assert full.trainable_params == full.total_params and not full.only_adapters_trainable
    lora = ql.finetune("lora", tree["model"], blocks["train"], blocks["valid"], _cfg(), 0, "cpu")
    assert lora.only_adapters_trainable and lora.base_unchanged
    qlora = ql.finetune("qlora", tree["model"], blocks["train"], blocks["valid"], _cfg(), 0, "cpu")
    assert lora.trainable_params == qlora.trainable_params
    assert lora.total_params == qlora.total_params  # 4-bit packing counted as the weights it holds
    assert qlora.base_storage_bytes < 0.75 * lora.base_storage_bytes


def test_same_seed_same_result_and_the_seed_matters(tree, blocks):
    a = ql.finetune("lora", tree["model"], blocks["train"], blocks["valid"], _cfg(), 3, "cpu")
    b = ql.finetune("lora", tree["model"], blocks["train"], blocks["valid"], _cfg(), 3, "cpu")
    c = ql.finetune("lora", tree["model"], blocks["train"], blocks["valid"], _cfg(), 4, "cpu")
    assert a.losses == b.losses and a.ppl_after == b.ppl_after
    assert a.losses != c.losses


def test_batches_and_schedule_are_shared_and_well_formed():
    cfg = _cfg(steps=10, warmup_steps=2, min_lr_ratio=0.1)
    order = ql.batch_order(7, 10, 3, seed=1)
    assert [b.tolist() for b in order] == [b.tolist() for b in ql.batch_order(7, 10, 3, seed=1)]
    assert all(len(b) == 3 for b in order)
    first_epoch = torch.cat(order)[:7].tolist()
    assert sorted(first_epoch) == list(range(7))  # each block once per epoch
    lrs = [ql.lr_multiplier(s, cfg) for s in range(10)]
    assert lrs[0] == 0.5 and lrs[1] == 1.0  # warm-up
    assert all(x >= y for x, y in itertools.pairwise(lrs[1:]))  # then decays
    assert lrs[-1] >= 0.1


def test_peak_memory_sees_torch_allocations_on_cpu():
    from whylab.quant.peak_memory import PeakMemory, cpu_peak_supported

    ok, why = cpu_peak_supported()
    if not ok:
        pytest.skip(why)
    with PeakMemory("cpu") as big:
        x = torch.ones(8_000_000)  # 32 MB, touched
        del x
    with PeakMemory("cpu") as small:
        y = torch.ones(1000)
        del y
    assert 30e6 <= big.peak_bytes <= 40e6
    assert small.peak_bytes < 4e6


def test_concept_defaults_match_the_schema():
    schema = yaml.safe_load((REPO / "workflow/schemas/quantization.schema.yaml").read_text())
    props = schema["properties"]["qlora"]["properties"]
    # seeds: the run-wide list unless the section sets its own (no default of its own)
    assert {k: v["default"] for k, v in props.items() if k != "seeds"} == c14_experiment.DEFAULTS
    assert set(ql.FinetuneConfig.__dataclass_fields__) <= set(c14_experiment.DEFAULTS)


# ---------------------------------------------------------------- verdict, every way


def _metrics(**q_over):
    q = {
        "linear4bit_count": 28,
        "decoder_linear_count": 28,
        "nf4": True,
        "linear_bits_per_weight": 4.4,
        "linear_code_bytes_per_weight": 0.5,
        "only_adapters_trainable": True,
        "base_unchanged": True,
        "trainable_params": 78080,
        "trainable_share_pct": 5.6,
        "ppl_before": 1000.0,
        "ppl_after": [300.0, 310.0, 305.0],
    }
    q.update(q_over)
    return {
        "qlora_ran": True,
        "variants": {"qlora": q},
        "qlora_vs_lora_ppl_gap_pct": 1.0,
        "close_tolerance_pct": 5.0,
        "finetune_language": "ko",
    }


def test_verdict_supported_when_the_definition_holds_on_a_packed_4bit_base():
    v = c14.verdict(_metrics())
    assert v.label == Label.SUPPORTED and v.kind == Kind.DEFINITION
    assert "28/28" in v.reason and "0.5 byte per weight for the codes" in v.reason
    assert "bitsandbytes" in v.primary and "packed" in v.primary


def test_verdict_not_supported_when_the_base_is_not_4bit_or_not_frozen():
    assert c14.verdict(_metrics(linear4bit_count=0)).label == Label.NOT_SUPPORTED
    assert c14.verdict(_metrics(base_unchanged=False)).label == Label.NOT_SUPPORTED
    assert c14.verdict(_metrics(only_adapters_trainable=False)).label == Label.NOT_SUPPORTED
    assert c14.verdict(_metrics(linear_bits_per_weight=8.0)).label == Label.NOT_SUPPORTED


def test_fine_tuning_quality_is_the_papers_finding_not_the_definition():
    m = _metrics()
    m["qlora_vs_lora_ppl_gap_pct"] = 12.0
    assert c14.verdict(m).label == Label.SUPPORTED
    check = c14_figures._literature(m)[0]
    assert check.agrees is False and "+12.00%" in check.note


def test_verdict_inconclusive_when_qlora_could_not_run():
    m = _metrics()
    m["qlora_ran"] = False
    assert c14.verdict(m).label == Label.INCONCLUSIVE


# ---------------------------------------------------------------- every text in Korean too


def _not_run_metrics():
    m = _metrics()
    m["qlora_ran"] = False
    return m


@pytest.mark.parametrize(
    ("metrics", "label"),
    [
        (_metrics(), Label.SUPPORTED),
        (_metrics(linear_code_bytes_per_weight=None), Label.SUPPORTED),
        (_not_run_metrics(), Label.INCONCLUSIVE),
        (_metrics(linear4bit_count=0), Label.NOT_SUPPORTED),
        (_metrics(base_unchanged=False, only_adapters_trainable=False), Label.NOT_SUPPORTED),
        (_metrics(nf4=False, linear_bits_per_weight=8.0), Label.NOT_SUPPORTED),
    ],
)
def test_every_branch_has_a_takeaway_a_correction_where_due_and_korean_texts(metrics, label):
    v = c14.verdict(metrics)
    assert v.label == label
    assert_explained(v, "C14")


def test_the_correction_names_what_the_run_measured_instead():
    v = c14.verdict(_metrics(linear4bit_count=20, base_unchanged=False))
    assert v.correction.startswith("Call a run QLoRA (4-bit quantization plus LoRA) only when")
    assert "only 20 of 28 decoder linear layers are 4-bit" in v.correction
    assert "the 4-bit base changed during training" in v.correction
    assert "trainable" not in v.correction and "not NF4" not in v.correction
    v = c14.verdict(_metrics(only_adapters_trainable=False, trainable_share_pct=100.0))
    assert "100.0% of the parameters train, not only the LoRA adapters" in v.correction
    assert "100.0%" in v.correction.in_("ko")


def test_the_english_texts_are_as_before():
    v = c14.verdict(_metrics())
    assert v.reason == (
        "QLoRA is 4-bit quantization plus LoRA fine-tuning: 28/28 decoder linear layers are bitsandbytes "
        "NF4 Linear4bit, stored packed at 0.5 byte per weight for the codes (the notes' INT4 = 0.5 byte) "
        "and 4.40 bits per weight with the per-block absmax constants; 78,080 parameters train (5.6%, "
        "LoRA adapters only); the base is bit-identical after training; ko perplexity 1000 → 305 ± 5 (n=3) "
        "(how that compares with LoRA on the float base is the QLoRA paper's finding, checked below "
        "against the literature)."
    )
    assert "4.40 bits per weight as stored" in c14.verdict(_metrics(linear_code_bytes_per_weight=None)).reason


def test_memory_method_words_are_the_peak_memory_methods():
    from whylab.quant.peak_memory import PeakMemory

    for device in ("cpu", "cuda:0"):
        method = PeakMemory(device).method
        text = c14_figures.memory_method_text(device, method)
        assert text == method and isinstance(text, Msg)
        assert_in_korean(text)
    assert c14_figures.memory_method_text("cpu", "something else") == "something else"


def test_literature_and_skipped_lines_render_in_korean():
    m = _metrics()
    m["qlora_vs_full_ppl_gap_pct"] = -3.0
    for check in [
        *c14_figures._literature(m),
        *c14_figures._literature(_metrics() | {"qlora_vs_lora_ppl_gap_pct": None}),
    ]:
        assert_in_korean(check.finding)
        assert_in_korean(check.note)
    assert "+1.00% (agreement means within ±5%)" in c14_figures._literature(m)[0].note
    kept = Msg("C14.skipped.bnb_failed", device="cpu", error_type="RuntimeError", error="boom").to_dict()
    line = c14_figures._skip_text(kept)
    assert line == "QLoRA variant: bitsandbytes 4-bit failed on cpu: RuntimeError: boom"
    assert_in_korean(line)
    assert c14_figures._skip_text("an older plain line") == "an older plain line"
    for name in ("bnb_import", "not_new_language", "peak_memory"):
        assert_in_korean(Msg(f"C14.skipped.{name}", error="x", lang="ko"))


# ---------------------------------------------------------------- end to end, tiny


def test_concept_runs_end_to_end_on_a_tiny_tree(tree, tmp_path):
    from whylab.concepts import REGISTRY, run_concept
    from whylab.results import validate_result

    assert REGISTRY["C14"] == "whylab.concepts.c14_qlora"
    settings = {
        "seeds": [0, 1],
        "device": "cpu",
        "languages": ["en"],
        **copy.deepcopy(c14_experiment.DEFAULTS),
    }
    settings.update(
        {
            "block_size": 16,
            "train_blocks": 16,
            "valid_blocks": 4,
            "steps": 3,
            "batch_size": 2,
            "warmup_steps": 1,
            "eval_batch_size": 4,
        }
    )
    record = run_concept(
        "C14", settings, {"model": tree["model"], "corpus": tree["corpus"]}, tmp_path / "C14" / "result.json"
    )
    validate_result(record)
    m = record["metrics"]
    assert m["variants_run"] == ["qlora", "lora", "full"]
    q = m["variants"]["qlora"]
    assert q["linear4bit_count"] == q["decoder_linear_count"] == 14
    assert len(q["ppl_after"]) == 2 and q["retained_ppl_after"][0] > 0
    assert {f["path"] for f in record["figures"]} == {"figures/resources.png", "figures/quality.png"}
    assert q["linear_code_bytes_per_weight"] == 0.5  # two NF4 codes per byte, as stored
    assert 4.0 < q["linear_bits_per_weight"] < 5.0  # plus the per-block absmax constants
    assert record["verdict"]["label"] in {str(label) for label in Label}
    assert record["verdict"]["kind"] == "definition check"
    # method, skipped lines, table caption, figure titles and captions, literature, verdict: all in ko
    texts = list(record_messages(record))
    keys = {t.key for t in texts}
    assert {"C14.method", "C14.table.finetune.caption", "C14.figure.quality.caption"} <= keys
    assert {"C14.literature.vs_lora.note", "C14.primary"} <= keys
    for t in texts:
        assert_in_korean(t)


def test_measuring_imports_no_plotting_texts_or_verdicts():
    assert_measuring_is_light("C14")


# --------------------------------------------------------------------------- parts


def test_parts_are_the_notes_two_assertions_with_reachable_labels():
    from whylab.concepts.c14_qlora import parts as c14_parts

    four_bit, lora = c14.verdict(_metrics()).parts
    assert (four_bit.id, four_bit.kind, four_bit.run) == ("four_bit", Kind.DEFINITION, Label.SUPPORTED)
    assert (lora.id, lora.kind, lora.run) == ("lora_finetuning", Kind.EXPERIMENT, Label.SUPPORTED)
    assert lora.power is not None and not lora.power.limited and lora.power.unit == "nats/token"
    assert c14.verdict(_metrics(linear4bit_count=0)).parts[0].run is Label.NOT_SUPPORTED
    assert c14.verdict(_metrics(base_unchanged=False)).parts[1].run is Label.NOT_SUPPORTED
    # perplexity rose clearly: not learning; unchanged within noise: inconclusive; identical seeds: a limit
    rose = c14.verdict(_metrics(ppl_after=[1500.0, 1520.0, 1490.0]))
    assert rose.parts[1].run is Label.NOT_SUPPORTED and rose.label is Label.PARTLY
    assert "did not lower the perplexity" in rose.reason and rose.correction
    flat = c14.verdict(_metrics(ppl_after=[990.0, 1010.0, 1001.0]))
    assert flat.parts[1].run is Label.INCONCLUSIVE and flat.label is Label.INCONCLUSIVE
    same = c14.verdict(_metrics(ppl_after=[300.0, 300.0, 300.0])).parts[1]
    assert same.power is not None and same.power.zero_spread and same.run is Label.SUPPORTED
    noisy = c14.verdict(_metrics(ppl_after=[1100.0, 600.0, 1400.0])).parts[1]
    assert noisy.power is not None and noisy.power.limited and noisy.run is Label.INCONCLUSIVE
    for v in (rose, flat):
        assert_explained(v, "C14")
    assert c14_parts.ppl_drops(100.0, [10.0]) == pytest.approx([2.302585])


def test_parts_literature_is_computed_from_the_qlora_paper():
    from whylab.concepts.c14_qlora import parts as c14_parts

    four = c14_parts.four_bit_field(5.0)
    assert [p.value for p in four.published] == [4, 0.127] and four.label is Label.SUPPORTED
    assert "4.127 bits per parameter" in four.reason
    assert c14_parts.four_bit_field(4.0).label is Label.NOT_SUPPORTED  # the rule reads the numbers
    lora = c14_parts.lora_field()
    assert [p.value for p in lora.published] == [65, 48] and lora.label is Label.SUPPORTED
    assert "130 GB" in lora.reason and "33.5 GB" in lora.reason
    assert all(
        p.url.startswith("https://arxiv.org/abs/2305.14314") for p in (*four.published, *lora.published)
    )


def test_parts_say_why_qlora_saved_no_peak_memory_here_and_what_7b_needs():
    m = _metrics()
    m["variants"]["qlora"] |= {"peak_bytes": [29.5e6, 29.8e6, 29.6e6], "base_storage_bytes": 1.5e6}
    m["variants"]["lora"] = {"peak_bytes": [29.4e6, 29.5e6, 29.5e6], "base_storage_bytes": 4.4e6}
    four_bit, lora = c14.verdict(m).parts
    assert "no saving" in four_bit.reason and "leaves out" in four_bit.reason
    assert "17.4 GiB (LoRA) to 8.4 GiB (QLoRA)" in four_bit.reason
    for part in (four_bit, lora):
        assert part.field is not None
        for text in (part.reason, part.field.reason):
            assert isinstance(text, Msg)
            assert_in_korean(text)
