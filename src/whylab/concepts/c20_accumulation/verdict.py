"""C20's decision: from the gradient and memory rows to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
``equal_tolerance`` is a setting only the decision reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, Power, part_reason, published_numbers, run_label
from whylab.verdict import Kind, Label, Spread, Verdict, VerdictOf

CLAIM_ID = "C20"
SPEC = load_spec(CLAIM_ID)


def memory_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The memory rows with each step's mean and standard deviation of its times."""
    out = []
    for r in rows:
        t = Spread.of(r["times_s"])
        out.append(
            {
                **{k: r[k] for k in ("micro", "accumulation_steps", "peak_bytes", "breakdown")},
                "activations_at_peak": r["activations_at_peak"],
                "time_mean_s": t.mean,
                "time_std_s": t.std,
                "times_s": r["times_s"],
                "method": r["method"],
            }
        )
    return out


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    diffs: list[dict[str, Any]] = measured.whole["diffs"]
    mem = memory_rows(measured.whole["memory"])
    micros: list[int] = measured.whole["micros"]
    tol = float(s["equal_tolerance"])
    split = [d for d in diffs if d["micro"] < int(s["batch_size"])]  # micro == batch is the batch itself

    def worst(case: str) -> float:
        vals = [d["rel_diff"] for d in split if d["case"] == case]
        return max(vals) if vals else 0.0

    by_micro = {r["micro"]: r for r in mem}
    small, large = by_micro[micros[0]], by_micro[micros[-1]]
    equal, padded_mom_case, padded_ts_case = measured.whole["cases"]
    padded_mom, padded_ts = worst(padded_mom_case), worst(padded_ts_case)
    factor = float(SPEC.threshold("mean_of_means_factor"))
    eq_smallest = [d["rel_diff"] for d in split if d["case"] == equal and d["micro"] == micros[0]]
    return {
        "diffs": diffs,
        "memory": mem,
        "equal_max_rel": worst(equal),
        "padded_mean_of_means_max_rel": padded_mom,
        "padded_mean_of_means_min_rel": min(
            (d["rel_diff"] for d in split if d["case"] == padded_mom_case), default=0.0
        ),
        "padded_token_sum_max_rel": padded_ts,
        "peak_smallest_micro": small["peak_bytes"],
        "peak_largest_micro": large["peak_bytes"],
        "peak_reduction": 1 - small["peak_bytes"] / large["peak_bytes"],
        "time_ratio_smallest_vs_largest": small["time_mean_s"] / large["time_mean_s"],
        "micro_smallest": micros[0],
        "micro_largest": micros[-1],
        "equal_tolerance": tol,
        "device": str(s.get("device", "cpu")),
        "equal_rel_sd": Spread.of(eq_smallest).std if len(eq_smallest) > 1 else None,
        "equal_seeds": len(eq_smallest),
        "hf_fix_agrees": padded_mom > factor * tol and padded_ts <= tol if len(micros) > 1 else None,
    }


def primary_text(tolerance: float) -> Msg:
    part = SPEC.part("split")
    assert part.primary is not None
    return Msg(part.primary.text, tolerance=tolerance)


def field_answer() -> FieldAnswer:
    """Goyal et al. 2017: a minibatch of kn split into k parts of n, each loss normalised by kn,
    gives the large minibatch's gradient; supported when the recorded n x k is the minibatch."""
    published = published_numbers(SPEC.part("same_gradient"))
    n, k, batch = (int(p.value) for p in published)
    label = Label.SUPPORTED if n * k == batch else Label.INCONCLUSIVE
    return FieldAnswer(label, part_reason("C20.part.same_gradient.field", n=n, k=k, batch=batch), published)


def part_verdicts(metrics: Mapping[str, Any]) -> list[PartVerdict]:
    """The gradient part (equal lengths and padded token sums within the tolerance; power over
    seeds against a difference of the tolerance) and the memory part (deterministic bytes)."""
    tol = float(metrics["equal_tolerance"])
    eq, ts, red = metrics["equal_max_rel"], metrics["padded_token_sum_max_rel"], metrics["peak_reduction"]
    sd = metrics.get("equal_rel_sd")
    power = Power.paired(
        float("nan") if sd is None else float(sd), int(metrics.get("equal_seeds", 0)), "relative", tol
    )
    one = metrics["micro_smallest"] == metrics["micro_largest"]
    grad = Label.NOT_SUPPORTED if eq > tol else Label.PARTLY if ts > tol else Label.SUPPORTED
    mem = Label.SUPPORTED if red >= SPEC.threshold("min_peak_reduction") else Label.NOT_SUPPORTED
    if one:
        grad = mem = Label.INCONCLUSIVE
    detect = (
        Msg("C20.part.detectable", d=power.detectable, n=power.n)
        if power.detectable != float("inf")
        else Msg("C20.part.no_spread", n=power.n)
    )
    return [
        PartVerdict(
            "same_gradient",
            SPEC.part("same_gradient").words,
            Kind.EXPERIMENT,
            run_label(grad, power),
            part_reason("C20.part.same_gradient.run", eq=eq, ts=ts, tol=tol, detect=detect),
            power,
            field_answer(),
        ),
        PartVerdict(
            "less_memory",
            SPEC.part("less_memory").words,
            Kind.EXPERIMENT,
            mem,
            part_reason(
                "C20.part.less_memory.run",
                ms=metrics["micro_smallest"],
                ml=metrics["micro_largest"],
                red_pct=100 * red,
                hardware=Msg("C20.part.on_cpu") if metrics.get("device") == "cpu" else empty(),
            ),
        ),
    ]


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    out = VerdictOf(Kind.EXPERIMENT, primary_text(float(metrics["equal_tolerance"])))
    out.parts.extend(part_verdicts(metrics))
    tol = metrics["equal_tolerance"]
    eq, mom, ts = (
        metrics["equal_max_rel"],
        metrics["padded_mean_of_means_max_rel"],
        metrics["padded_token_sum_max_rel"],
    )
    red = metrics["peak_reduction"]
    ms, ml = metrics["micro_smallest"], metrics["micro_largest"]
    if ms == ml:
        return out.branch(Label.INCONCLUSIVE, "C20.verdict.one_micro")
    if eq > tol:
        return out.branch(Label.NOT_SUPPORTED, "C20.verdict.not_equal", eq=eq, tol=tol)
    if red < SPEC.threshold("min_peak_reduction"):
        return out.branch(
            Label.PARTLY, "C20.verdict.no_memory_saving", eq=eq, ms=ms, ml=ml, red_pct=100 * red
        )
    if ts > tol:
        return out.branch(Label.PARTLY, "C20.verdict.padded_differs", eq=eq, ts=ts, red_pct=100 * red)
    return out.branch(
        Label.SUPPORTED,
        "C20.verdict.split",
        worst=max(eq, ts),
        ms=ms,
        ml=ml,
        red_pct=100 * red,
        mom=mom,
    )
