"""Same text, same tokenizer: every algorithm trains to byte-identical files in separate processes.

Hugging Face's WordPiece and Unigram trainers iterate hash maps whose order changes with each
process (huggingface/tokenizers issue 1794); whylab.tokenization removes that dependence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from whylab import tokenization

REPO = Path(__file__).resolve().parents[1]

TRAIN_AND_HASH = """
import hashlib, json, sys
from pathlib import Path
from whylab import tokenization
files = [Path(p) for p in sys.argv[2:]]
tok = tokenization.train(sys.argv[1], 800, files)
print(hashlib.sha256(tok.to_str().encode()).hexdigest())
"""


def _hash_in_fresh_process(algorithm: str, files: list[Path], hash_seed: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONHASHSEED": hash_seed}
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_HASH, algorithm, *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return proc.stdout.strip()


@pytest.mark.parametrize("algorithm", tokenization.ALGORITHMS)
def test_two_processes_train_byte_identical_tokenizers(tiny_corpus: Path, algorithm: str) -> None:
    files = [tiny_corpus / "en" / "train.txt", tiny_corpus / "ko" / "train.txt"]
    first = _hash_in_fresh_process(algorithm, files, "1")
    second = _hash_in_fresh_process(algorithm, files, "2")
    assert len(first) == 64
    assert first == second


# every pair count is distinct at every merge, so Hugging Face's own trainer has no tie to break
# and is deterministic here: whylab's WordPiece must then give exactly its vocabulary
NO_TIES = {"ab": 2, "cd": 3, "ef": 4, "gh": 5, "ijk": 6, "ljk": 7, "pqr": 10, "sqr": 1}


def test_wordpiece_is_hugging_face_s_trainer_when_no_tie_decides(tmp_path: Path) -> None:
    text = tmp_path / "words.txt"
    text.write_text("".join(f"{w}\n" * n for w, n in NO_TIES.items()), encoding="utf-8")
    size = 4 + 16 + 8 + 6  # specials, characters, ##-continued characters, six merges
    ours = tokenization.train("wordpiece", size, [text])
    theirs, trainer = tokenization.new_tokenizer("wordpiece", size)
    theirs.train_from_iterator(tokenization._lines([text]), trainer=trainer)
    assert set(ours.get_vocab()) == set(theirs.get_vocab())
    merged = {t for t in ours.get_vocab() if len(t.removeprefix("##")) > 1 and not t.startswith("<")}
    assert merged == {"##jk", "##qr", "pqr", "ljk", "ijk", "gh"}
    assert json.loads(ours.to_str())["model"]["continuing_subword_prefix"] == "##"
    assert ours.encode("pqr sqr ab gh").tokens == ["pqr", "s", "##qr", "a", "##b", "gh"]
    assert ours.encode("pqr sqr ab gh").tokens == theirs.encode("pqr sqr ab gh").tokens


def test_wordpiece_numbers_continued_characters_in_character_order(tiny_corpus: Path) -> None:
    tok = tokenization.train("wordpiece", 800, [tiny_corpus / "en" / "train.txt"])
    vocab = tok.get_vocab()
    continued = sorted((t for t in vocab if t.startswith("##") and len(t) == 3), key=vocab.__getitem__)
    assert continued == sorted(continued)
    assert min(vocab[t] for t in continued) > max(vocab[t] for t in vocab if len(t) == 1)


def test_canonical_unigram_keeps_the_pieces_and_their_scores(tiny_corpus: Path) -> None:
    files = [tiny_corpus / "en" / "train.txt"]
    raw, trainer = tokenization.new_tokenizer("unigram", 600)
    raw.train_from_iterator(tokenization._lines(files), trainer=trainer)
    canon = tokenization.canonical_unigram(raw)
    before = dict(map(tuple, json.loads(raw.to_str())["model"]["vocab"]))
    after_list = json.loads(canon.to_str())["model"]["vocab"]
    after = dict(map(tuple, after_list))
    assert before.keys() == after.keys()
    assert [p for p, _ in after_list[:4]] == tokenization.SPECIAL_TOKENS
    low = min(before.values())
    moved = {p for p in before if abs(before[p] - after[p]) > 1e-4}
    # only characters the trainer gave the lowest score plus hash-ordered 1e-4 steps
    assert all(len(p) == 1 and before[p] - low < 0.05 and after[p] == round(low, 4) for p in moved)
    scores = [s for _, s in after_list[4:]]
    assert scores == sorted(scores, reverse=True)
    text = "The interpreter reads the file. Built-in functions are always available."
    assert len(canon.encode(text).ids) == len(raw.encode(text).ids)
