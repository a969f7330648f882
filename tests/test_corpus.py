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
