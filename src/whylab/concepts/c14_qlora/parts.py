"""C14's sentence judged part by part (``../../parts.py``): "4비트 양자화" (a definition check on
bitsandbytes' NF4 base) and "LoRA 미세조정" (peft's adapters alone train, the base stays frozen, and
fine-tuning lowers the new language's perplexity: an experiment over seeds), each with the QLoRA
paper's numbers recorded in ``claim.yaml``. Pure: numbers in, parts out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from whylab.concepts.spec import load_spec
from whylab.memory.planner import load_model_config
from whylab.memory.training_plan import GiB, Setup, plan
from whylab.messages import Msg, empty, language_name
from whylab.parts import FieldAnswer, PartVerdict, Power, part_reason, published_numbers, run_label
from whylab.verdict import Kind, Label, effect, paired_test

SPEC = load_spec("C14")
MiB = 2**20
# the regime the notes speak of: Llama-2-7B, batch 1 x 512, LoRA r=64 on every block linear (the
# QLoRA paper's rank), 16-bit base vs NF4 base (the planner, validated against measured steps)
REAL_SCALE: dict[str, Any] = {"model": "llama-2-7b", "batch": 1, "seq": 512, "lora_r": 64}


def real_scale() -> dict[str, Any]:
    """The planner's peak of one Llama-2-7B fine-tuning step: LoRA on a BF16 base vs QLoRA, and full
    mixed-precision AdamW fine-tuning (pure Python, from the model's config)."""
    name, cfg = load_model_config(str(REAL_SCALE["model"]))
    b, s, r = int(REAL_SCALE["batch"]), int(REAL_SCALE["seq"]), int(REAL_SCALE["lora_r"])
    out: dict[str, Any] = dict(REAL_SCALE)
    for key, setup in (
        ("full", Setup(batch=b, seq=s)),
        ("lora", Setup(batch=b, seq=s, lora=r)),
        ("qlora", Setup(batch=b, seq=s, lora=r, qlora=True)),
    ):
        p = plan(cfg, setup, name)
        out[f"peak_{key}_gib"] = p.peak / GiB
        out[f"weights_{key}_gib"] = p.components["weights"] / GiB
    return out


def four_bit_field(max_bits: float) -> FieldAnswer:
    """The QLoRA paper's NF4 with double quantization: 4-bit codes plus its constants' bits per
    parameter; at most ``max_bits`` -> a 4-bit quantization (supported)."""
    published = published_numbers(SPEC.part("four_bit"))
    code_bits, constant_bits = (float(p.value) for p in published)
    bits = code_bits + constant_bits
    label = Label.SUPPORTED if bits <= max_bits else Label.NOT_SUPPORTED
    return FieldAnswer(
        label, part_reason("C14.part.four_bit.field", bits=bits, constant_bits=constant_bits), published
    )


def lora_field() -> FieldAnswer:
    """The QLoRA paper fine-tuned a 65B model on one 48 GB GPU: its 16-bit weights alone would not
    fit there, its NF4 base does -> fine-tuning trained adapters on the frozen 4-bit base (supported)."""
    published = published_numbers(SPEC.part("lora_finetuning"))
    params_b, gpu_gb = (float(p.value) for p in published)
    bf16_gb = 2 * params_b
    nf4_gb = params_b * 4.127 / 8
    label = Label.SUPPORTED if nf4_gb < gpu_gb < bf16_gb else Label.NOT_SUPPORTED
    reason = part_reason("C14.part.lora.field", params=params_b, gpu=gpu_gb, bf16=bf16_gb, nf4=nf4_gb)
    return FieldAnswer(label, reason, published)


def _memory(metrics: Mapping[str, Any]) -> Msg:
    """Why QLoRA saved (or did not save) peak training memory here, and what the planner says at 7B."""
    v = metrics.get("variants", {})
    r = metrics.get("real_scale") or real_scale()
    scale = Msg(
        "C14.part.four_bit.real_scale",
        batch=r["batch"],
        seq=r["seq"],
        r=r["lora_r"],
        lora=r["peak_lora_gib"],
        qlora=r["peak_qlora_gib"],
        full=r["peak_full_gib"],
        w_lora=r["weights_lora_gib"],
        w_qlora=r["weights_qlora_gib"],
    )
    q, lo = v.get("qlora", {}), v.get("lora", {})
    peaks_q, peaks_l = q.get("peak_bytes"), lo.get("peak_bytes")
    if not peaks_q or not peaks_l or "base_storage_bytes" not in lo:
        return scale
    med = sorted(peaks_q)[len(peaks_q) // 2] / MiB, sorted(peaks_l)[len(peaks_l) // 2] / MiB
    return Msg(
        "C14.part.four_bit.memory",
        peak_q=med[0],
        peak_l=med[1],
        base_q=q["base_storage_bytes"] / MiB,
        base_l=lo["base_storage_bytes"] / MiB,
        real_scale=scale,
        hardware=Msg("C14.part.four_bit.on_cpu") if metrics.get("device") == "cpu" else empty(),
    )


def four_bit_part(q: Mapping[str, Any], metrics: Mapping[str, Any]) -> PartVerdict:
    part = SPEC.part("four_bit")
    max_bits = float(SPEC.threshold("max_bits_per_weight"))
    n4, nlin, bits = (
        int(q["linear4bit_count"]),
        int(q["decoder_linear_count"]),
        float(q["linear_bits_per_weight"]),
    )
    holds = n4 == nlin and nlin > 0 and bool(q["nf4"]) and bits <= max_bits
    reason = part_reason(
        "C14.part.four_bit.run",
        n4=n4,
        nlin=nlin,
        bits=bits,
        nf4=Msg("C14.part.four_bit.nf4" if q["nf4"] else "C14.part.four_bit.not_nf4"),
        memory=_memory(metrics),
    )
    label = Label.SUPPORTED if holds else Label.NOT_SUPPORTED
    return PartVerdict("four_bit", part.words, Kind.DEFINITION, label, reason, None, four_bit_field(max_bits))


def ppl_drops(before: float, after: Sequence[float]) -> list[float]:
    """Per seed, how far fine-tuning lowered the log-perplexity (nats/token; positive = lower)."""
    return [math.log(before) - math.log(float(a)) for a in after]


def lora_part(q: Mapping[str, Any], lang: str) -> PartVerdict:
    """Only the adapters train and the base stays frozen (else not supported), and fine-tuning lowers
    the perplexity of the new language by at least ``min_ppl_drop`` nats/token over seeds (a paired
    test on per-seed log-perplexities; the base is the same for every seed)."""
    part = SPEC.part("lora_finetuning")
    assert part.primary is not None and part.primary.min_effect is not None
    min_drop = part.primary.min_effect
    after = [float(x) for x in q["ppl_after"]]
    before = float(q["ppl_before"])
    drops = ppl_drops(before, after)
    test = paired_test([math.log(before)] * len(after), [math.log(a) for a in after])
    sign = effect(test, min_drop)
    structural = bool(q["only_adapters_trainable"]) and bool(q["base_unchanged"])
    power = Power.paired(test.sd_diff, test.n, "nats/token", predicted=min_drop)
    decided = (
        Label.NOT_SUPPORTED
        if not structural or sign < 0
        else Label.SUPPORTED
        if sign > 0
        else Label.INCONCLUSIVE
    )
    reason = part_reason(
        "C14.part.lora.run",
        lang=language_name(lang),
        before=before,
        after=sum(after) / len(after),
        drop=sum(drops) / len(drops),
        n=len(drops),
        min_drop=min_drop,
        detectable=Msg("C14.part.detectable", d=power.detectable)
        if math.isfinite(power.detectable)
        else Msg("C14.part.no_spread"),
        structure=empty() if structural else Msg("C14.part.lora.not_structural"),
    )
    return PartVerdict(
        "lora_finetuning", part.words, Kind.EXPERIMENT, run_label(decided, power), reason, power, lora_field()
    )


def parts_of(metrics: Mapping[str, Any]) -> list[PartVerdict]:
    """Both parts, or none when QLoRA did not run."""
    q = metrics.get("variants", {}).get("qlora")
    if not metrics.get("qlora_ran") or q is None:
        return []
    return [four_bit_part(q, metrics), lora_part(q, str(metrics.get("finetune_language", "?")))]
