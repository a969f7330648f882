"""C02 — subword tokenizers keep frequent words whole and split rare ones.

Words are counted in the training split (English: whitespace-separated words
with surrounding punctuation stripped; Korean: 어절, the space-separated units,
which carry their particles: 우리는, 가족의). Each word type is encoded alone, in
the form it takes inside running text, and its pieces are counted. Words are
grouped into frequency bands; the claim predicts fewer pieces and a higher share
of whole words in higher bands. A word-level vocabulary of the same size is the
baseline for unknown-token rates.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from whylab import plotting
from whylab.concepts import ConceptContext
from whylab.concepts.tokenizer_suite import TrainedTokenizer, read_split, trained_tokenizers
from whylab.messages import Msg, empty
from whylab.results import Evidence, LiteratureCheck, Table
from whylab.verdict import Kind, Label, Verdict, VerdictOf

CLAIM_ID = "C02"
PUNCT = "\"'()[]{}<>.,;:!?`“”‘’«»·…-—=*#/\\|"
MONOTONE_MAX_RHO = -0.8  # Spearman correlation of band rank vs pieces per word counted as "decreasing"
HOLDS_SHARE = 0.75  # share of tokenizer configurations that must show the pattern
MIN_WORDS_PER_BAND = 5  # a band with fewer word types is left out of the comparison
MIN_USABLE_BANDS = 3


def words(text: str) -> list[str]:
    out = []
    for raw in text.split():
        w = raw.strip(PUNCT)
        if w:
            out.append(w)
    return out


def band_labels(edges: Sequence[int]) -> list[str]:
    labels = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        labels.append(f"{lo}+" if hi is None else (f"{lo}" if hi == lo + 1 else f"{lo}–{hi - 1}"))
    return labels


def band_of(count: int, edges: Sequence[int]) -> int:
    band = -1
    for i, lo in enumerate(edges):
        if count >= lo:
            band = i
    return band


def pieces(tt: TrainedTokenizer, word: str) -> list[int]:
    """The token ids of ``word`` as it appears inside running text (after a space)."""
    text = " " + word if tt.algorithm == "bpe" else word
    return tt.tokenizer.encode(text, add_special_tokens=False).ids


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


NOTES_WORDS = ("우리", "가족")  # the notes' own examples of frequent words


def expectation(count: int, frequent_min: int) -> str:
    """What the claim predicts for a word seen ``count`` times in the training split."""
    if count >= frequent_min:
        return "whole"
    if count <= 1:
        return "split"
    return "no firm prediction"


def run(ctx: ConceptContext) -> Evidence:
    s = ctx.settings
    languages: list[str] = s["languages"]
    edges: list[int] = sorted(s["frequency_bands"])
    labels = band_labels(edges)
    frequent_min = int(s["example_frequent_min"])
    corpus = ctx.inputs["corpus"]
    train_counts = {
        lang: Counter(w for line in read_split(corpus, lang, "train") for w in words(line))
        for lang in languages
    }
    # the held-out word types: every word of the validation split, banded by its training count
    valid_counter = {
        lang: Counter(w for line in read_split(corpus, lang, "valid") for w in words(line))
        for lang in languages
    }
    valid_text = {lang: read_split(corpus, lang, "valid") for lang in languages}

    band_rows: list[dict[str, Any]] = []
    config_rows: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    for tt in trained_tokenizers(s, ctx.inputs["tokenizers"]):
        unk = tt.tokenizer.token_to_id("<unk>")
        # word types in the text this tokenizer was trained on (every language for a joint one)
        trained_types = len(set().union(*(train_counts[lang] for lang in tt.languages(languages))))
        vacuous = tt.vocab_size >= trained_types
        for lang in tt.languages(languages):
            counts = train_counts[lang]
            per_band: dict[int, list[int]] = {i: [] for i in range(len(edges))}
            for word in valid_counter[lang]:
                band = band_of(counts.get(word, 0), edges)
                if band >= 0:
                    per_band[band].append(len(pieces(tt, word)))
            usable: list[dict[str, Any]] = []  # bands with enough words to say anything
            for i, n_pieces in per_band.items():
                row = {
                    "tokenizer": tt.name,
                    "scope": tt.scope,
                    "algorithm": tt.algorithm,
                    "vocab_size": tt.vocab_size,
                    "language": lang,
                    "band": labels[i],
                    "band_index": i,
                    "words": len(n_pieces),
                    "pieces_per_word": sum(n_pieces) / len(n_pieces) if n_pieces else math.nan,
                    "share_whole": sum(n == 1 for n in n_pieces) / len(n_pieces) if n_pieces else math.nan,
                }
                band_rows.append(row)
                if len(n_pieces) >= MIN_WORDS_PER_BAND:
                    usable.append(row)
            enc = tt.tokenizer.encode_batch(valid_text[lang], add_special_tokens=False)
            n_tokens = sum(len(e.ids) for e in enc)
            chars = sum(len(t) for t in valid_text[lang])
            word_vocab = {w for w, _ in counts.most_common(tt.vocab_size)}
            vw = list(valid_counter[lang].elements())
            config_rows.append(
                {
                    "tokenizer": tt.name,
                    "scope": tt.scope,
                    "algorithm": tt.algorithm,
                    "vocab_size": tt.vocab_size,
                    "language": lang,
                    "trained_word_types": trained_types,
                    "vocab_covers_word_types": vacuous,
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
                    "chars_per_token": chars / n_tokens,
                    "subword_unk_rate": (sum(i == unk for e in enc for i in e.ids) / n_tokens)
                    if unk is not None
                    else 0.0,
                    "word_level_oov_rate": sum(w not in word_vocab for w in vw) / len(vw),
                }
            )
            for word in s["example_words"].get(lang, []):
                ids = pieces(tt, word)
                count = counts.get(word, 0)
                examples.append(
                    {
                        "tokenizer": tt.name,
                        "language": lang,
                        "word": word,
                        "train_count": count,
                        "band": labels[band_of(count, edges)]
                        if band_of(count, edges) >= 0
                        else "below the bands",
                        "expected": expectation(count, frequent_min),
                        "pieces": " | ".join(tt.display_pieces(ids)),
                        "n_pieces": len(ids),
                    }
                )

    configs = pd.DataFrame(config_rows)
    configs["monotone"] = configs["spearman_band_vs_pieces"] <= MONOTONE_MAX_RHO
    configs["frequent_whole"] = configs["share_whole_top_band"] >= s["whole_share_frequent"]
    configs["rare_split"] = configs["share_whole_rarest_band"] <= s["whole_share_rare"]
    configs["holds"] = configs["monotone"] & configs["frequent_whole"] & configs["rare_split"]
    per_language: dict[str, dict[str, Any]] = {}
    for group, g_all in configs.groupby("language"):
        g = g_all[~g_all["vocab_covers_word_types"]]  # a vocabulary as large as the word types is vacuous
        per_language[str(group)] = {
            "configs": len(g_all),
            "vacuous_configs": int(g_all["vocab_covers_word_types"].sum()),
            "judged_configs": len(g),
            "share_monotone": float(g["monotone"].mean()) if len(g) else math.nan,
            "share_frequent_whole": float(g["frequent_whole"].mean()) if len(g) else math.nan,
            "share_rare_split": float(g["rare_split"].mean()) if len(g) else math.nan,
            "share_holds": float(g["holds"].mean()) if len(g) else math.nan,
            "min_usable_bands": int(g["usable_bands"].min()) if len(g) else 0,
            "top_band": str(g["top_band"].mode().iloc[0]) if len(g) and g["top_band"].notna().any() else None,
            "rarest_band": str(g["rarest_band"].mode().iloc[0])
            if len(g) and g["rarest_band"].notna().any()
            else None,
            "mean_share_whole_top_band": float(g["share_whole_top_band"].mean()) if len(g) else math.nan,
            # a joint tokenizer shares its vocabulary with the other languages: the split by scope
            **{
                f"mean_share_whole_top_band_{scope}": float(part["share_whole_top_band"].mean())
                if len(part)
                else math.nan
                for scope, part in (("own", g[g["scope"] != "joint"]), ("joint", g[g["scope"] == "joint"]))
            },
            "mean_share_whole_rarest_band": float(g["share_whole_rarest_band"].mean())
            if len(g)
            else math.nan,
            "mean_subword_unk_rate": float(g_all["subword_unk_rate"].mean()),
            "mean_word_level_oov_rate": float(g_all["word_level_oov_rate"].mean()),
        }
    ex = pd.DataFrame(examples)
    notes_examples: dict[str, dict[str, Any]] = {}
    for w in NOTES_WORDS:
        rows = ex[ex["word"] == w] if not ex.empty else ex
        if rows.empty:
            continue
        whole = int((rows["n_pieces"] == 1).sum())
        expected = str(rows["expected"].iloc[0])
        notes_examples[w] = {
            "language": str(rows["language"].iloc[0]),
            "train_count": int(rows["train_count"].iloc[0]),
            "band": str(rows["band"].iloc[0]),
            "expected": expected,
            "tokenizers": len(rows),
            "kept_whole": whole,
            "as_expected": (whole if expected == "whole" else len(rows) - whole)
            if expected != "no firm prediction"
            else None,
        }
    metrics = {
        "per_language": per_language,
        "notes_examples": notes_examples,
        "thresholds": {
            "monotone_max_rho": MONOTONE_MAX_RHO,
            "holds_share": HOLDS_SHARE,
            "whole_share_frequent": s["whole_share_frequent"],
            "whole_share_rare": s["whole_share_rare"],
            "min_words_per_band": MIN_WORDS_PER_BAND,
            "min_usable_bands": MIN_USABLE_BANDS,
            "example_frequent_min": frequent_min,
        },
        "configs": configs.to_dict(orient="records"),
    }

    bands = pd.DataFrame(band_rows)
    own = bands[(bands["scope"] == bands["language"]) | (bands["scope"] == "joint")].copy()
    own["tokenizer scope"] = own["scope"].where(own["scope"] == "joint", "own language")
    figures = []
    for value, ylabel, name, title, caption in (
        (
            "pieces_per_word",
            "pieces per word (tokens)",
            "pieces_per_band",
            Msg("C02.figure.pieces_per_band.title"),
            Msg("C02.figure.pieces_per_band.caption"),
        ),
        (
            "share_whole",
            "share kept whole (fraction)",
            "whole_share_per_band",
            Msg("C02.figure.whole_share_per_band.title"),
            Msg("C02.figure.whole_share_per_band.caption"),
        ),
    ):
        grid = sns.relplot(
            own,
            x="band_index",
            y=value,
            hue="algorithm",
            style="vocab_size",
            col="language",
            kind="line",
            marker="o",
            height=3.6,
            aspect=1.2,
        )
        grid.set_axis_labels("word frequency band (count in training split)", ylabel)
        for ax in grid.axes.flat:
            ax.set_xticks(range(len(labels)), labels)
        grid.figure.subplots_adjust(top=0.85)
        figures.append(plotting.save(grid.figure, ctx.outdir, name, title, caption))

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), layout="constrained")
    sns.lineplot(
        configs,
        x="vocab_size",
        y="chars_per_token",
        hue="algorithm",
        style="language",
        marker="o",
        ax=axes[0],
    )
    axes[0].set_xlabel("vocabulary size (tokens)")
    axes[0].set_ylabel("characters per token (chars)")
    # the curves fill the panel (a larger vocabulary lifts every one), so the legend goes below it
    sns.move_legend(axes[0], "upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False, fontsize=8)
    unk = configs.melt(
        id_vars=["language", "vocab_size"],
        value_vars=["subword_unk_rate", "word_level_oov_rate"],
        var_name="vocabulary",
        value_name="rate",
    )
    sns.barplot(unk, x="language", y="rate", hue="vocabulary", ax=axes[1])
    axes[1].set_xlabel("language")
    axes[1].set_ylabel("unknown tokens in validation (fraction)")
    figures.append(plotting.save_figure(fig, ctx.outdir, "C02.figure.compression_and_unknowns"))

    agrees = per_language and all(v["share_monotone"] >= HOLDS_SHARE for v in per_language.values())
    ordered = sorted(examples, key=lambda r: (r["language"] != "ko", r["word"] not in NOTES_WORDS))
    return Evidence(
        method=Msg("C02.method", frequent_min=frequent_min),
        metrics=metrics,
        tables=[
            Table.from_records(
                "notes_examples",
                Msg("C02.table.notes_examples.caption"),
                [r for r in ordered if r["word"] in NOTES_WORDS],
            ),
            Table.from_records(
                "examples",
                Msg("C02.table.examples.caption"),
                ordered,
            ),
            Table.from_records(
                "per_language",
                Msg("C02.table.per_language.caption"),
                [{"language": k, **v} for k, v in per_language.items()],
            ),
            Table.from_records("configs", Msg("C02.table.configs.caption"), config_rows),
        ],
        figures=figures,
        literature=[
            LiteratureCheck(
                "Sennrich et al. 2016; Kudo 2018",
                Msg("C02.literature.subword.finding"),
                bool(agrees),
                Msg("C02.literature.subword.note"),
            )
        ],
    )


PRIMARY = "C02.primary"
EXPECTATION_KEYS = {"whole": "whole", "split": "split", "no firm prediction": "no_firm_prediction"}


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


def verdict(metrics: Mapping[str, Any]) -> Verdict:
    per_lang: Mapping[str, Mapping[str, Any]] = metrics["per_language"]
    th = metrics["thresholds"]
    ex_text = _examples_text(metrics)
    examples = Msg("C02.reason.examples", examples=ex_text) if ex_text else empty()
    judged = {
        lang: v for lang, v in per_lang.items() if int(v.get("judged_configs", v.get("configs", 0))) > 0
    }
    vacuous = sorted(set(per_lang) - set(judged))
    out = VerdictOf(Kind.EXPERIMENT, primary=Msg(PRIMARY))
    out.limited.extend(Msg("C02.limited.vocabulary_covers_words", language=lang) for lang in vacuous)
    if not judged:
        return out.branch(Label.INCONCLUSIVE, "C02.verdict.vacuous", examples=examples)
    per_lang = judged
    if min(v["min_usable_bands"] for v in per_lang.values()) < th["min_usable_bands"]:
        return out.branch(
            Label.INCONCLUSIVE,
            "C02.verdict.few_bands",
            min_words=th["min_words_per_band"],
            min_bands=th["min_usable_bands"],
            examples=examples,
        )
    holds = {lang: v["share_holds"] >= th["holds_share"] for lang, v in per_lang.items()}
    monotone = {lang: v["share_monotone"] >= th["holds_share"] for lang, v in per_lang.items()}
    left_out = sum(int(v.get("vacuous_configs", 0)) for v in per_lang.values())
    detail = [
        Msg(
            "C02.reason.language",
            language=lang,
            monotone=v["share_monotone"],
            top_band=v["top_band"],
            top_whole=v["mean_share_whole_top_band"],
            rarest_band=v.get("rarest_band", "?"),
            rarest_whole=v["mean_share_whole_rarest_band"],
        )
        for lang, v in sorted(per_lang.items())
    ]
    if left_out:
        detail.append(Msg("C02.reason.left_out", n=left_out))
    if all(holds.values()):
        return out.branch(Label.SUPPORTED, "C02.verdict.holds", detail=detail, examples=examples)
    scope_parts = [
        Msg(
            "C02.reason.scope",
            language=lang,
            own=v["mean_share_whole_top_band_own"],
            joint=v["mean_share_whole_top_band_joint"],
        )
        for lang, v in sorted(per_lang.items())
        if not holds[lang]
        and v.get("mean_share_whole_top_band_own") is not None
        and v.get("mean_share_whole_top_band_joint") is not None
    ]
    scopes = Msg("C02.reason.by_tokenizer", scopes=scope_parts) if scope_parts else empty()
    if any(monotone.values()):
        return out.branch(
            Label.PARTLY, "C02.verdict.trend_only", detail=detail, scopes=scopes, examples=examples
        )
    return out.branch(Label.NOT_SUPPORTED, "C02.verdict.no_trend", detail=detail, examples=examples)
