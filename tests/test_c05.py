"""C05: the synthetic measurements, the verdict decided from training (paired, with a floor, where
'no difference' in the dimension is a legitimate outcome), and the vanishing-gradient caveat stated
only where this run shows it (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench_claims import lm_inputs_of, run_claim, spread
from catalogue_checks import assert_explained, assert_record_in_korean
from claim_packages import assert_measuring_is_light
from whylab.bench.model import BenchConfig, BenchTransformer, MultiHeadAttention
from whylab.concepts.c05_scaling import experiment as c05x
from whylab.concepts.c05_scaling import figures as c05f
from whylab.concepts.c05_scaling import verdict as c05
from whylab.messages import Msg, english_runs
from whylab.verdict import Label

torch.set_num_threads(1)


def test_softmax_probe_variance_and_saturation() -> None:
    gen = torch.Generator().manual_seed(0)
    small = c05x.softmax_probe(4, None, n_keys=32, samples=300, generator=gen)
    big = c05x.softmax_probe(256, None, n_keys=32, samples=300, generator=gen)
    scaled = c05x.softmax_probe(256, 1 / 16, n_keys=32, samples=300, generator=gen)
    assert big["var_raw"] == pytest.approx(256, rel=0.15) and small["var_raw"] == pytest.approx(4, rel=0.15)
    assert scaled["std_scaled"] == pytest.approx(1.0, rel=0.1)
    assert big["max_prob"] > 0.8 > scaled["max_prob"]
    assert big["grad_logits"] < 0.2 * scaled["grad_logits"]
    rows = c05x.synthetic_heads(64, [1, 4], n_keys=16, samples=50, threshold=0.9, seed=0)
    var = {(r["heads"], r["scaling"]): r["score_var_scaled"] for r in rows}
    assert var[(4, "sqrt_dmodel")] == pytest.approx(0.25, rel=0.25)
    assert c05.loglog_slope([1, 2, 4], [3, 6, 12]) == pytest.approx(1.0)


def test_causal_attention_entropy_bounds() -> None:
    torch.manual_seed(0)
    model = BenchTransformer(BenchConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=1))
    x = torch.randint(0, 20, (2, 12))
    assert 0.9 < c05x.causal_attention_entropy(model, x) <= 1.0 + 1e-5
    attn = model.blocks[0].attn
    assert isinstance(attn, MultiHeadAttention) and attn.q_proj is not None and attn.k_proj is not None
    with torch.no_grad():
        attn.q_proj.weight.mul_(1000)
        attn.k_proj.weight.mul_(1000)
    assert c05x.causal_attention_entropy(model, x) < 0.5


DK = [4.80, 4.90, 4.85, 4.82, 4.88]


def c05_metrics(
    *,
    none_loss: list[float] | None = None,
    dmodel_loss: list[float] | None = None,
    grad_none: list[float] | None = None,
    grad_dk: list[float] | None = None,
    vanish_from: int = 256,
    dmodel_var: float = 1 / 16,
    slope: float = 1.0,
    entropy_none: float = 0.16,
) -> dict[str, Any]:
    none_loss = none_loss if none_loss is not None else [x + 0.8 + 0.01 * i for i, x in enumerate(DK)]
    dmodel_loss = dmodel_loss if dmodel_loss is not None else [x + 0.004 * (i % 2) for i, x in enumerate(DK)]
    grad_none = grad_none or [0.14, 0.15, 0.13, 0.14, 0.15]
    grad_dk = grad_dk or [0.017, 0.018, 0.017, 0.016, 0.018]
    d_ks = [4, 64, 256, 512]
    raw = [0.2 if d < vanish_from else 0.001 for d in d_ks]
    m = {
        "n_seeds": len(DK),
        "heads": {
            "d_model": 512,
            "heads": [1, 16],
            "score_var_scaled": {
                "sqrt_dk": [1.0, 0.99],
                "sqrt_dmodel": [1.0, dmodel_var],
                "none": [512.0, 32.0],
            },
        },
        "synthetic": {
            "d_k": d_ks,
            "var_slope": slope,
            "var_scaled": [1.0, 0.98, 1.01, 1.0],
            "saturated_share": {"none": [0.0, 0.3, 0.7, 0.8], "sqrt_dk": [0.0] * 4},
            "grad_logits": {"none": raw, "sqrt_dk": [0.17] * 4},
        },
        "training": {
            "64": {
                "heads": 1,
                "scalings": {
                    "sqrt_dk": {"final_eval_loss": spread(DK), "grad_wq_init": spread(grad_dk)},
                    "none": {
                        "final_eval_loss": spread(none_loss),
                        "grad_wq_init": spread(grad_none),
                        "attention_entropy_init": spread([entropy_none] * 5),
                    },
                },
            },
            "8": {
                "heads": 8,
                "scalings": {
                    "sqrt_dk": {"final_eval_loss": spread(DK)},
                    "sqrt_dmodel": {"final_eval_loss": spread(dmodel_loss)},
                },
            },
        },
        "thresholds": {"min_loss_gain": 0.02},
    }
    m["paired"] = c05.paired_comparisons(m)
    return m


NOISY = [x + d for x, d in zip(DK, [0.6, -0.5, 0.4, -0.45, 0.1], strict=True)]


def parts(v: Any) -> dict[str, Label]:
    return {p.id: p.run for p in v.parts}


def test_the_realistic_run_is_partly_supported_part_by_part() -> None:
    """Issue 20: d_k, not the embedding dimension; the variance grows; at the trained d_k the
    attention saturates but the W_q gradient does not vanish; scaling helps training."""
    v = c05.verdict(c05_metrics())
    assert v.label is Label.PARTLY
    assert parts(v) == {
        "dimension": Label.NOT_SUPPORTED,
        "variance": Label.SUPPORTED,
        "gradient": Label.NOT_SUPPORTED,
        "training": Label.SUPPORTED,
    }
    assert "not by √(embedding dimension)" in v.correction and "does not vanish" in v.correction
    record = v.to_dict()
    assert record["believe"]["label"] == "partly supported"
    by_id = {p["id"]: p for p in record["parts"]}
    assert by_id["gradient"]["believe"]["source"] == "this run, against the literature"
    assert by_id["dimension"]["literature"]["label"] == "not supported"
    assert by_id["training"]["run"]["power"]["unit"] == "nats/token"


def test_every_part_label_is_reachable() -> None:
    assert parts(c05.verdict(c05_metrics(dmodel_var=1.0)))["dimension"] is Label.SUPPORTED
    assert parts(c05.verdict(c05_metrics(slope=0.5)))["variance"] is Label.NOT_SUPPORTED
    vanished = c05.verdict(c05_metrics(grad_none=[0.001, 0.0012, 0.0011, 0.001, 0.0013]))
    assert parts(vanished)["gradient"] is Label.SUPPORTED and "has vanished" in vanished.reason
    unsaturated = c05.verdict(c05_metrics(entropy_none=0.8))
    assert parts(unsaturated)["gradient"] is Label.INCONCLUSIVE and "cannot show" in unsaturated.reason
    noisy_grad = c05.verdict(c05_metrics(grad_none=[0.5, 0.001, 0.3, 0.0005, 0.02]))
    assert parts(noisy_grad)["gradient"] is Label.INCONCLUSIVE
    same = [x + 0.002 * (-1) ** i for i, x in enumerate(DK)]
    assert parts(c05.verdict(c05_metrics(none_loss=same)))["training"] is Label.NOT_SUPPORTED
    assert parts(c05.verdict(c05_metrics(none_loss=NOISY)))["training"] is Label.INCONCLUSIVE


def test_every_claim_label_is_reachable() -> None:
    good = c05_metrics(dmodel_var=1.0, grad_none=[0.001, 0.0012, 0.0011, 0.001, 0.0013])
    assert c05.verdict(good).label is Label.SUPPORTED
    worse = [x - 0.3 - 0.01 * i for i, x in enumerate(DK)]
    assert c05.verdict(c05_metrics(none_loss=worse, slope=0.5)).label is Label.NOT_SUPPORTED
    m = c05_metrics()
    m["paired"] = {}
    assert c05.verdict(m).label is Label.INCONCLUSIVE


def test_the_literature_labels_come_from_the_recorded_numbers() -> None:
    from whylab.concepts.c05_scaling import parts as c05p

    assert c05p.published("dimension")["d_k"].value == 64
    assert c05p.published("dimension")["d_model"].value == 512
    assert c05p.published("variance")["exponent"].value == 1
    v = c05.verdict(c05_metrics())
    fields = {p.id: p.field.label for p in v.parts if p.field is not None}
    assert fields == {
        "dimension": Label.NOT_SUPPORTED,
        "variance": Label.SUPPORTED,
        "gradient": Label.SUPPORTED,
        "training": Label.SUPPORTED,
    }
    assert all(p.field and "arxiv.org/abs/1706.03762" in p.field.published[0].url for p in v.parts)


def test_the_parts_texts_render_in_both_languages() -> None:
    cases = [
        c05_metrics(),
        c05_metrics(dmodel_var=1.0, slope=0.5, entropy_none=0.8),
        c05_metrics(grad_none=[0.001, 0.0012, 0.0011, 0.001, 0.0013], none_loss=NOISY),
        c05_metrics(grad_none=[0.5, 0.001, 0.3, 0.0005, 0.02]),
        c05_metrics(none_loss=[x - 0.3 - 0.01 * i for i, x in enumerate(DK)], slope=0.5),
    ]
    for m in cases:
        v = c05.verdict(m)
        assert_explained(v, "C05", v.branch.rsplit(".", 1)[-1])
        for p in v.parts:
            for text in (p.reason, p.field.reason if p.field else Msg("common.empty")):
                ko = text.in_("ko").replace("Vaswani et al.", "").replace("Britz et al.", "")  # names
                assert isinstance(text, Msg) and english_runs(ko) == [], ko


def test_literature_reads_the_gap_trend() -> None:
    m = c05_metrics()
    m["training"]["8"]["scalings"]["none"] = {"final_eval_loss": spread([x + 0.1 for x in DK])}
    assert c05f.literature(m)[1].agrees is True
    m["training"]["8"]["scalings"]["none"] = {"final_eval_loss": spread([x + 3 for x in DK])}
    assert c05f.literature(m)[1].agrees is False


def test_runs_end_to_end(tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path) -> None:
    section = {
        "d_k_values": [4, 16, 64],
        "samples": 40,
        "heads_d_model": 16,
        "heads_values": [1, 2],
        "train_heads": [1, 2],
        "steps": 6,
    }
    rec = run_claim("C05", section, lm_inputs_of(tiny_corpus, tiny_tokenizers), tmp_path)
    m = rec["metrics"]
    assert set(m["paired"]) == {"scaling", "dimension"} and m["paired"]["scaling"]["n"] == 2
    assert m["paired"]["dimension"]["d_k"] == 8 and rec["verdict"]["primary"]
    # every text of the evidence is a catalogue message that renders in Korean
    assert "method" in rec["messages"]
    assert all(set(f["messages"]) == {"title", "caption"} for f in rec["figures"])
    assert all("caption" in t["messages"] for t in rec["tables"])
    assert all(set(x["messages"]) == {"finding", "note"} for x in rec["literature"])
    assert {"reason", "primary", "takeaway"} <= set(rec["verdict"]["messages"])
    assert_record_in_korean(rec)


def test_no_training_renders_in_korean() -> None:
    m = c05_metrics()
    m["paired"] = {}
    v = c05.verdict(m)
    assert v.label is Label.INCONCLUSIVE
    assert_explained(v, "C05", "no_training")


def test_literature_texts_render_in_korean() -> None:
    m = c05_metrics()
    checks = c05f.literature(m)
    m["training"]["8"]["scalings"]["none"] = {"final_eval_loss": spread([x + 0.1 for x in DK])}
    checks += c05f.literature(m)
    for check in checks:
        for text in (check.finding, check.note):
            assert isinstance(text, Msg) and text and english_runs(text.in_("ko")) == [], text.in_("ko")
    assert "Only one d_k was trained" in checks[1].note and "Loss gap" in checks[3].note


def test_measuring_imports_no_plotting_texts_or_verdicts() -> None:
    assert_measuring_is_light("C05")


def test_synthetic_check_is_measured_whole_and_training_per_seed(
    tiny_corpus: Path, tiny_tokenizers: Path, tmp_path: Path
) -> None:
    """measure (no seed loop) holds the synthetic rows, measure_seed one seed's training runs; the
    decision's floor min_loss_gain changes the verdict's comparison, not the measurements."""
    import copy

    from bench_claims import TINY, schema_section
    from whylab.concepts.deciding import decide
    from whylab.concepts.measuring import measure_in_process

    section = {"d_k_values": [4, 16], "samples": 20, "heads_d_model": 16, "heads_values": [1, 2]}
    settings: dict[str, Any] = {
        **copy.deepcopy(TINY),
        **schema_section("C05"),
        **section,
        "train_heads": [2],
        "steps": 4,
    }
    measured = measure_in_process("C05", settings, lm_inputs_of(tiny_corpus, tiny_tokenizers))
    assert set(measured.whole) == {"synthetic_dk", "synthetic_heads"}
    assert [r["seed"] for r in measured.per_seed] == TINY["seeds"]
    assert {run["scaling"] for run in measured.per_seed[0]["runs"]} == set(settings["train_scales"])
    loose = decide("C05", {**settings, "min_loss_gain": 5.0}, measured, tmp_path / "C05" / "result.json")
    assert loose["metrics"]["paired"]["scaling"]["min_effect"] == 5.0
    assert loose["metrics"]["synthetic"] == c05.summarize(measured)["synthetic"]
