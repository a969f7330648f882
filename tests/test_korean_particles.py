"""Korean particles chosen by the sound of the word before them (whylab.messages.korean), and no
Korean template with a fixed particle right after a parameter."""

from __future__ import annotations

import re

import pytest

from whylab.messages import Msg, catalogue
from whylab.messages.korean import Final, final, particle, resolve

# The review of the Korean page (December 2026) and their neighbours.
CASES = [
    ("512", "을(를)", "512를"),  # 오백십이
    ("513", "을(를)", "513을"),  # 오백십삼
    ("3.26", "(으)로", "3.26으로"),  # 삼 점 이육
    ("0.0263", "(으)로", "0.0263으로"),
    ("0.198", "(으)로", "0.198로"),  # 팔: ㄹ takes 로
    ("1", "은(는)", "1은"),  # 일
    ("1", "(으)로", "1로"),
    ("2", "은(는)", "2는"),
    ("8", "이(가)", "8이"),
    ("10", "을(를)", "10을"),  # 십
    ("100", "(이)다", "100이다"),  # 백
    ("20000", "(으)로", "20000으로"),  # 이만
    ("1,024", "을(를)", "1,024를"),  # 천이십사
    ("0", "이(가)", "0이"),  # 영
    ("1.00", "이(가)", "1.00이"),  # 일 점 영영
    ("50%", "이(가)", "50%가"),  # 퍼센트
    ("3.15×", "(으)로", "3.15×로"),  # 배
    ("12 GiB", "을(를)", "12 GiB를"),  # 기비바이트
    ("4 ms", "(이)다", "4 ms다"),  # 밀리초
    ("5 min", "(이)다", "5 min이다"),  # 분
    ("torchao_int4", "은(는)", "torchao_int4는"),  # 포
    ("int4", "을(를)", "int4를"),
    ("GPT-4", "은(는)", "GPT-4는"),
    ("GPT-3", "은(는)", "GPT-3는"),  # 쓰리
    ("fp16", "(으)로", "fp16으로"),  # 식스틴
    ("C05", "은(는)", "C05는"),
    ("C10", "은(는)", "C10은"),
    ("BPE", "이(가)", "BPE가"),  # 이
    ("GPT", "이(가)", "GPT가"),  # 티
    ("L", "을(를)", "L을"),  # 엘
    ("L", "(으)로", "L로"),
    ("M", "이(가)", "M이"),  # 엠
    ("N", "과(와)", "N과"),  # 엔
    ("R", "(으)로", "R로"),  # 알
    ("7B", "은(는)", "7B는"),  # 비
    ("211M", "을(를)", "211M을"),
    ("Normalization", "을(를)", "Normalization을"),  # 노멀라이제이션
    ("Normalization", "이(가)", "Normalization이"),
    ("Normarlization", "(으)로", "Normarlization으로"),
    ("Transformer", "은(는)", "Transformer는"),  # 트랜스포머
    ("LayerNorm", "과(와)", "LayerNorm과"),  # 놈
    ("RMSNorm", "은(는)", "RMSNorm은"),
    ("Pre-LN", "이(가)", "Pre-LN이"),  # 엘엔
    ("AdamW", "(으)로", "AdamW로"),  # 더블유
    ("Adam", "(으)로", "Adam으로"),  # 아담
    ("model", "(으)로", "model로"),  # 모델
    ("dropout", "을(를)", "dropout을"),  # 드롭아웃
    ("d_k", "은(는)", "d_k는"),  # 케이
    ("html", "(으)로", "html로"),  # 엘
    ("학습되어야 함", "을(를)", "학습되어야 함을"),
    ("학습되어함", "(으)로", "학습되어함으로"),
    ("서울", "(으)로", "서울로"),
    ("학교", "(이)다", "학교다"),
    ("학교", "(이)었다", "학교였다"),
    ("책", "(이)었다", "책이었다"),
    ("`x`", "이(가)", "`x`가"),  # code marks looked through
    ("“GPT”", "을(를)", "“GPT”를"),
    ("(0.198)", "이(가)", "(0.198)이"),  # 팔
    ("Normalization(원문 그대로)", "이(가)", "Normalization(원문 그대로)이"),  # the word outside
    ("softmax(x)", "이(가)", "softmax(x)가"),  # 엑스: a call reads its argument
    ("α", "(으)로", "α로"),  # 알파
    ("ε", "을(를)", "ε을"),  # 엡실론
]


@pytest.mark.parametrize(("word", "marker", "expected"), CASES)
def test_the_particle_follows_the_sound_of_the_word(word: str, marker: str, expected: str) -> None:
    assert resolve(word + marker) == expected


def test_a_pair_may_be_written_either_way_round() -> None:
    assert particle("512", "를(을)") == particle("512", "을(를)") == "를"
    assert particle("GPT", "가(이)") == "가" and particle("Adam", "와(과)") == "과"


def test_an_unreadable_word_keeps_the_marker() -> None:
    assert final("") is None and final("…") is None
    assert particle("", "을(를)") == "을(를)" and particle("...", "(으)로") == "(으)로"


def test_hangul_batchim() -> None:
    assert final("가") is Final.VOWEL and final("각") is Final.CONSONANT and final("갈") is Final.RIEUL


def test_resolve_reads_the_text_before_each_marker() -> None:
    assert resolve("폭 512을(를) 4개로, 값은 3.26(으)로") == "폭 512를 4개로, 값은 3.26으로"
    assert resolve("Pre-LN은(는) 어디서 이기는가") == "Pre-LN은 어디서 이기는가"


def test_a_nested_message_and_a_formatted_number_get_the_right_particle() -> None:
    assert Msg("report.claim.sic", meant="Normalization", written="Normarlization").in_("ko") == (
        "노트에는 ‘Normalization’이 ‘Normarlization’으로 적혀 있다(원문대로 인용한다)."
    )
    outer = Msg("plotting.overlap", a=Msg("plotting.panel.number", n=1), b="GPT")
    assert outer.in_("ko") == "1번째 패널과 GPT가 겹친다"


def test_a_parameter_is_never_taken_for_a_marker() -> None:
    assert Msg("plotting.overlap", a="을(를)", b="x").in_("ko").startswith("을(를)")


def test_english_texts_have_no_markers() -> None:
    from whylab.messages.korean import MARKERS

    found = {key: text for key, text in catalogue("en").items() if any(m in text for m in MARKERS)}
    assert not found, found


# a particle whose form depends on the sound before it, written fixed right after a placeholder
_FIXED = re.compile(
    r"\}(?:(?:은|는|이|가|을|를|과|와)(?![가-힣(])"
    r"|(?:으로|로)(?=서|써|부터|는|의|도|만|(?![가-힣]))"
    r"|(?:이|)(?:다|고|며|라|나|었다|였다)(?![가-힣]))"
)


def test_no_korean_template_has_a_fixed_particle_after_a_placeholder() -> None:
    fixed = {key: _FIXED.findall(text) for key, text in catalogue("ko").items() if _FIXED.search(text)}
    assert not fixed, fixed
