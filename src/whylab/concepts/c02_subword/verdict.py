"""C02's decision: from the band and tokenizer rows to metrics, and from the metrics to a verdict.

Pure: numbers in, label and texts out (no torch, no files). The thresholds are in ``claim.yaml``;
the shares that count as "kept whole" / "split" and the count from which an example word counts as
frequent are the claim's settings (``decision_settings``: changing them re-runs no measurement).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from whylab.concepts.c02_subword.claim_parts import build_parts, failing_tokenizers
from whylab.concepts.context import Measured
from whylab.concepts.spec import load_spec
from whylab.messages import Msg, empty, language_name
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C02"
SPEC = load_spec(CLAIM_ID)
NOTES_WORDS = ("우리", "가족")  # the notes' own examples of frequent words
EXPECTATION_KEYS = {"whole": "whole", "split": "split", "no firm prediction": "no_firm_prediction"}
NO_FIRM_PREDICTION = "no firm prediction"


def expectation(count: int, frequent_min: int) -> str:
    """What the claim predicts for a word seen ``count`` times in the training split."""
    if count >= frequent_min:
        return "whole"
    if count <= 1:
        return "split"
    return NO_FIRM_PREDICTION


def with_expectations(examples: list[dict[str, Any]], frequent_min: int) -> list[dict[str, Any]]:
    """The measured example rows with what the claim predicts for each (after its band)."""
    out = []
    for row in examples:
        head = {k: v for k, v in row.items() if k not in ("pieces", "n_pieces")}
        expected = expectation(int(row["train_count"]), frequent_min)
        out.append({**head, "expected": expected, "pieces": row["pieces"], "n_pieces": row["n_pieces"]})
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx and vy else math.nan


def config_rows(measured: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per (tokenizer, language): its usable bands (enough held-out word types), the trend of
    pieces over them and the shares kept whole at both ends, beside the measured rates."""
    min_words = SPEC.threshold("min_words_per_band")
    usable_of: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in measured["bands"]:  # in band order per configuration
        if row["words"] >= min_words:
            usable_of.setdefault((row["tokenizer"], row["language"]), []).append(row)
    out = []
    for c in measured["configs"]:
        usable = usable_of.get((c["tokenizer"], c["language"]), [])
        head = {k: c[k] for k in ("tokenizer", "scope", "algorithm", "vocab_size", "language")}
        out.append(
            {
                **head,
                "trained_word_types": c["trained_word_types"],
                "vocab_covers_word_types": c["vocab_covers_word_types"],
                "usable_bands": len(usable),
                "top_band": usable[-1]["band"] if usable else None,
                "rarest_band": usable[0]["band"] if usable else None,
                "spearman_band_vs_pieces": spearman(
                    [r["band_index"] for r in usable], [r["pieces_per_word"] for r in usable]
                )
                if len(usable) > 1
                else math.nan,
                "share_whole_top_band": usable[-1]["share_whole"] if usable else math.nan,
                "share_whole_rarest_band": usable[0]["share_whole"] if usable else math.nan,
                **{k: c[k] for k in ("chars_per_token", "subword_unk_rate", "word_level_oov_rate")},
            }
        )
    return out


def judge_configs(rows: list[dict[str, Any]], settings: Mapping[str, Any]) -> pd.DataFrame:
    """The configuration rows with whether each shows the pattern (falling, frequent whole, rare split)."""
    configs = pd.DataFrame(rows)
    configs["monotone"] = configs["spearman_band_vs_pieces"] <= SPEC.threshold("monotone_max_rho")
    configs["frequent_whole"] = configs["share_whole_top_band"] >= settings["whole_share_frequent"]
    configs["rare_split"] = configs["share_whole_rarest_band"] <= settings["whole_share_rare"]
    configs["holds"] = configs["monotone"] & configs["frequent_whole"] & configs["rare_split"]
    return configs


def _mean(frame: pd.DataFrame, column: str) -> float:
    return float(frame[column].mean()) if len(frame) else math.nan


def _mode(frame: pd.DataFrame, column: str) -> str | None:
    return str(frame[column].mode().iloc[0]) if len(frame) and frame[column].notna().any() else None


def language_summary(g_all: pd.DataFrame) -> dict[str, Any]:
    """One language's configurations: the shares that show the pattern among those judged (a
    vocabulary as large as the word types it was trained on is vacuous) and the mean rates."""
    g = g_all[~g_all["vocab_covers_word_types"]]
    own, joint = g[g["scope"] != "joint"], g[g["scope"] == "joint"]
    return {
        "configs": len(g_all),
        "vacuous_configs": int(g_all["vocab_covers_word_types"].sum()),
        "judged_configs": len(g),
        **{f"share_{k}": _mean(g, k) for k in ("monotone", "frequent_whole", "rare_split", "holds")},
        "min_usable_bands": int(g["usable_bands"].min()) if len(g) else 0,
        "top_band": _mode(g, "top_band"),
        "rarest_band": _mode(g, "rarest_band"),
        "mean_share_whole_top_band": _mean(g, "share_whole_top_band"),
        # a joint tokenizer shares its vocabulary with the other languages: the split by scope
        "mean_share_whole_top_band_own": _mean(own, "share_whole_top_band"),
        "mean_share_whole_top_band_joint": _mean(joint, "share_whole_top_band"),
        "mean_share_whole_rarest_band": _mean(g, "share_whole_rarest_band"),
        "mean_subword_unk_rate": float(g_all["subword_unk_rate"].mean()),
        "mean_word_level_oov_rate": float(g_all["word_level_oov_rate"].mean()),
    }


def notes_examples(examples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The notes' own example words over every tokenizer: how many kept each whole."""
    out: dict[str, dict[str, Any]] = {}
    for w in NOTES_WORDS:
        rows = [r for r in examples if r["word"] == w]
        if not rows:
            continue
        whole = sum(r["n_pieces"] == 1 for r in rows)
        expected = str(rows[0]["expected"])
        out[w] = {
            "language": str(rows[0]["language"]),
            "train_count": int(rows[0]["train_count"]),
            "band": str(rows[0]["band"]),
            "expected": expected,
            "tokenizers": len(rows),
            "kept_whole": whole,
            "as_expected": (whole if expected == "whole" else len(rows) - whole)
            if expected != NO_FIRM_PREDICTION
            else None,
        }
    return out


def summarize(measured: Measured) -> dict[str, Any]:
    s = measured.settings
    frequent_min = int(s["example_frequent_min"])
    configs = judge_configs(config_rows(measured.whole), s)
    records = configs.to_dict(orient="records")
    per_language = {str(lang): language_summary(g) for lang, g in configs.groupby("language")}
    for lang, v in per_language.items():
        v["failing_tokenizers"] = failing_tokenizers(records, lang)
    return {
        "per_language": per_language,
        "notes_examples": notes_examples(with_expectations(measured.whole["examples"], frequent_min)),
        "thresholds": {
            **{k: SPEC.threshold(k) for k in ("monotone_max_rho", "holds_share")},
            "whole_share_frequent": s["whole_share_frequent"],
            "whole_share_rare": s["whole_share_rare"],
            **{k: SPEC.threshold(k) for k in ("min_words_per_band", "min_usable_bands")},
            "example_frequent_min": frequent_min,
        },
        "configs": configs.to_dict(orient="records"),
    }


def _examples_text(metrics: Mapping[str, Any]) -> list[Msg]:
    """The notes' example words judged by their own training count."""
    parts = []
    for w, e in metrics.get("notes_examples", {}).items():
        n, whole = e["tokenizers"], e["kept_whole"]
        if e["train_count"] == 0:
            parts.append(Msg("C02.reason.example.never_seen", word=w, whole=whole, n=n))
        else:
            expected = Msg(f"C02.reason.expected.{EXPECTATION_KEYS[e['expected']]}")
            parts.append(
                Msg(
                    "C02.reason.example.seen",
                    word=w,
                    count=e["train_count"],
                    expected=expected,
                    whole=whole,
                    n=n,
                )
            )
    return parts


def _language_detail(per_lang: Mapping[str, Mapping[str, Any]]) -> list[Msg]:
    detail = [
        Msg(
            "C02.reason.language",
            language=language_name(lang),
            monotone=v["share_monotone"],
            top_band=v["top_band"],
            top_whole=v["mean_share_whole_top_band"],
            rarest_band=v.get("rarest_band", "?"),
            rarest_whole=v["mean_share_whole_rarest_band"],
        )
        for lang, v in sorted(per_lang.items())
    ]
    left_out = sum(int(v.get("vacuous_configs", 0)) for v in per_lang.values())
    if left_out:
        detail.append(Msg("C02.reason.left_out", n=left_out))
    return detail


def _scopes_text(per_lang: Mapping[str, Mapping[str, Any]], holds: Mapping[str, bool]) -> Msg:
    """Where the pattern fails: the top band's whole share with own-language and joint tokenizers."""
    scope_parts = [
        Msg(
            "C02.reason.scope",
            language=language_name(lang),
            own=v["mean_share_whole_top_band_own"],
            joint=v["mean_share_whole_top_band_joint"],
            failing=v.get("failing_tokenizers") or ["-"],
        )
        for lang, v in sorted(per_lang.items())
        if not holds[lang]
        and v.get("mean_share_whole_top_band_own") is not None
        and v.get("mean_share_whole_top_band_joint") is not None
    ]
    return Msg("C02.reason.by_tokenizer", scopes=scope_parts) if scope_parts else empty()


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    part = SPEC.part("frequency_decides_split")
    assert part.primary is not None
    per_lang: Mapping[str, Mapping[str, Any]] = metrics["per_language"]
    ex_text = _examples_text(metrics)
    examples = Msg("C02.reason.examples", examples=ex_text) if ex_text else empty()
    judged = {
        lang: v for lang, v in per_lang.items() if int(v.get("judged_configs", v.get("configs", 0))) > 0
    }
    vacuous = sorted(set(per_lang) - set(judged))
    out = VerdictOf(Kind.EXPERIMENT, primary=Msg(part.primary.text))
    out.limited.extend(
        Msg("C02.limited.vocabulary_covers_words", language=language_name(lang)) for lang in vacuous
    )
    if not judged:
        return out.branch(Label.INCONCLUSIVE, "C02.verdict.vacuous", examples=examples)
    per_lang = judged
    min_bands = SPEC.threshold("min_usable_bands")
    if min(v["min_usable_bands"] for v in per_lang.values()) < min_bands:
        return out.branch(
            Label.INCONCLUSIVE,
            "C02.verdict.few_bands",
            min_words=SPEC.threshold("min_words_per_band"),
            min_bands=min_bands,
            examples=examples,
        )
    holds_share = SPEC.threshold("holds_share")
    out.parts.extend(build_parts(CLAIM_ID, per_lang, holds_share))
    holds = {lang: v["share_holds"] >= holds_share for lang, v in per_lang.items()}
    monotone = {lang: v["share_monotone"] >= holds_share for lang, v in per_lang.items()}
    detail = _language_detail(per_lang)
    if all(holds.values()):
        return out.branch(Label.SUPPORTED, "C02.verdict.holds", detail=detail, examples=examples)
    scopes = _scopes_text(per_lang, holds)
    if any(monotone.values()):
        return out.branch(
            Label.PARTLY, "C02.verdict.trend_only", detail=detail, scopes=scopes, examples=examples
        )
    return out.branch(Label.NOT_SUPPORTED, "C02.verdict.no_trend", detail=detail, examples=examples)
