"""Korean particles chosen by the sound of the word before them.

Korean writes 은/는, 이/가, 을/를, 과/와, (으)로 and the copula 이다/다 differently after a final
consonant (batchim) and after a vowel; (으)로 also takes 로 after ㄹ. A template cannot know the
word a parameter brings (``폭 {d_model}을`` is wrong for 512, read 오백십이), so a Korean template
writes the particle the way Korean writes "either form": **a particle marker**

=========  ==================  =========================
marker     after a consonant   after a vowel (and ㄹ)
=========  ==================  =========================
은(는)     은                  는
이(가)     이                  가
을(를)     을                  를
과(와)     과                  와
(으)로     으로                로 (로 after ㄹ too)
(이)       이 (이다, 이며 …)   nothing (다, 며 …); (이)었 → 였
=========  ==================  =========================

(the pair may be written either way round: 는(은), 가(이), 를(을), 와(과)). :func:`resolve` turns
each marker of a formatted text into the right form by the word just before it, so ``폭
{d_model}을(를)`` renders "폭 512를" and ``{after:.3g}(으)로`` "3.26으로". The catalogue marks the
markers of a template before the parameters go in (:func:`protect`), so a parameter's own text is
never read as a marker; a nested message has its markers resolved when it is rendered, and the
outer marker then reads its last word.

How the word before a marker is read (what a Korean reader says aloud):

- Hangul: its last syllable's batchim.
- Closing brackets, quotes and code marks are looked through (``(0.198)`` reads 0.198), except a
  bracketed aside after a word (``Normalization(원문 그대로)`` reads Normalization, as Korean
  attaches the particle to the word outside the brackets).
- A number on its own is read in Sino-Korean: the last digit (영 일 이 삼 사 오 육 칠 팔 구), or the
  place word of an integer's trailing zeros (10 십, 100 백, 1000 천, 10⁴–10⁷ 만, 10⁸ 억, 10¹² 조);
  digits after a decimal point are read one by one (1.00 → 영). ``20–30`` reads its last number.
- A number glued to Latin letters (``int4``, ``GPT-4``, ``fp16``, ``C05``) is read in English, as
  model and format names are said (포, 식스틴, 파이브): 4 포, 3 쓰리, 8 에잇, 16 식스틴, 20 트웬티.
- Symbols and units: % 퍼센트, %p 퍼센트포인트, × 배, ° 도; units after a number as their Korean
  words (GiB 기비바이트, GB 기가바이트, B 바이트, ms 밀리초, s 초, min 분, h 시간, tok 토큰) — the
  byte units end in a vowel either way, as do their letter names.
- Latin letters: an acronym (all capitals, or lowercase with no vowel, e.g. ``html``) by its
  letters' names (GPT 티, BPE 이, L 엘, M 엠, N 엔, R 알, X 엑스); a word by how it is written in
  Hangul (Normalization 노멀라이제이션 → ㄴ, Transformer 트랜스포머 → vowel, Adam 아담 → ㅁ, table
  테이블 → ㄹ, dropout 드롭아웃 → ㅅ): -m, -n, -ng, -me, -ne end in a consonant, -l, -le in ㄹ, a few
  short words in a stop (step 스텝, block 블록, out 아웃), and the rest in a vowel (-r, -er, -s,
  -t, -k, -d, vowels). camelCase and snake_case read their last part (``RMSNorm`` → Norm,
  ``torchao_int4`` → int4). Greek letters by name (α 알파, ε 엡실론).

Where nothing can be read (an empty parameter, "…"), the marker stays as written: 을(를) is how
Korean prints "either" and is never wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from functools import cache


class Final(Enum):
    """How the word before a particle ends, for choosing the particle."""

    VOWEL = "vowel"
    RIEUL = "rieul"  # ㄹ batchim: a consonant, but (으)로 takes 로
    CONSONANT = "consonant"


V, L, C = Final.VOWEL, Final.RIEUL, Final.CONSONANT

# --------------------------------------------------------------------------- reading a word

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_JAMO = {
    **dict.fromkeys("ㄱㄲㄳㄴㄵㄶㄷㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ", C),
    **dict.fromkeys("ㄹㄺㄻㄼㄽㄾㄿㅀ", L),
    **dict.fromkeys("ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ", V),
}
# letter names: 에이 비 씨 디 이 에프 지 에이치 아이 제이 케이 엘 엠 엔 오 피 큐 알 에스 티 유 브이 더블유 엑스 와이 지
_LETTER = {**dict.fromkeys("abcdefghijkopqstuvwxyz", V), "l": L, "r": L, "m": C, "n": C}
_GREEK = {
    **dict.fromkeys("αβγδζηθικλμνξοπρστυφχψωΔΓΘΛΞΠΣΦΨΩ", V),  # 알파 베타 감마 델타 … 오메가
    **dict.fromkeys("εΕ", C),  # 엡실론
}
_SINO_DIGIT = {"0": C, "1": L, "2": V, "3": C, "4": V, "5": V, "6": C, "7": L, "8": L, "9": V}
# 영 일 이 삼 사 오 육 칠 팔 구
_ENGLISH_DIGIT = {"0": V, "1": C, "2": V, "3": V, "4": V, "5": V, "6": V, "7": C, "8": C, "9": C}
# 제로 원 투 쓰리 포 파이브 식스 세븐 에잇 나인
_SYMBOL = {
    "%": V,
    "×": V,
    "°": V,
    "‰": V,
    "+": V,
    "−": V,
    "²": V,
    "³": V,
}  # 퍼센트 배 도 퍼밀 플러스 마이너스 제곱 세제곱
_UNITS = {  # a unit right after a number, as its Korean word
    "kib": V,
    "mib": V,
    "gib": V,
    "tib": V,
    "kb": V,
    "mb": V,
    "gb": V,
    "tb": V,
    "b": V,  # …바이트
    "ms": V,
    "s": V,
    "us": V,
    "µs": V,
    "μs": V,
    "ns": V,  # 초
    "min": C,
    "h": C,
    "tok": C,
    "%p": V,
    "x": V,  # 분 시간 토큰 퍼센트포인트 배
}
_WORDS = {  # short Latin words whose Hangul spelling ends in a stop consonant
    "step": C,
    "steps": V,
    "block": C,
    "out": C,
    "dropout": C,
    "top": C,
    "chip": C,
    "map": C,
    "set": C,
    "hook": C,
    "book": C,
    "lock": C,
    "bit": V,
    "pick": C,
    "tip": C,
    "cat": C,
    "net": C,
}
_CLOSERS = ")]}>\"'”’`»」』》〉】"
_OPENERS = {
    ")": "(",
    "]": "[",
    "}": "{",
    ">": "<",
    "》": "《",
    "〉": "〈",
    "」": "「",
    "』": "『",
    "】": "【",
}
_NUMBER = re.compile(r"(\d[\d,]*)(?:\.(\d+))?(?:[eE][+-]?(\d+))?$")
_LATIN_TAIL = re.compile(r"[A-Za-z]+$")


def final(text: str) -> Final | None:
    """How ``text`` ends when read aloud in Korean, or ``None`` where it cannot be told."""
    text = text.rstrip()
    while text and text[-1] in _CLOSERS:
        closer, text = text[-1], text[:-1]
        opener = _OPENERS.get(closer)
        if opener is not None:
            start = text.rfind(opener)
            if start > 0 and not text[start - 1].isspace() and _is_aside(text[start + 1 :]):
                text = text[:start]  # 단어(설명)은: the particle belongs to the word
        text = text.rstrip()
    if not text:
        return None
    last = text[-1]
    code = ord(last)
    if _HANGUL_FIRST <= code <= _HANGUL_LAST:
        batchim = (code - _HANGUL_FIRST) % 28
        return V if batchim == 0 else L if batchim == 8 else C
    if last in _JAMO:
        return _JAMO[last]
    if last in _GREEK:
        return _GREEK[last]
    if last.isdigit():
        return _number(text)
    if last.isascii() and last.isalpha():
        return _latin(text)
    if text.endswith("%p"):
        return V
    return _SYMBOL.get(last)


def _is_aside(inside: str) -> bool:
    """Whether a bracket's content is a remark about the word before it (Hangul or several words),
    rather than the thing itself (``f(x)``, ``softmax(QKᵀ)``)."""
    return any(_HANGUL_FIRST <= ord(ch) <= _HANGUL_LAST for ch in inside) or " " in inside.strip()


def _number(text: str) -> Final:
    found = _NUMBER.search(text)
    assert found is not None  # text ends in a digit
    integer, fraction, exponent = found.group(1).replace(",", ""), found.group(2), found.group(3)
    before = text[: found.start()]
    glued = bool(before) and (
        before[-1].isalpha() or (before[-1] in "-_." and _LATIN_TAIL.search(before[:-1]))
    )
    if glued and before[-1].isascii():
        if exponent or fraction:
            return _ENGLISH_DIGIT[(exponent or fraction)[-1]]
        return _english_number(integer)
    if exponent:
        return _SINO_DIGIT[exponent[-1]]
    if fraction:
        return _SINO_DIGIT[fraction[-1]]
    return _sino_integer(integer)


def _sino_integer(digits: str) -> Final:
    stripped = digits.lstrip("0")
    if not stripped or len(stripped) < len(digits):  # 0, or 05 read digit by digit
        return _SINO_DIGIT[digits[-1]]
    zeros = len(stripped) - len(stripped.rstrip("0"))
    if zeros == 0:
        return _SINO_DIGIT[stripped[-1]]
    return V if 12 <= zeros < 16 else C  # 십 백 천 만 억 end in a consonant, 조 in a vowel, 경 again not


def _english_number(digits: str) -> Final:
    two = digits[-2:].rjust(2, "0")
    if two[0] == "1":  # ten 텐, eleven 일레븐, twelve 트웰브, …teen 틴
        return V if two == "12" else C
    if two[1] != "0":
        return _ENGLISH_DIGIT[two[1]]
    return V  # twenty … ninety 티, zero 제로, hundred 헌드레드, thousand 사우전드


def _latin(text: str) -> Final:
    word = _LATIN_TAIL.search(text)
    assert word is not None
    letters = word.group()
    before = text[: word.start()]
    if before and before[-1].isdigit() and letters.lower() in _UNITS:  # 12 GiB, 4 ms, 3.1x
        return _UNITS[letters.lower()]
    if before.endswith(" ") and before.rstrip()[-1:].isdigit() and letters.lower() in _UNITS:
        return _UNITS[letters.lower()]
    parts = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", letters)  # camelCase: RMSNorm → RMS, Norm
    part = parts[-1] if parts else letters
    if part.isupper():  # an acronym, by its letters' names
        return _LETTER[part[-1].lower()]
    lower = part.lower()
    if len(lower) == 1 or not re.search(r"[aeiouy]", lower):  # x, d_k, html: by the letters
        return _LETTER[lower[-1]]
    return _english_word(lower)


def _english_word(word: str) -> Final:
    if word in _WORDS:
        return _WORDS[word]
    if word.endswith(("ng", "m", "n", "mn", "me", "ne", "mb")):  # 랭, 놈, 노멀라이제이션, 타임, 라인
        return C
    if word.endswith(("l", "le")):  # 테이블, 모델
        return L
    return V  # -r 레이어, -s 스, -t 트, -k 크, -d 드, vowels


# --------------------------------------------------------------------------- markers

_PAIRS = {  # marker: (after a consonant, after a vowel)
    "은(는)": ("은", "는"),
    "는(은)": ("은", "는"),
    "이(가)": ("이", "가"),
    "가(이)": ("이", "가"),
    "을(를)": ("을", "를"),
    "를(을)": ("을", "를"),
    "과(와)": ("과", "와"),
    "와(과)": ("과", "와"),
    "(으)로": ("으로", "로"),
    "(이)었": ("이었", "였"),
    "(이)": ("이", ""),
}
MARKERS = tuple(_PAIRS)
_MARKER = re.compile("|".join(re.escape(m) for m in sorted(_PAIRS, key=len, reverse=True)))
_SENTINEL = "\ue000"  # a private-use character: where a template's marker stood
_PROTECTED = re.compile(_SENTINEL + r"(\d+)" + _SENTINEL)


def particle(word: str, marker: str) -> str:
    """The form of ``marker`` (e.g. ``"을(를)"``, ``"(으)로"``) that follows ``word``; the marker
    itself where the word's ending cannot be told."""
    after_consonant, after_vowel = _PAIRS[marker]
    end = final(word)
    if end is None:
        return marker
    if marker == "(으)로" and end is L:
        return after_vowel
    return after_vowel if end is V else after_consonant


def resolve(text: str) -> str:
    """``text`` with every particle marker written in it replaced by the form its preceding word
    takes."""
    return _resolve(_MARKER, text, lambda found: found.group())


@cache
def protect(template: str) -> str:
    """A template with its markers hidden from the parameters, for :func:`resolve_protected` after
    formatting; a parameter's text then cannot be taken for a marker."""
    return _MARKER.sub(lambda found: f"{_SENTINEL}{MARKERS.index(found.group())}{_SENTINEL}", template)


def resolve_protected(text: str) -> str:
    """A formatted text made from a :func:`protect` ed template, its markers resolved."""
    return _resolve(_PROTECTED, text, lambda found: MARKERS[int(found.group(1))])


def _resolve(pattern: re.Pattern[str], text: str, marker_of: Callable[[re.Match[str]], str]) -> str:
    out: list[str] = []
    last = 0
    for found in pattern.finditer(text):
        out.append(text[last : found.start()])
        out.append(particle("".join(out), marker_of(found)))
        last = found.end()
    out.append(text[last:])
    return "".join(out)
