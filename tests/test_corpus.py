"""Corpus: embedded default, user files/folders/globs/datasets, checks and atomic output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from whylab import corpus
from whylab.config import check_config
from whylab.errors import InputError


def settings(**overrides: object) -> dict:
    return check_config({"corpus": overrides})["corpus"]


def test_default_corpus_is_bilingual_nfc_and_split(tiny_corpus: Path) -> None:
    stats = json.loads((tiny_corpus / "stats.json").read_text(encoding="utf-8"))
    assert set(stats["languages"]) == {"en", "ko"}
    for _lang, s in stats["languages"].items():
        assert s["paragraphs"]["train"] > s["paragraphs"]["valid"] > 0
        assert s["chars"]["train"] + s["chars"]["valid"] <= 40000
    assert stats["languages"]["ko"]["hangul_share"] > 0.9
    assert stats["languages"]["en"]["hangul_share"] == 0.0
    train = (tiny_corpus / "ko" / "train.txt").read_text(encoding="utf-8")
    assert "대한민국" in train or "법률" in train
    import unicodedata

    assert unicodedata.is_normalized("NFC", train)
    valid = set((tiny_corpus / "ko" / "valid.txt").read_text(encoding="utf-8").splitlines())
    assert not valid & set(train.splitlines()), "train and valid must not share paragraphs"


def test_split_is_deterministic_by_seed(tmp_path: Path) -> None:
    s = settings(max_chars_per_language=20000)
    corpus.build(s, tmp_path / "a", Path.cwd())
    corpus.build(s, tmp_path / "b", Path.cwd())
    corpus.build({**s, "split_seed": 7}, tmp_path / "c", Path.cwd())
    a = (tmp_path / "a" / "en" / "valid.txt").read_text(encoding="utf-8")
    assert a == (tmp_path / "b" / "en" / "valid.txt").read_text(encoding="utf-8")
    assert a != (tmp_path / "c" / "en" / "valid.txt").read_text(encoding="utf-8")


def test_nfc_normalisation_of_decomposed_hangul(tmp_path: Path) -> None:
    import unicodedata

    text = unicodedata.normalize(
        "NFD", "우리 가족은 오늘 저녁에 함께 식사를 합니다.\n\n" * 3 + "가족 여행을 떠났습니다 모두 함께.\n"
    )
    (tmp_path / "ko.txt").write_text(text, encoding="utf-8")
    s = settings(
        languages=["ko"], sources=[{"path": str(tmp_path / "ko.txt"), "lang": "auto"}], min_paragraph_chars=5
    )
    corpus.build(s, tmp_path / "out", tmp_path)
    out = (tmp_path / "out" / "ko" / "train.txt").read_text(encoding="utf-8") + (
        tmp_path / "out" / "ko" / "valid.txt"
    ).read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", out)
    assert "가족" in out


def test_folder_glob_and_language_detection(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text(
        "An English paragraph that is long enough.\n\nAnother English one here.\n", encoding="utf-8"
    )
    (docs / "sub" / "b.md").write_text(
        "한국어 문단은 이렇게 충분히 깁니다.\n\n두 번째 한국어 문단도 있습니다.\n", encoding="utf-8"
    )
    for source in ({"path": str(docs)}, {"path": str(docs / "**" / "*.*")}):
        s = settings(sources=[source], min_paragraph_chars=10)
        paras, _ = corpus.gather(s, tmp_path)
        assert {p.lang for p in paras} == {"en", "ko"}


def test_local_dataset_source(tmp_path: Path) -> None:
    import datasets

    rows = {
        "body": ["The first document is here and long enough."] * 2
        + ["Second distinct document, long enough too."],
        "id": [1, 2, 3],
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    s = settings(
        languages=["en"],
        sources=[{"dataset": str(tmp_path / "ds"), "text_field": "body", "lang": "en"}],
        min_paragraph_chars=10,
    )
    paras, dropped = corpus.gather(s, tmp_path)
    assert [p.text for p in paras] == [rows["body"][0], rows["body"][2]]
    assert dropped == {"duplicate": 1}
    with pytest.raises(InputError, match="no text field 'text'"):
        corpus.gather(
            {**s, "sources": [{"dataset": str(tmp_path / "ds"), "lang": "en", "text_field": "text"}]},
            tmp_path,
        )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"   \n\n  ", "is empty"),
        (b"caf\xe9 au lait is a drink with milk", "is not valid UTF-8 (byte 0xe9 at offset 3)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks like a binary file"),
    ],
)
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path: Path, content: bytes, expected: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    out = tmp_path / "out"
    s = settings(sources=[{"builtin": "python-docs", "lang": "en"}, {"path": str(bad), "lang": "ko"}])
    with pytest.raises(InputError) as info:
        corpus.build(s, out, tmp_path)
    assert str(bad) in str(info.value) and expected in str(info.value)
    assert "\n" not in str(info.value)
    assert not out.exists(), "no half-written output"


def test_missing_language_is_an_error(tmp_path: Path) -> None:
    s = settings(sources=[{"builtin": "python-docs", "lang": "en"}])
    with pytest.raises(InputError, match="no text for language 'ko'"):
        corpus.build(s, tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_input_as_one_line_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00\x00binary")
    s = settings(sources=[{"path": str(bad), "lang": "en"}], languages=["en"])
    out = tmp_path / "results" / "corpus" / "stats.json"
    proc = subprocess.run(
        [sys.executable, "-m", "whylab", "corpus", "--settings", json.dumps(s), "--output", f"stats={out}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("whylab: corpus: ") and "binary" in proc.stderr
    assert not (tmp_path / "results" / "corpus").exists() or not any(
        (tmp_path / "results" / "corpus").rglob("*.txt")
    )


def test_language_detection() -> None:
    assert corpus.detect_language("대한민국은 민주공화국이다.") == "ko"
    assert corpus.detect_language("The Republic of Korea is a democratic republic.") == "en"
    assert corpus.hangul_share("123 !!") == 0.0


def _documents(folder: Path, n_files: int, n_paras: int) -> None:
    folder.mkdir()
    for f in range(n_files):
        paras = [f"Document {f} paragraph {p} says something in plain English." for p in range(n_paras)]
        (folder / f"doc{f:02d}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")


def test_a_capped_source_takes_its_start_or_spreads_over_all_documents(tmp_path: Path) -> None:
    _documents(tmp_path / "docs", n_files=8, n_paras=10)
    one = len("Document 0 paragraph 0 says something in plain English.")
    base = {"path": str(tmp_path / "docs"), "lang": "en", "max_chars": 20 * one}

    def kept(**extra: object) -> list[corpus.Paragraph]:
        return corpus.gather(settings(languages=["en"], sources=[{**base, **extra}]), tmp_path)[0]

    first, spread = kept(pick="first"), kept(pick="spread")
    assert [p.text for p in kept()] == [p.text for p in first]  # first is the default
    docs = {name: {p.text.split()[1] for p in ps} for name, ps in (("first", first), ("spread", spread))}
    assert docs["first"] == {"0", "1"}  # the cap keeps the first two documents
    assert len(docs["spread"]) >= 6  # spread samples (nearly) every document
    for ps in (first, spread):
        assert sum(len(p.text) for p in ps) <= base["max_chars"]
        assert len(ps) == 20
    order = [(int(p.text.split()[1]), int(p.text.split()[3])) for p in spread]
    assert order == sorted(order)  # kept in the source's order
    assert [p.text for p in kept(pick="spread")] == [p.text for p in spread]  # seeded
    other = corpus.gather(
        settings(languages=["en"], sources=[{**base, "pick": "spread"}], split_seed=3), tmp_path
    )[0]
    assert {p.text for p in other} != {p.text for p in spread}


def test_a_bad_pick_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pick"):
        settings(sources=[{"builtin": "python-docs", "lang": "en", "max_chars": 100, "pick": "random"}])
    with pytest.raises(InputError, match="first or spread"):
        corpus.pick_order(3, "random", 0)


def test_second_text_config_changes_only_the_english_source(tmp_path: Path) -> None:
    from whylab.config import load_configs

    root = Path(__file__).resolve().parents[1]
    default = load_configs([], root / "config" / "config.yaml")
    second = load_configs([root / "config" / "second_text.yaml"], root / "config" / "config.yaml")
    assert {k: v for k, v in second.items() if k != "corpus"} == {
        k: v for k, v in default.items() if k != "corpus"
    }
    (en,) = [s for s in second["corpus"]["sources"] if s["lang"] == "en"]
    assert en["builtin"] == "python-docstrings" and en["pick"] == "spread"
    ko = [s for s in second["corpus"]["sources"] if s["lang"] == "ko"]
    assert ko == [s for s in default["corpus"]["sources"] if s["lang"] == "ko"]
    paras, _ = corpus.gather({**second["corpus"], "languages": ["en"], "sources": [en]}, root)
    text_chars = sum(len(p.text) for p in paras)
    assert 0.9 * en["max_chars"] < text_chars <= en["max_chars"]  # the default's English size
    (docs,) = [s for s in default["corpus"]["sources"] if s["lang"] == "en"]
    topics = {
        p.text for p in corpus.gather({**default["corpus"], "languages": ["en"], "sources": [docs]}, root)[0]
    }
    assert len({p.text for p in paras} & topics) < 0.05 * len(paras)  # another text, not the default
