"""C08's parts (VALIDITY 7-9): the placement (does Pre-LN train better where Post-LN is stressed?)
and the paper the notes cite (Xiong et al.'s Figure 3 shapes), each with this run's label and
power and the literature's label computed from the numbers ``claim.yaml`` records. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from whylab.concepts import _bench_stats as stats
from whylab.concepts.c08_pre_vs_post_ln.cells import cold_key
from whylab.concepts.c08_pre_vs_post_ln.shapes import xiong_agreement
from whylab.files import parse_yaml
from whylab.messages import Msg, empty
from whylab.parts import FieldAnswer, PartVerdict, Power, Published, run_label
from whylab.verdict import Kind, Label

AGREEMENT_LABEL = {
    "agrees": Label.SUPPORTED,
    "partly": Label.PARTLY,
    "disagrees": Label.NOT_SUPPORTED,
    "unclear": Label.INCONCLUSIVE,
}


@cache
def _raw_parts() -> dict[str, dict[str, Any]]:
    text = files("whylab.concepts.c08_pre_vs_post_ln").joinpath("claim.yaml").read_text(encoding="utf-8")
    return {p["id"]: p for p in parse_yaml(text)["parts"]}


def published(part_id: str) -> tuple[Published, ...]:
    """The published numbers ``claim.yaml`` holds the part against."""
    return tuple(Published.from_dict(d) for d in _raw_parts()[part_id].get("literature") or ())


def _sign(value: float) -> Label:
    return Label.SUPPORTED if value > 0 else Label.NOT_SUPPORTED if value < 0 else Label.PARTLY


def placement_field() -> FieldAnswer:
    """Xiong et al.'s direction, (Post-LN − Pre-LN) without warm-up: > 0 supports the notes."""
    (paper,) = published("placement")
    return FieldAnswer(
        _sign(float(paper.value)),
        Msg("C08.part.placement.field", source=paper.source, where=paper.where, value=float(paper.value)),
        (paper,),
    )


def paper_field() -> FieldAnswer:
    """Their Figure 3: Post-LN's trend towards the output above Pre-LN's supports the notes' paper."""
    recorded = {p.where.split(":")[-1].strip(): p for p in published("paper")}
    post, pre = float(recorded["Post-LN"].value), float(recorded["Pre-LN"].value)
    return FieldAnswer(
        _sign(post - pre),
        Msg("C08.part.paper.field", source=recorded["Post-LN"].source, post=post, pre=pre),
        tuple(recorded.values()),
    )


def _clear(cells: list[Mapping[str, Any]], floor: float) -> tuple[int, int]:
    """(cells where Pre-LN ends clearly lower, cells where Post-LN does): Holm-clear past ``floor``."""
    diffs = [c["post_minus_pre"]["test"]["mean_diff"] for c in cells if c["holm_rejected"]]
    return sum(d > floor for d in diffs), sum(d < -floor for d in diffs)


def _cells_outcome(metrics: Mapping[str, Any]) -> tuple[Label, str]:
    pre, post = _clear(metrics["cells"], float(metrics["min_loss_gain"]))
    if pre and post:
        return Label.PARTLY, "both"
    if pre:
        return Label.SUPPORTED, "pre_wins"
    if post:
        return Label.NOT_SUPPORTED, "post_wins"
    return Label.INCONCLUSIVE, "none"


def stressed(metrics: Mapping[str, Any]) -> bool:
    """Some primary cell stresses Post-LN: a run of it diverged, or it ends clearly worse."""
    return any(_stressed(c) for c in metrics["cells"])


def _init_groups(metrics: Mapping[str, Any]) -> list[tuple[float, int, int, int]]:
    """(init std, cells, cells where Pre-LN ends clearly lower, where Post-LN does) per init std of
    the primary cells, largest std first."""
    floor = float(metrics["min_loss_gain"])
    stds = sorted({round(float(c["init_std"]), 12) for c in metrics["cells"]}, reverse=True)
    out = []
    for std in stds:
        cells = [c for c in metrics["cells"] if round(float(c["init_std"]), 12) == std]
        out.append((std, len(cells), *_clear(cells, floor)))
    return out


def _holds_everywhere(groups: list[tuple[float, int, int, int]]) -> bool:
    return all(pre > 0 and post == 0 for _, _, pre, post in groups)


def pre_wins_at_every_init(metrics: Mapping[str, Any]) -> bool | None:
    """Whether Pre-LN ends clearly lower in some cell, and Post-LN in none, at every init std the
    primary cells use; None with one init std (nothing to compare)."""
    groups = _init_groups(metrics)
    return _holds_everywhere(groups) if len(groups) > 1 else None


def _by_init(metrics: Mapping[str, Any]) -> Msg:
    """Where the primary cells have several init stds: per init std, in how many cells each
    placement ends clearly lower, and whether Pre-LN's advantage holds at every one; empty with
    one init std."""
    groups = _init_groups(metrics)
    if len(groups) < 2:
        return empty()
    per_init = [
        Msg("C08.part.placement.init", init_std=std, n=n, pre=pre, post=post) for std, n, pre, post in groups
    ]
    verdict = Msg(f"C08.part.placement.inits.{'holds' if _holds_everywhere(groups) else 'not_everywhere'}")
    return Msg("C08.part.placement.inits.text", inits=per_init, verdict=verdict)


def _init_matters(metrics: Mapping[str, Any]) -> Msg:
    """Primary cells of the same depth and lr where Post-LN fails at one init std and, at another,
    is not clearly worse than Pre-LN and ends below it on some seeds: there its failure comes with
    the initialisation."""
    out = []
    for bad in (c for c in metrics["cells"] if _stressed(c)):
        for good in metrics["cells"]:
            if good["depth"] != bad["depth"] or abs(good["lr"] - bad["lr"]) >= 1e-12 or _stressed(good):
                continue
            pairs = list(zip(good["post"]["loss"]["values"], good["pre"]["loss"]["values"], strict=True))
            below = sum(post is not None and pre is not None and post < pre for post, pre in pairs)
            if below:
                out.append(
                    Msg(
                        "C08.part.placement.init_matters",
                        depth=bad["depth"],
                        lr=bad["lr"],
                        bad_std=float(bad["init_std"]),
                        bad_post=stats.fmt(bad["post"]["loss"], 3),
                        good_std=float(good["init_std"]),
                        good_post=stats.fmt(good["post"]["loss"], 3),
                        good_pre=stats.fmt(good["pre"]["loss"], 3),
                        below=below,
                        seeds=len(pairs),
                    )
                )
    return Msg("C08.part.placement.init_matters_all", items=out) if out else empty()


def placement_part(metrics: Mapping[str, Any], words: str, numbers: Msg) -> PartVerdict:
    floor = float(metrics["min_loss_gain"])
    tests = [c["post_minus_pre"]["test"] for c in metrics["cells"] if c["post_minus_pre"]["test"]]
    sd = max((float(t["sd_diff"]) for t in tests), default=float("nan"))
    power = Power.paired(sd, int(metrics["n_seeds"]), "nats/token", predicted=floor)
    decided, outcome = _cells_outcome(metrics)
    runs = sum(c["post"]["runs"] for c in metrics["cells"])
    reason = Msg(
        "C08.part.placement.run",
        outcome=Msg(f"C08.part.placement.outcome.{outcome}"),
        numbers=numbers,
        detectable=power.detectable,
        floor=floor,
        stress=empty() if stressed(metrics) else Msg("C08.part.placement.unstressed", runs=runs),
        inits=_by_init(metrics),
        init_matters=_init_matters(metrics),
    )
    label = run_label(decided, power)
    if not stressed(metrics) and label is not Label.NOT_SUPPORTED:
        label = Label.INCONCLUSIVE  # the regime cannot show Post-LN failing: a limit, never lower
    return PartVerdict("placement", words, Kind.EXPERIMENT, label, reason, power, placement_field())


def paper_part(metrics: Mapping[str, Any], words: str) -> PartVerdict:
    shapes = metrics["grad_shape"]
    agreement = xiong_agreement(shapes)
    floor = float(shapes["post"]["trend"]["min_effect"])
    sds = [float(s["trend"]["test"]["sd_diff"]) for s in shapes.values() if s["trend"]["test"]]
    power = Power.paired(max(sds, default=float("nan")), int(metrics["n_seeds"]), "log ratio", floor)
    reason = Msg(
        "C08.part.paper.run",
        depth=metrics["grad_probe_depth"],
        post_shape=Msg(f"C08.shape.{shapes['post']['shape']}"),
        pre_shape=Msg(f"C08.shape.{shapes['pre']['shape']}"),
        post_ratio=stats.fmt(shapes["post"]["last_over_first"], 2),
        pre_ratio=stats.fmt(shapes["pre"]["last_over_first"], 2),
        agreement=Msg(f"C08.agreement.{agreement}"),
        floor=floor,
    )
    label = run_label(AGREEMENT_LABEL[agreement], power)
    return PartVerdict("paper", words, Kind.EXPERIMENT, label, reason, power, paper_field())


def warmup_field() -> FieldAnswer:
    """Xiong et al.'s warm-up finding: +1, Post-LN needs warm-up and Pre-LN does not."""
    (paper,) = published("warmup")
    return FieldAnswer(
        _sign(float(paper.value)),
        Msg("C08.part.warmup.field", value=float(paper.value)),
        (paper,),
    )


NEEDS = {"confirmed": "needs", "contradicted": "no_need", "limited": "unclear"}
FLIP = {"confirmed": "contradicted", "contradicted": "confirmed", "limited": "limited"}


def _stressed(cell: Mapping[str, Any]) -> bool:
    """Post-LN fails in ``cell``: a run diverged, or it ends clearly above Pre-LN."""
    return bool(cell["post"]["diverged"]) or cell["post_minus_pre"]["effect"] == 1


def warmup_pairs(metrics: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each warm-up cell with its primary cell without warm-up."""
    by_cell = {c["key"]: c for c in metrics["cells"]}
    return [(w, by_cell[cold_key(w)]) for w in metrics["warmup_cells"]]


def warmup_cell(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The deepest warm-up cell and its primary cell without warm-up (the warm-up part's); None
    when none ran."""
    return max(warmup_pairs(metrics), key=lambda p: p[0]["depth"], default=None)


def _pre_needs_why(warm: Mapping[str, Any]) -> Msg:
    """Why Pre-LN gaining from warm-up here is not the paper's finding reversed: the cell's peak
    lr, and how its gain compares with Post-LN's."""
    post_gain = float(warm["rescue"]["test"]["mean_diff"])
    pre_gain = float(warm["pre_need"]["test"]["mean_diff"])
    less = Msg("C08.part.warmup.pre_why.less") if pre_gain < post_gain else empty()
    return Msg(
        "C08.part.warmup.pre_why.text", lr=warm["lr"], post_gain=post_gain, pre_gain=pre_gain, less=less
    )


def warmup_part(metrics: Mapping[str, Any], words: str) -> PartVerdict:
    """ "Post-LN needs warm-up here; Pre-LN does not": in the warm-up cell, warm-up's paired gain
    for Post-LN (the rescue) and for Pre-LN, each Holm-corrected with the primary cells. The first
    half holds when the rescue is clear past the floor; the second when Pre-LN's gain is not (a
    95% CI inside ±floor, or Pre-LN clearly better without). Both: supported; neither: not
    supported; one: partly. Post-LN not stressed without warm-up: nothing to rescue, a limit.
    Post-LN still failing with warm-up (and not clearly helped): the first half is a limit, and
    then only Pre-LN clearly needing warm-up too decides (not supported)."""
    floor = float(metrics["min_loss_gain"])
    found = warmup_cell(metrics)
    if found is None:
        power = Power.paired(float("nan"), int(metrics["n_seeds"]), "nats/token", floor)
        reason = Msg("C08.part.warmup.none")
        return PartVerdict(
            "warmup", words, Kind.EXPERIMENT, Label.INCONCLUSIVE, reason, power, warmup_field()
        )
    warm, cold = found
    post = stats.part_status(warm["rescue"], bool(warm["holm_rejected"]))
    # Post-LN failing with warm-up too: the cell's peak lr is one Post-LN cannot train at either
    # way, so it cannot show that warm-up is what Post-LN lacks (a limit, never "not needed")
    fails_anyway = post != "confirmed" and _stressed(warm)
    if fails_anyway:
        post = "limited"
    pre = stats.part_status(warm["pre_need"], bool(warm["pre_need_holm_rejected"]))
    tests = [t for t in (warm["rescue"]["test"], warm["pre_need"]["test"]) if t]
    sd = max((float(t["sd_diff"]) for t in tests), default=float("nan"))
    power = Power.paired(sd, int(metrics["n_seeds"]), "nats/token", predicted=floor)
    cold_stressed = _stressed(cold)
    reason = Msg(
        "C08.part.warmup.run",
        cell=Msg(
            "C08.cell.name",
            depth=warm["depth"],
            lr=warm["lr"],
            init_std=float(warm["init_std"]),
            warm=Msg("C08.cell.no_warmup"),
        ),
        steps=warm["warmup"],
        post=Msg(f"C08.part.warmup.post.{'fails_anyway' if fails_anyway else NEEDS[post]}"),
        rescue=stats.describe(warm["rescue"], "nats/token"),
        post_warm=stats.fmt(warm["post"]["loss"], 3),
        pre_cold=stats.fmt(cold["pre"]["loss"], 3),
        pre=Msg(f"C08.part.warmup.pre.{NEEDS[pre]}"),
        pre_need=stats.describe(warm["pre_need"], "nats/token"),
        detectable=power.detectable,
        floor=floor,
        stress=empty() if cold_stressed else Msg("C08.part.warmup.unstressed"),
        pre_why=_pre_needs_why(warm) if pre == "confirmed" else empty(),
    )
    if post == "limited":  # the first half is the part's core: unjudged, only a false second half decides
        decided = Label.NOT_SUPPORTED if pre == "confirmed" else Label.INCONCLUSIVE
    else:
        decided = Label(stats.label_of([post, FLIP[pre]]))
    # Pre-LN clearly gaining from warm-up (Holm-clear, past the floor) is a found effect: it decides
    label = run_label(decided, power, found=pre == "confirmed")
    if not cold_stressed and label is not Label.NOT_SUPPORTED:
        label = Label.INCONCLUSIVE  # Post-LN does not fail without warm-up: nothing to rescue
    return PartVerdict("warmup", words, Kind.EXPERIMENT, label, reason, power, warmup_field())
