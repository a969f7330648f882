"""C13's figures, tables and literature checks (GPTQ and AWQ vs RTN, group size, the loss at 7B),
drawn from the measurements and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from whylab.concepts.c13_int4.verdict import CLAIMED, part_results
from whylab.concepts.context import ConceptContext, Measured
from whylab.messages import Msg
from whylab.quant import figures as qf
from whylab.quant import report as qr
from whylab.quant.claim_parts import model_words, primary_name, variant_named
from whylab.quant.loss_interval import interval_between
from whylab.quant.part_verdicts import accuracy_table, draw_diffs, parts_table, published_losses
from whylab.quant.part_verdicts import literature as recorded_literature
from whylab.results import Evidence, LiteratureCheck, Table

# AWQ's Table 4 at 7B: a 4-bit loss well under 20% (the notes claim 40-50%)
PUBLISHED_MAX_LOSS_PCT = 20.0


def draw(ctx: ConceptContext, measured: Measured, metrics: dict[str, Any]) -> Evidence:
    rows: list[dict[str, Any]] = measured.whole["rows"]
    results = part_results(metrics)
    loss_band = (float(CLAIMED["loss_pct"][0]), float(CLAIMED["loss_pct"][1]))
    figures = [
        qf.plot_loss_change(
            metrics["variants"], ctx.outdir, "int4", loss_band, primary_name(metrics, "int4")
        ),
        qf.plot_bits_and_groups(
            rows,
            ctx.outdir,
            "bits_and_groups",
            Msg("C13.figure.bits_and_groups.title"),
            Msg("C13.figure.bits_and_groups.caption"),
        ),
    ]
    if metrics["real_scale"]:
        figures.append(qf.plot_real_scale(metrics["real_scale"], ctx.outdir))
    alpha_rows = [{"variant": name, **(alphas or {})} for name, alphas in metrics["awq_alphas"].items()]
    tables = [
        qr.variants_table(rows),
        parts_table(metrics, results),
        accuracy_table(metrics, "int4"),
        published_table(metrics),
    ]
    if metrics["real_scale"]:
        tables.append(qr.real_scale_table(metrics["real_scale"]))
        tables.append(qr.kernel_profile_table(metrics["real_scale"]))
    if alpha_rows:
        tables.append(Table.from_records("awq_alphas", Msg("C13.table.awq_alphas.caption"), alpha_rows))
    return Evidence(
        method=Msg("C13.method"),
        metrics=metrics,
        seeds=list(ctx.seeds),
        tables=tables,
        figures=figures,
        literature=literature(metrics),
        skipped=metrics["skipped"],
    )


def literature(metrics: Mapping[str, Any]) -> list[LiteratureCheck]:
    gptq_ok, gptq_text = compare(metrics, "gptq", "rtn")
    awq_ok, awq_text = compare(metrics, "awq", "rtn")
    trend_ok, trend_text = group_size_trend(metrics)
    primary = variant_named(metrics, primary_name(metrics, "int4"))
    params = (metrics.get("model") or {}).get("parameters")
    return [
        LiteratureCheck("Frantar et al. 2023, GPTQ", Msg("C13.literature.gptq.finding"), gptq_ok, gptq_text),
        LiteratureCheck("Lin et al. 2024, AWQ", Msg("C13.literature.awq.finding"), awq_ok, awq_text),
        LiteratureCheck(
            "Frantar et al. 2023; Lin et al. 2024 (group size ablations)",
            Msg("C13.literature.group_size.finding"),
            trend_ok,
            trend_text,
        ),
        LiteratureCheck(
            "Lin et al. 2024, AWQ, Table 4 (magnitude of the loss at 7B)",
            Msg("C13.literature.magnitude.finding"),
            None if primary is None else primary["ppl_change_high_pct"] < PUBLISHED_MAX_LOSS_PCT,
            Msg("C13.literature.magnitude.none")
            if primary is None
            else Msg(
                "C13.literature.magnitude.note",
                variant=primary["variant"],
                change=primary["ppl_change_pct"],
                high=primary["ppl_change_high_pct"],
                model=model_words(metrics) if params else Msg("quant.lm.small"),
            ),
        ),
    ]


def by_algorithm(metrics: Mapping[str, Any]) -> dict[int, dict[str, float]]:
    """block size -> algorithm -> perplexity change (%)."""
    out: dict[int, dict[str, float]] = {}
    for v in metrics["variants"]:
        if v["family"] == "int4":
            out.setdefault(int(v["block_size"]), {})[v["algorithm"]] = float(v["ppl_change_pct"])
    return out


Draws = list[list[float]]  # a variant's per-block NLL differences vs FP32, one list per calibration draw


def pair_draws(metrics: Mapping[str, Any], a: str, b: str) -> tuple[Draws, Draws] | None:
    """Variants ``a`` and ``b`` on the same evaluation blocks: their per-block NLL differences vs
    FP32, one list per calibration draw (GPTQ, AWQ) or one list (RTN, HQQ); else their recorded
    per-block NLLs (one list each; a − b is the same); None where blocks were not recorded."""
    va, vb = variant_named(metrics, a), variant_named(metrics, b)
    if va and vb and va.get("block_diff") and vb.get("block_diff"):
        da, db = draw_diffs(va), draw_diffs(vb)
    else:
        nll = metrics.get("block_nll", {})
        if not nll.get(a) or not nll.get(b):
            return None
        da, db = [list(nll[a])], [list(nll[b])]
    if len(da[0]) != len(db[0]) or (len(da) != len(db) and 1 not in (len(da), len(db))):
        return None
    return da, db


def paired_difference(a: Draws, b: Draws) -> tuple[float, float]:
    """Mean per-block NLL difference a − b (nats/token) and the half-width of its 95% t interval
    (same blocks, paired; over the calibration draws too): the one CI rule of C12/C13
    (:func:`whylab.quant.loss_interval.interval_between`)."""
    ci = interval_between(a, b)
    return ci.mean, (ci.high - ci.low) / 2.0


def side(pair: tuple[Draws, Draws] | None) -> bool | None:
    """True where a is clearly lower than b (the 95% interval of the one CI rule lies below 0),
    False where clearly higher, None inside the noise or without paired blocks."""
    if pair is None:
        return None
    ci = interval_between(*pair)
    return True if ci.high < 0 else False if ci.low > 0 else None


def compare(metrics: Mapping[str, Any], better: str, than: str) -> tuple[bool | None, Msg]:
    """Whether ``better`` beats ``than`` at every group size both ran at, on the same eval blocks.

    Per group size the per-block NLLs are compared pairwise by the one CI rule (:func:`side`):
    clearly lower counts for, clearly higher against; a difference inside the noise at every
    size leaves the question open (None), and so does a size without per-block NLLs (point
    estimates never decide).
    """
    table = by_algorithm(metrics)
    names = {
        (v["algorithm"], int(v["block_size"])): v["variant"]
        for v in metrics["variants"]
        if v["family"] == "int4"
    }
    pairs = [
        (bs, algs[better], algs[than])
        for bs, algs in sorted(table.items())
        if better in algs and than in algs
    ]
    if not pairs:
        return None, Msg("C13.literature.compare.not_both", better=better, than=than)
    outcomes: list[bool | None] = []
    texts: list[Msg] = []
    for bs, a, b in pairs:
        pair = pair_draws(metrics, names[(better, bs)], names[(than, bs)])
        if pair is not None:
            diff, half = paired_difference(*pair)
            outcomes.append(side(pair))
            texts.append(
                Msg(
                    "C13.literature.compare.paired",
                    group=bs,
                    better=better,
                    a=a,
                    than=than,
                    b=b,
                    diff=diff,
                    half=half,
                )
            )
        else:
            outcomes.append(None)
            texts.append(Msg("C13.literature.compare.plain", group=bs, better=better, a=a, than=than, b=b))
    if any(o is False for o in outcomes):
        agrees: bool | None = False
    elif all(o is True for o in outcomes):
        agrees = True
    elif any(o is True for o in outcomes):
        agrees = True  # clearly better somewhere, never clearly worse
    else:
        agrees = None
    return agrees, Msg("C13.literature.compare.all", groups=texts)


def group_size_trend(metrics: Mapping[str, Any]) -> tuple[bool | None, Msg]:
    """Whether smaller groups lower the 4-bit loss, per algorithm measured at two or more group
    sizes: each adjacent pair of sizes compared on the same blocks by the one CI rule
    (:func:`side`); clearly lower everywhere -> agrees, clearly higher anywhere -> disagrees,
    otherwise (inside the noise) open."""
    table = by_algorithm(metrics)
    sizes = sorted(table)
    if len(sizes) < 2:
        return None, Msg("C13.literature.trend.one_size")
    checks: list[tuple[str, list[bool | None], list[tuple[int, float]]]] = []
    for alg in sorted({a for algs in table.values() for a in algs}):
        vals = [(bs, table[bs][alg]) for bs in sizes if alg in table[bs]]
        if len(vals) >= 2:
            names = [f"ort-int4-{alg}-b{bs}" for bs, _ in vals]
            sides = [side(pair_draws(metrics, names[i], names[i + 1])) for i in range(len(vals) - 1)]
            checks.append((alg, sides, vals))
    if not checks:
        return None, Msg("C13.literature.trend.no_pair")
    text = Msg(
        "C13.literature.trend.all",
        algorithms=[
            Msg(
                "C13.literature.trend.algorithm",
                algorithm=alg,
                changes=[Msg("C13.literature.trend.group", group=bs, change=v) for bs, v in vals],
            )
            for alg, _, vals in checks
        ],
    )
    outcomes = [o for _, sides, _ in checks for o in sides]
    if any(o is False for o in outcomes):
        return False, text
    return (True if any(o is True for o in outcomes) else None), text


def published_table(metrics: Mapping[str, Any]) -> Table:
    """The papers' 4-bit perplexity changes at 7B scale (claim.yaml's loss literature: AWQ's Table 4,
    RTN, GPTQ, GPTQ with reordering, AWQ) beside ours on the trained LM at its widest group size."""
    params = (metrics.get("model") or {}).get("parameters")
    int4 = [v for v in metrics["variants"] if v["family"] == "int4"]
    widest = max((int(v["block_size"]) for v in int4), default=None)
    ours = {
        v["algorithm"]: v["ppl_change_pct"]
        for v in int4
        if int(v["block_size"]) == widest and v["variant"] == f"ort-int4-{v['algorithm']}-b{v['block_size']}"
    }
    here = f"trained LM here, {params / 1e6:.2g}M parameters (%)" if params else "trained LM here (%)"
    records = [
        {
            "algorithm": entry["algorithm"],
            "LLaMA-2-7B, group 128, published (%)": round(loss, 2),
            here: None if entry["algorithm"] not in ours else round(ours[entry["algorithm"]], 3),
        }
        for entry, loss in published_losses(recorded_literature("C13", "loss"))
        if entry.get("algorithm")
    ]
    return Table.from_records("published_at_scale", Msg("C13.table.published_at_scale.caption"), records)
