"""C12 (INT8): part statuses and verdicts from synthetic metrics (the real-scale cases: tests/test_quant_scale.py)."""

from __future__ import annotations

import pytest

from catalogue_checks import assert_catalogue_in_korean, assert_in_korean
from claim_packages import assert_measuring_is_light
from quant_metrics import c12_metrics, variant
from whylab.concepts.c12_int8 import verdict as c12
from whylab.quant import claim_parts as parts
from whylab.verdict import Label


def test_c12_speed_status_reads_the_quartiles():
    assert parts.speed_status(2.0, 2.5, 3.0, 20, (2.0, 4.0), 0.1) == "in"
    assert parts.speed_status(5.0, 6.0, 7.0, 20, (2.0, 4.0), 0.1) == "above"
    assert parts.speed_status(0.9, 1.0, 1.1, 20, (2.0, 4.0), 0.1) == "below"
    assert parts.speed_status(1.0, 1.9, 2.5, 20, (2.0, 4.0), 0.1) == "unclear"
    assert parts.speed_status(None, None, None, 0, (2.0, 4.0), 0.1) == "unknown"


def test_c12_inconclusive_without_int8_variants():
    assert c12.verdict(c12_metrics(variant("f", "fp32", loss=0, size_cut=0))).label == Label.INCONCLUSIVE


def test_c12_loss_interval_that_overlaps_the_range_counts():
    assert parts.loss_status(12.0, 16.0, (20.0, 30.0), 5.0) == "in"
    assert parts.loss_status(1.0, 14.0, (20.0, 30.0), 5.0) == "below"
    assert parts.loss_status(40.0, 50.0, (20.0, 30.0), 5.0) == "above"


def test_measuring_imports_no_plotting_or_texts():
    assert_measuring_is_light("C12")


@pytest.mark.parametrize("file", ["quant", "C12"])
def test_catalogues_match_across_languages(file):
    """Every key of these files (quant.yaml: the parts C12 and C13 share) is in both languages
    with the same parameters, and no Korean text carries English prose."""
    assert_catalogue_in_korean(file)


# ----------------------------------------------------------------------------- parts (VALIDITY 7-9)
def _parts(v):
    return {p.id: p for p in v.parts}


def _with_blocks(m, sd: float, n: int = 32):
    """The primary variants with per-block NLL differences of the given spread (nats/token)."""
    for v in m["variants"]:
        mean = v["nll_diff"]
        v.update(n_blocks=n, nll_diff_sd=sd, block_diff=[mean + sd * (-1) ** i for i in range(n)])
    return m


def test_c12_loss_part_labels_follow_scale_power_and_range():
    from test_quant_scale import c12 as metrics

    limited = _parts(c12_verdict(metrics(loss=1.2, params=1_100_000)))["loss"]
    assert limited.run is Label.INCONCLUSIVE and limited.power is None  # no blocks recorded
    assert limited.believe.label is Label.NOT_SUPPORTED and str(limited.believe.source) == "the literature"
    seen = _parts(c12_verdict(_with_blocks(metrics(loss=25.0), sd=0.01)))["loss"]
    assert seen.run is Label.SUPPORTED and not seen.power.limited
    below = _parts(c12_verdict(_with_blocks(metrics(loss=1.2), sd=0.01)))["loss"]
    assert below.run is Label.NOT_SUPPORTED and below.power.detectable < 1.0
    coarse = c12_verdict(_with_blocks(metrics(loss=1.2), sd=2.0, n=3))  # could not see 20%
    assert _parts(coarse)["loss"].run is Label.INCONCLUSIVE and "could detect only" in coarse.limited[0]
    flat = _parts(c12_verdict(_with_blocks(metrics(loss=1.2), sd=0.0)))["loss"]
    assert flat.run is Label.INCONCLUSIVE and flat.power.zero_spread


def c12_verdict(m):
    return c12.verdict(m)


def test_c12_size_is_a_definition_check_that_explains_the_file():
    from test_quant_scale import c12 as metrics

    v = c12_verdict(metrics(loss=1.2))
    size = _parts(v)["size"]
    assert str(size.kind) == "definition check" and size.power is None
    assert size.run is Label.SUPPORTED and size.field is not None and size.field.label is Label.SUPPORTED
    assert "bytes per parameter" in str(size.reason)
    failed = _parts(c12_verdict(metrics(loss=1.2, bert_int8_cut=50.0)))["size"]
    assert failed.run is Label.NOT_SUPPORTED and failed.believe.source.name == "DISAGREE"


def test_c12_speed_part_names_the_comparison_and_its_power():
    from test_quant_scale import c12 as metrics
    from test_quant_scale import speed

    m = metrics(loss=1.2)
    m["real_scale"]["llama"]["decode"]["int8"] = {
        **speed(3.0),
        "speedup_rounds": [2.8, 3.1, 3.0, 2.9, 3.2, 3.0, 3.1],
    }
    sp = _parts(c12_verdict(m))["speed"]
    assert sp.run is Label.SUPPORTED and sp.power.n == 7 and not sp.power.limited
    assert "CPU INT8 vs FP32 here: ONNX Runtime's CPU kernels" in str(sp.reason)
    slow = metrics(loss=1.2, decode_int8=1.0, fast=False)
    assert _parts(c12_verdict(slow))["speed"].run is Label.INCONCLUSIVE  # no fast path: not refuted


def test_c12_literature_labels_come_from_the_recorded_numbers():
    from whylab.quant import part_verdicts as pv

    losses = {e["id"]: loss for e, loss in pv.published_losses(pv.literature("C12", "loss"))}
    assert losses["llm_int8_q"] == pytest.approx(0.0) and losses["q8bert_q"] == pytest.approx(0.814, abs=0.01)
    m = c12_metrics()
    assert pv.loss_field("C12", m).label is Label.NOT_SUPPORTED  # 0% and 0.8%, not 20-30%
    wide = {**m, "claimed": {**m["claimed"], "loss_pct": [0.0, 1.0]}}
    assert pv.loss_field("C12", wide).label is Label.SUPPORTED
    one = {
        **m,
        "claimed": {**m["claimed"], "loss_pct": [0.5, 1.0]},
        "tolerance": {**m["tolerance"], "loss_pct": 0.0},
    }
    assert pv.loss_field("C12", one).label is Label.PARTLY
    assert pv.size_field("C12", m).label is Label.SUPPORTED  # Q8BERT: 4x smaller = 75%
    for entry in pv.literature("C12", "loss"):
        assert entry["url"].startswith("https://arxiv.org/abs/")


def test_c12_part_texts_render_in_korean():
    from catalogue_checks import assert_in_korean
    from test_quant_scale import c12 as metrics
    from test_quant_scale import realistic

    for m in (
        metrics(loss=1.2, params=1_100_000),
        _with_blocks(metrics(loss=25.0), sd=0.01),
        _with_blocks(metrics(loss=1.2), sd=2.0, n=3),
        realistic(metrics(loss=1.2, decode_int8=1.0, fast=False)),
    ):
        for part in c12_verdict(realistic(m)).parts:
            assert_in_korean(part.reason)
            if part.field is not None:
                assert_in_korean(part.field.reason)


def test_c12_int8_interval_says_it_is_over_blocks_of_one_model():
    """INT8 dynamic has no calibration data: its CI is over the evaluation blocks of one model,
    and the part's text says so (and that LM seeds are not sampled)."""
    from test_quant_scale import c12 as metrics

    m = _with_blocks(metrics(loss=1.2), sd=0.01)
    m["regime_min_parameters"] = 0.0
    loss = _parts(c12_verdict(m))["loss"]
    assert "over the evaluation blocks of one model only" in str(loss.reason)
    assert "one seed" in str(loss.reason)


def test_c12_the_one_ci_rule_reads_a_records_blocks():
    """with_accuracy: one list of blocks gives the paired t interval over blocks."""
    ref = {"block_nll": [1.0, 2.0, 3.0, 4.0, 5.0], "valid_top1": 0.5}
    row = {"block_nll": [1.02, 2.01, 3.03, 4.02, 5.01], "valid_top1": 0.49}
    s = parts.with_accuracy({"ppl_change_pct": 1.8}, row, ref)
    _, low, high, _ = parts.paired_interval(row["block_nll"], ref["block_nll"])
    assert s["ppl_change_low_pct"] == pytest.approx(parts.pct(low))
    assert s["ppl_change_high_pct"] == pytest.approx(parts.pct(high))
    assert s["calibration_draws"] == 1 and s["ci_df"] == 4 and s["ppl_change_pct"] == 1.8


def test_c12_loss_part_is_decisive_only_on_a_pretrained_checkpoint_of_real_size():
    """claim.yaml's regime: a checkpoint named by lm.pretrained with at least min_parameters
    decides the loss part; the LM trained here, or a small checkpoint, leaves it limited."""
    from test_quant_scale import c12 as metrics

    assert float(c12.REGIME["min_parameters"]) == 1.1e8 and c12.REGIME["pretrained"] is True

    def loss_of(params: float, pretrained: bool):
        m = _with_blocks(metrics(loss=1.2), sd=0.01)
        m.update(regime_min_parameters=float(c12.REGIME["min_parameters"]), regime_pretrained=True)
        m["model"] = {"parameters": params, "source": "x", "pretrained": pretrained}
        return _parts(c12_verdict(m))["loss"], c12_verdict(m)

    real, verdict = loss_of(1.35e8, True)  # e.g. SmolLM-135M
    assert real.run is Label.NOT_SUPPORTED and str(real.believe.source) == "run and literature agree"
    assert not any("loss" in str(x) for x in verdict.limited)
    trained, verdict = loss_of(1.35e8, False)  # as large, but trained by this run
    assert trained.run is Label.INCONCLUSIVE and "not given as a pretrained checkpoint" in verdict.limited[0]
    small, verdict = loss_of(1.0e6, True)  # a real checkpoint, far below BERT-base
    assert small.run is Label.INCONCLUSIVE and "far below the 110M" in verdict.limited[0]


# ----------------------------------------------------------------------------- the speed part
# the default run measured: FP32 843 MB at 17.2 tokens/s, INT8 211 MB at 61.9 tokens/s (3.58×),
# a 503 MB last-level cache (results/concepts/C12, issue 21)
LLC = 503_316_480


def _decode(
    median: float, int8_cut: float | None = None, cache: int | None = LLC, spread: float = 0.05
) -> dict:
    from test_quant_scale import c12 as metrics
    from test_quant_scale import speed

    m = metrics(loss=1.2)
    m["real_scale"]["last_level_cache_bytes"] = cache
    llama = m["real_scale"]["llama"]
    measured = 211_053_056  # the default run's INT8 file
    llama["formats"]["int8"]["size_bytes"] = (
        measured if int8_cut is None else int(843_112_359 * (1 - int8_cut / 100))
    )
    llama["formats"]["fp32"]["size_bytes"] = 843_112_359
    llama["decode"]["fp32"] = {**speed(1.0), "tokens_per_s": 17.2}
    rounds = [median + spread * k for k in (-1.0, -0.5, 0.0, 0.5, 1.0, 0.25, -0.25)]
    llama["decode"]["int8"] = {**speed(median, spread=spread), "tokens_per_s": 17.2 * median}
    llama["decode"]["int8"]["speedup_rounds"] = rounds
    return m


def _speed(m: dict):
    return {p.id: p for p in c12.part_verdicts(m, c12.part_results(m))}["speed"]


def _speed_gpu(m: dict):
    return {p.id: p for p in c12.part_verdicts(m, c12.part_results(m))}["speed_gpu"]


def test_c12_speed_is_judged_for_what_it_measures_with_the_bytes_as_the_why():
    """The measured case: 3.58× with both formats streaming ~14 GB/s is judged, not 'no fast path'."""
    m = _decode(3.58)
    sp = _speed(m)
    assert sp.run is Label.SUPPORTED and not sp.power.limited
    text = str(sp.reason)
    assert text.startswith("CPU INT8 vs FP32 here") and "INT8 vs FP16 on a GPU" in text
    # no published CPU INT8 vs FP32 number is recorded: what to believe for this part is the run's
    assert sp.field is None and sp.believe.label is Label.SUPPORTED
    assert "3.99× fewer bytes" in text and "14.5 and 13.0 GB/s" in text and "0.90×" in text
    assert "not served from the cache" in text and "no fast path" not in text
    assert "Holds: size, speed." in c12.verdict(m).reason  # the loss (1.2% at scale) does not hold


def test_c12_speed_literature_is_the_notes_comparison_int8_vs_fp16():
    """The notes list 2-4× under a GPU heading: INT8 vs FP16 on a GPU is its own part, limited by
    this CPU run, and the literature decides it; the claim's what-to-believe is then partly."""
    m = _decode(3.58)
    sp = _speed_gpu(m)
    assert (
        sp.run is Label.INCONCLUSIVE
        and sp.power.limited
        and "benchmarks/bench_quant_gpu.py" in str(sp.reason)
    )
    assert sp.field is not None and sp.field.label is Label.NOT_SUPPORTED
    assert sp.believe.label is Label.NOT_SUPPORTED and str(sp.believe.source) == "the literature"
    # SmoothQuant's abstract decides; LLM.int8()'s slowdown (no number) is shown beside it
    assert {p.value for p in sp.field.published} == {1.56, "slower than FP16 below 6.7B parameters"}
    assert "at most 2×" in str(sp.field.reason) and "Also recorded: Section 3" in str(sp.field.reason)
    assert_in_korean(sp.field.reason)
    assert_in_korean(sp.reason)
    from whylab.parts import believed

    assert believed(c12.verdict(m).parts).label is Label.PARTLY


@pytest.mark.parametrize(
    ("median", "kw", "label", "status"),
    [
        (1.0, {}, Label.NOT_SUPPORTED, "below"),  # INT8 kernels slower than the bytes allow
        (4.6, {"int8_cut": 78.0}, Label.NOT_SUPPORTED, "above"),  # 4.55× fewer bytes, 4.6× faster
        (3.0, {"int8_cut": 50.0}, Label.INCONCLUSIVE, "limited: the cache served INT8's weights"),
        (3.58, {"cache": 2_000_000_000}, Label.INCONCLUSIVE, "limited: the FP32 weights fit in the cache"),
        (1.9, {"spread": 0.4}, Label.INCONCLUSIVE, "unclear"),
    ],
)
def test_c12_every_speed_label_is_reachable(median, kw, label, status):
    m = _decode(median, **kw)
    assert c12.part_results(m)["speed"].status == status
    sp = _speed(m)
    assert sp.run is label
    assert_in_korean(sp.reason)
    if status.startswith("limited"):
        assert "(limited by this run)" in str(sp.reason)
        assert any(x.startswith("speed: ") for x in c12.verdict(m).limited)


def test_c12_speed_below_the_bytes_says_the_kernels_set_the_speed():
    assert "its kernels, not the bytes moved, set its speed" in str(_speed(_decode(1.0)).reason)


def test_c12_speed_without_the_cache_size_is_still_judged():
    m = _decode(3.58, cache=None)
    sp = _speed(m)
    assert_in_korean(sp.reason)
    assert sp.run is Label.SUPPORTED and "size was not read" in str(sp.reason)


def test_c12_label_on_definition_checks_only_says_so():
    from test_quant_scale import c12 as metrics

    m = metrics(loss=1.2, params=1_100_000, fast=False)  # loss below the regime, speed without AVX2
    v = c12.verdict(m)
    assert v.label is Label.SUPPORTED and "rests only on definition checks (size" in v.reason
    assert_in_korean(v.reason)
    judged = c12.verdict(_decode(3.58))
    assert "definition checks" not in judged.reason


def test_an_unverified_published_number_is_marked_in_the_record():
    """claim.yaml's `verified: false` (benchmarks/recorded/published_checks.tsv) reaches the part's
    published list, so the report can say the number was not checked against the paper's text."""
    from whylab.report_verdict import part_view

    m = c12_metrics()
    loss = {p.id: p for p in c12.part_verdicts(m, c12.part_results(m))}["loss"]
    published = loss.to_dict()["literature"]["published"]
    flags = {p["where"]: p.get("verified", True) for p in published}
    assert flags["Table 1, SQuAD v1.1 F1, BERT-base FP32"] is False
    assert flags["Table 1, C4 validation perplexity, 13B, 32-bit float"] is True
    shown = part_view(loss.to_dict(), "en")["literature"]["published"]
    assert [p["unverified"] for p in shown].count(True) == 1
