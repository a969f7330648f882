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
) -> dict[str, Any]:
    none_loss = none_loss if none_loss is not None else [x + 0.8 + 0.01 * i for i, x in enumerate(DK)]
    dmodel_loss = dmodel_loss if dmodel_loss is not None else [x + 0.004 * (i % 2) for i, x in enumerate(DK)]
    grad_none = grad_none or [0.14, 0.15, 0.13, 0.14, 0.15]
    grad_dk = grad_dk or [0.017, 0.018, 0.017, 0.016, 0.018]
    d_ks = [4, 64, 256, 512]
    raw = [0.2 if d < vanish_from else 0.001 for d in d_ks]
    m = {
        "n_seeds": len(DK),
        "synthetic": {
            "d_k": d_ks,
            "var_slope": 1.0,
            "saturated_share": {"none": [0.0, 0.3, 0.7, 0.8], "sqrt_dk": [0.0] * 4},
            "grad_logits": {"none": raw, "sqrt_dk": [0.17] * 4},
        },
        "training": {
            "64": {
                "heads": 1,
                "scalings": {
                    "sqrt_dk": {"final_eval_loss": spread(DK), "grad_wq_init": spread(grad_dk)},
                    "none": {"final_eval_loss": spread(none_loss), "grad_wq_init": spread(grad_none)},
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


def test_verdict_supported_when_scaling_helps_and_the_dimension_does_not_matter() -> None:
    v = c05.verdict(c05_metrics())
    assert v.label is Label.SUPPORTED and "absorbed by W_q" in v.reason and not v.limited


def test_verdict_partly_when_d_k_beats_the_embedding_dimension() -> None:
    v = c05.verdict(c05_metrics(dmodel_loss=[x + 0.3 + 0.01 * i for i, x in enumerate(DK)]))
    assert v.label is Label.PARTLY and "d_k" in v.correction


def test_verdict_partly_not_supported_inconclusive_from_the_scaling_comparison() -> None:
    same = [x + 0.002 * (-1) ** i for i, x in enumerate(DK)]
    assert c05.verdict(c05_metrics(none_loss=same)).label is Label.PARTLY  # no difference that matters
    worse = [x - 0.3 - 0.01 * i for i, x in enumerate(DK)]
    assert c05.verdict(c05_metrics(none_loss=worse)).label is Label.NOT_SUPPORTED
    noisy = [x + d for x, d in zip(DK, [0.6, -0.5, 0.4, -0.45, 0.1], strict=True)]
    v = c05.verdict(c05_metrics(none_loss=noisy))
    assert v.label is Label.INCONCLUSIVE and v.limited
    m = c05_metrics()
    m["paired"] = {}
    assert c05.verdict(m).label is Label.INCONCLUSIVE


def test_unclear_dimension_is_a_limit_not_a_lower_label() -> None:
    noisy = [x + d for x, d in zip(DK, [0.3, -0.25, 0.2, -0.3, 0.05], strict=True)]
    v = c05.verdict(c05_metrics(dmodel_loss=noisy))
    assert v.label is Label.SUPPORTED and any("which dimension" in x for x in v.limited)


def test_gradient_caveat_only_where_it_is_true() -> None:
    # trained d_k = 64: the W_q gradient is not smaller unscaled; the synthetic gradient vanishes from 256
    v = c05.verdict(c05_metrics(vanish_from=256))
    assert "at the trained d_k = 64" in v.reason and "has not vanished" in v.reason
    assert "from d_k = 256 on" in v.reason
    assert "saturation, not a vanished gradient" not in v.reason
    # where the W_q gradient is clearly smaller unscaled, the run says so
    v = c05.verdict(c05_metrics(grad_none=[0.001, 0.0012, 0.0011, 0.001, 0.0013]))
    assert "already clearly smaller" in v.reason and "has not vanished" not in v.reason


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


NOISY = [x + d for x, d in zip(DK, [0.6, -0.5, 0.4, -0.45, 0.1], strict=True)]


@pytest.mark.parametrize(
    ("over", "label", "branch"),
    [
        ({}, Label.SUPPORTED, "scaled"),
        ({"dmodel_loss": [x + 0.3 + 0.01 * i for i, x in enumerate(DK)]}, Label.PARTLY, "wrong_dimension"),
        ({"none_loss": [x + 0.002 * (-1) ** i for i, x in enumerate(DK)]}, Label.PARTLY, "no_difference"),
        ({"none_loss": [x - 0.3 - 0.01 * i for i, x in enumerate(DK)]}, Label.NOT_SUPPORTED, "hurts"),
        ({"none_loss": NOISY}, Label.INCONCLUSIVE, "unclear"),
        (
            {"grad_none": [0.001, 0.0012, 0.0011, 0.001, 0.0013], "vanish_from": 10_000},
            Label.SUPPORTED,
            "scaled",
        ),
    ],
)
def test_every_branch_has_its_texts_in_both_languages(
    over: dict[str, Any], label: Label, branch: str
) -> None:
    v = c05.verdict(c05_metrics(**over))
    assert v.label is label
    assert_explained(v, "C05", branch)


def test_no_training_and_untrained_dimension_render_in_korean() -> None:
    m = c05_metrics()
    m["paired"] = {}
    v = c05.verdict(m)
    assert v.label is Label.INCONCLUSIVE
    assert_explained(v, "C05", "no_training")
    m = c05_metrics()
    del m["paired"]["dimension"]
    v = c05.verdict(m)
    assert v.label is Label.SUPPORTED and any("which dimension" in x for x in v.limited)
    assert_explained(v, "C05", "scaled")


def test_the_english_texts_are_unchanged() -> None:
    v = c05.verdict(c05_metrics(dmodel_loss=[x + 0.3 + 0.01 * i for i, x in enumerate(DK)]))
    assert v.reason.startswith(
        "Scaling helps training: at d_k=64 the loss without scaling minus with ÷√d_k is Δ = "
    )
    assert v.reason.endswith(
        "But the right dimension is the per-head d_k of the notes' code, not the embedding dimension of their text."
    )
    assert v.correction == (
        "Scores are divided by √d_k, the per-head key dimension (d_model / heads), not by √(embedding dimension)."
    )
    m = c05_metrics()
    m["paired"] = {}
    assert c05.verdict(m).reason == (
        "In isolation var(q·k) ∝ d_k^1.00, and at d_k=512 80% of unscaled softmax rows saturate (scaled 0%), "
        "but training has no paired comparison of ÷√d_k and no scaling."
    )


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
