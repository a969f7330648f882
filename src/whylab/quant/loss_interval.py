"""The one CI rule of C12 and C13, for the loss part and every literature comparison.

A perplexity change is judged by its 95% t interval of paired per-block NLL differences against
the FP32 reference (blocks of the same evaluation text are the pairs). Where a calibrated
quantizer (GPTQ, AWQ) was run on several calibration draws, the interval also carries the
spread between draws (:func:`interval_over_draws`). The power is what that interval could
detect (:func:`loss_power`). Pure: no torch, no files.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from whylab.parts import Power
from whylab.verdict import t_critical


def paired_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """Mean of the paired differences a − b, its two-sided 95% t interval (n − 1 degrees of
    freedom) and the differences' sd: the one rule every comparison of C12/C13 uses (the loss
    part and each literature check; blocks of the same evaluation text are the pairs)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(d)
    if len(d) < 2:
        return mean, -math.inf, math.inf, math.nan
    sd = statistics.stdev(d)
    half = t_critical(len(d) - 1) * sd / math.sqrt(len(d))
    return mean, mean - half, mean + half, sd


class Interval(NamedTuple):
    """The one CI rule's answer: the mean paired NLL difference (nats/token), its 95% t interval,
    the per-block differences' sd, and the standard error and degrees of freedom the interval
    used (with calibration draws: both spreads, Welch-Satterthwaite)."""

    mean: float
    low: float
    high: float
    sd: float
    se: float
    df: int
    draws: int
    draw_sd: float  # sd of the draws' mean differences (nats/token); nan with one draw


def interval_over_draws(draws: Sequence[Sequence[float]], reference: Sequence[float]) -> Interval:
    """The one CI rule for a variant against its reference: :func:`interval_between` with the
    reference's one list of per-block NLLs."""
    return interval_between(draws, [reference])


def interval_between(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> Interval:
    """The one CI rule, with the calibration draws' variance: a − b in per-block NLL, each side
    one list per calibration draw on the same evaluation blocks (a side with one list, e.g. a
    quantizer without calibration data, is compared with every draw of the other; two sides with
    k draws pair draw j with draw j, which used the same calibration blocks).

    One draw: the paired t interval over blocks (:func:`paired_interval`). k ≥ 2 draws: the mean
    over blocks and draws, its standard error √(s_b²/n + s_d²/k) (s_b: sd over blocks of the
    draw-averaged differences, the evaluation text's sampling; s_d: sd of the k draws' means, the
    calibration subset's), and t with Welch-Satterthwaite degrees of freedom (rounded down)."""
    if len(a) == 1 and len(b) > 1:
        a = list(a) * len(b)
    if len(b) == 1 and len(a) > 1:
        b = list(b) * len(a)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} against {len(b)} calibration draws: pair them draw by draw")
    diffs = [[x - y for x, y in zip(da, db, strict=True)] for da, db in zip(a, b, strict=True)]
    n, k = len(diffs[0]), len(diffs)
    per_block = [statistics.fmean(col) for col in zip(*diffs, strict=True)]
    mean = statistics.fmean(per_block)
    if n < 2:
        return Interval(mean, -math.inf, math.inf, math.nan, math.inf, 0, k, math.nan)
    sd = statistics.stdev(per_block)
    var_b = sd**2 / n
    var_d, df_f, draw_sd = 0.0, float(n - 1), math.nan
    if k >= 2:
        draw_sd = statistics.stdev(statistics.fmean(d) for d in diffs)
        var_d = draw_sd**2 / k
        denom = var_b**2 / (n - 1) + var_d**2 / (k - 1)
        df_f = (var_b + var_d) ** 2 / denom if denom > 0 else float(n - 1)
    se = math.sqrt(var_b + var_d)
    df = max(1, math.floor(df_f))
    half = t_critical(df) * se
    return Interval(mean, mean - half, mean + half, sd, se, df, k, draw_sd)


def loss_power(v: Mapping[str, Any] | None, claimed_low: float) -> Power | None:
    """What the loss interval could detect, in % perplexity (100 × nats/token, to first order):
    (t₀.₉₇₅ + t₀.₈) × its standard error, over the evaluation blocks of one model and, for a
    calibrated quantizer, its calibration draws; None where the blocks were not recorded."""
    if v is None or v.get("n_blocks") is None:
        return None
    n = int(v["n_blocks"])
    se, df = v.get("ci_se"), v.get("ci_df")
    if se is None or df is None or not math.isfinite(float(se)) or float(se) == 0.0:
        sd = math.nan if v.get("nll_diff_sd") is None else 100.0 * float(v["nll_diff_sd"])
        return Power.paired(sd, n, "% perplexity", predicted=claimed_low)
    se_pct = 100.0 * float(se)
    detectable = (t_critical(int(df), 0.05) + t_critical(int(df), 0.4)) * se_pct
    return Power(detectable, "% perplexity", n, se_pct * math.sqrt(n), claimed_low)


def pct(nll: float) -> float:
    """A mean NLL difference (nats/token) as a perplexity change in %."""
    return 100.0 * math.expm1(nll) if math.isfinite(nll) else nll


def with_accuracy(
    summary: dict[str, Any], row: Mapping[str, Any], ref: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Add the paired NLL difference (nats/token), its per-block values and sd, next-token top-1
    accuracy vs the reference, and the perplexity change's 95% t interval (the one CI rule,
    :func:`whylab.quant.loss_interval.interval_between`: over blocks, and over the calibration
    draws where the variant was quantized on several; it replaces the measure step's ±2 SE).
    With draws, the change is their mean and ``draw_block_diff`` keeps each draw's blocks."""
    summary.update(nll_diff=None, nll_diff_sd=None, block_diff=None, n_blocks=None)
    summary.update(ci_se=None, ci_df=None, calibration_draws=1, draw_sd=None, draw_changes_pct=None)
    summary["draw_block_diff"] = None
    summary["top1"] = row.get("valid_top1")
    summary["top1_reference"] = None
    blocks, ref_blocks = row.get("block_nll") or [], (ref or {}).get("block_nll") or []
    if ref is not None and ref_blocks and len(ref_blocks) == len(blocks):
        draws = [
            d["block_nll"]
            for d in row.get("calibration_draws") or []
            if len(d.get("block_nll") or []) == len(ref_blocks)
        ] or [blocks]
        ci = interval_over_draws(draws, ref_blocks)
        summary.update(
            nll_diff=ci.mean,
            nll_diff_sd=None if math.isnan(ci.sd) else ci.sd,
            block_diff=[a - b for a, b in zip(blocks, ref_blocks, strict=True)],
            n_blocks=len(blocks),
            ppl_change_pct=pct(ci.mean) if len(draws) > 1 else summary["ppl_change_pct"],
            ppl_change_low_pct=pct(ci.low),
            ppl_change_high_pct=pct(ci.high),
            ci_se=ci.se if math.isfinite(ci.se) else None,
            ci_df=ci.df,
            calibration_draws=ci.draws,
            draw_sd=None if math.isnan(ci.draw_sd) else ci.draw_sd,
            draw_block_diff=[[a - b for a, b in zip(d, ref_blocks, strict=True)] for d in draws],
            draw_changes_pct=[
                pct(statistics.fmean(a - b for a, b in zip(d, ref_blocks, strict=True))) for d in draws
            ]
            if len(draws) > 1
            else None,
        )
        summary["top1_reference"] = ref.get("valid_top1")
    return summary
