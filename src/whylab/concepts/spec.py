"""A claim's ``claim.yaml``: the rule written before the run, as data.

::

    claim: C07
    parts:                       # the notes' sentence, assertion by assertion
      - id: pad_statistics
        words: "배치 정규화는 패딩까지 평균에 넣는다"   # the notes' own words for this part
        kind: experiment         # or definition (a check on someone else's implementation)
        primary:                 # the one comparison that decides the part
          text: C07.primary      # catalogue key of its sentence; the fields below are its parameters
          arms: [naive BatchNorm, masked BatchNorm]
          metric: validation loss
          unit: nats/token
          min_effect: 0.02
    thresholds: {alpha: 0.05}    # every other number the verdict compares against
    decision_settings: []        # config keys only the decision reads (they re-run no measurement)

Light (YAML only): the DAG reads ``decision_settings`` when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from whylab.errors import InputError
from whylab.files import parse_yaml

SPEC_FILE = "claim.yaml"
KINDS = ("experiment", "definition")


@dataclass(frozen=True)
class Primary:
    text: str  # catalogue key of the comparison's sentence
    arms: tuple[str, ...]
    metric: str
    unit: str
    min_effect: float | None = None

    def params(self) -> dict[str, Any]:
        """The comparison's fields as parameters of its sentence (so code and words agree)."""
        return {
            "arms": " vs ".join(self.arms),
            "metric": self.metric,
            "unit": self.unit,
            "min_effect": self.min_effect,
        }


@dataclass(frozen=True)
class Part:
    id: str
    words: str  # the notes' own words for this assertion
    kind: str
    primary: Primary | None = None
    literature: tuple[dict[str, Any], ...] = ()  # published numbers: source, where, value, unit, url


@dataclass(frozen=True)
class ClaimSpec:
    claim_id: str
    parts: tuple[Part, ...]
    thresholds: dict[str, Any] = field(default_factory=dict)
    decision_settings: tuple[str, ...] = ()

    def part(self, part_id: str) -> Part:
        for p in self.parts:
            if p.id == part_id:
                return p
        raise KeyError(f"{self.claim_id}: no part {part_id!r} in {SPEC_FILE}")

    def threshold(self, name: str) -> Any:
        if name not in self.thresholds:
            raise KeyError(f"{self.claim_id}: no threshold {name!r} in {SPEC_FILE}")
        return self.thresholds[name]


def _primary(raw: Any, where: str) -> Primary | None:
    if raw is None:
        return None
    missing = [k for k in ("text", "arms", "metric", "unit") if k not in raw]
    if missing:
        raise InputError(f"{where}.primary: missing {', '.join(missing)}")
    return Primary(
        str(raw["text"]),
        tuple(str(a) for a in raw["arms"]),
        str(raw["metric"]),
        str(raw["unit"]),
        None if raw.get("min_effect") is None else float(raw["min_effect"]),
    )


def parse_spec(raw: Any, source: str) -> ClaimSpec:
    """A :class:`ClaimSpec` from the YAML's data; a one-line error naming ``source`` otherwise."""
    if not isinstance(raw, dict) or "claim" not in raw or not raw.get("parts"):
        raise InputError(f"{source}: needs 'claim' and a non-empty 'parts' list")
    parts = []
    for i, p in enumerate(raw["parts"]):
        where = f"{source}: parts[{i}]"
        if not isinstance(p, dict) or not {"id", "words", "kind"} <= set(p):
            raise InputError(f"{where}: needs id, words and kind")
        if p["kind"] not in KINDS:
            raise InputError(f"{where}.kind: {p['kind']!r} is not one of {', '.join(KINDS)}")
        literature = tuple(dict(x) for x in p.get("literature") or ())
        if any(not {"source", "where", "value", "url"} <= set(x) for x in literature):
            raise InputError(f"{where}.literature: each entry needs source, where, value and url")
        parts.append(
            Part(str(p["id"]), str(p["words"]), str(p["kind"]), _primary(p.get("primary"), where), literature)
        )
    ids = [p.id for p in parts]
    if len(set(ids)) != len(ids):
        raise InputError(f"{source}: part ids repeat ({', '.join(ids)})")
    return ClaimSpec(
        str(raw["claim"]),
        tuple(parts),
        dict(raw.get("thresholds") or {}),
        tuple(str(k) for k in raw.get("decision_settings") or ()),
    )


@cache
def load_spec(claim_id: str) -> ClaimSpec:
    """The ``claim.yaml`` of a claim package."""
    from whylab.concepts import REGISTRY

    package = REGISTRY[claim_id]
    text = files(package).joinpath(SPEC_FILE).read_text(encoding="utf-8")
    spec = parse_spec(parse_yaml(text), f"{package.replace('.', '/')}/{SPEC_FILE}")
    if spec.claim_id != claim_id:
        raise InputError(f"{package}/{SPEC_FILE}: says claim {spec.claim_id}, registered as {claim_id}")
    return spec


def decision_settings(claim_id: str) -> tuple[str, ...]:
    return load_spec(claim_id).decision_settings


def measure_settings(claim_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a measure job gets: the claim's, less those only its decision reads."""
    skip = set(decision_settings(claim_id))
    return {k: v for k, v in settings.items() if k not in skip}
