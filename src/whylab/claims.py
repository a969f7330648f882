"""The 21 claims of the study notes, in this project's own words.

``topic`` and ``statement``, our restatement, come from the message catalogue
(``claims.<ID>.topic`` / ``.statement`` in ``whylab/messages/<lang>/claims.yaml``).
``quotes`` are the notes' own Korean, verbatim: each is a substring of the notes as
shipped in ``whylab/data/notes.ko.md`` (a test checks it), so the report can mark
them in the notes' text and never quotes with silent edits. ``misspelled`` names a
term the notes spell wrongly, as (written, meant), so the report can say so beside
the quote instead of correcting it. ``literature`` names the published result the experiment is held against, where
one exists; ``section`` groups the claims by topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from whylab.messages import Msg

NOTES_FILE = "data/notes.ko.md"
QUOTE_JOIN = " … "


@dataclass(frozen=True)
class Claim:
    id: str
    quotes: tuple[str, ...]
    literature: str = ""
    misspelled: tuple[tuple[str, str], ...] = ()

    @property
    def topic(self) -> Msg:
        return Msg(f"claims.{self.id}.topic")

    @property
    def statement(self) -> Msg:
        """What the notes say, in this project's words."""
        return Msg(f"claims.{self.id}.statement")

    @property
    def notes_ko(self) -> str:
        """The notes' own words for this claim, the quotes joined by an ellipsis."""
        return QUOTE_JOIN.join(self.quotes)

    @property
    def section(self) -> Msg:
        return next(name for name, ids in SECTIONS if self.id in ids)


def notes_text() -> str:
    """The study notes, verbatim, as shipped with the package."""
    return _notes_text()


@cache
def _notes_text() -> str:
    return files("whylab").joinpath(NOTES_FILE).read_text("utf-8")


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "C01",
        ("토큰화 : 텍스트에 숫자부여.",),
    ),
    Claim(
        "C02",
        (
            "서브위드 토큰화 : 고빈도 단어는 단어 자체로 토큰화(우리, 가족 등) 가끔 나오는 단어는 작은 단어로 토큰화 하는 방식",
        ),
        "Sennrich et al. 2016 (BPE); Schuster & Nakajima 2012 (WordPiece); Kudo 2018 (Unigram)",
        misspelled=(("서브위드", "서브워드"),),
    ),
    Claim(
        "C03",
        ("임베딩 nn.Embedding 클래스 사용, 임베딩 층 자체도 학습이 된다.",),
    ),
    Claim(
        "C04",
        (
            "토큰 자체가 유사성을 찾기 힘들기 때문에 이또한 학습되어함.",
            "ex) 내일 점심에 팀장님이랑 밥 약속이 있어. (내일 점심 <->팀장)의 관계를 토큰 자체 유사성으로는 알 수 없음",
        ),
        "Vaswani et al. 2017",
        misspelled=(("학습되어함", "학습되어야 함"),),
    ),
    Claim(
        "C05",
        (
            "어텐션 스코어를 구할때 분산이 커지면 기울기 소실문제가 있기때문에 임베딩차원의 제곱근으로 나눠준다.",
            "scaled_scores = scores / math.sqrt(d_k)",
        ),
        "Vaswani et al. 2017, section 3.2.1",
    ),
    Claim(
        "C06",
        ('Q,K: "어디를 볼까?" V: "무엇을 가져올까?"',),
    ),
    Claim(
        "C07",
        (
            "NLP에서 Batch-Normarlization 보다 Layer-Normalization이 선호되는 이유 (이미지는 반대)",
            "문장의 길이가 다르기때문에 Batch-Normarlization은 <PAD>토큰과 평균이 구해지는 등, 정규화가 효과 미비",
        ),
        "Shen et al. 2020 (PowerNorm)",
        misspelled=(("Normarlization", "Normalization"),),
    ),
    Claim(
        "C08",
        ("정규화(Layer-Normalization)는 어텐션과 피드포워드 하기 전에 사용하면 효과 좋음(논문 있음)",),
        "Xiong et al. 2020",
    ),
    Claim(
        "C09",
        ("피드 포워드 층은 주로 선형 레이어, 드롭아웃, 정규화, 활성 함수 로 이뤄져있다.",),
        "Vaswani et al. 2017; Shazeer 2020 (GLU variants)",
    ),
    Claim(
        "C10",
        ("인코더 : 멀티헤드 어텐션 , 디코더 : 마스크드 멀티헤드어텐션",),
        "Vaswani et al. 2017",
    ),
    Claim(
        "C11",
        ("디코더 : 크로스 어텐션 있음. 인코더의 결과를 쿼리와 키로 사용.",),
        "Vaswani et al. 2017, section 3.2.3",
    ),
    Claim(
        "C12",
        (
            "BERT, GPT 모델의 8비트 양자화 일반화",
            "20-30% 성능 손실로 모델 크기 75% 감소",
            "추론 속도 2-4배 향상",
        ),
        "Dettmers et al. 2022 (LLM.int8())",
    ),
    Claim(
        "C13",
        (
            "GPT-J, LLaMA 등에서 사용",
            "AWQ(Activation-aware Weight Quantization) 적용",
            "40-50% 성능 손실로 모델 크기 87.5% 감소",
        ),
        "Lin et al. 2024 (AWQ); Frantar et al. 2023 (GPTQ)",
    ),
    Claim(
        "C14",
        ("QLoRA: 4비트 양자화 + LoRA 미세조정",),
        "Dettmers et al. 2023 (QLoRA)",
    ),
    Claim(
        "C15",
        ("GPTQ: 그래디언트 기반 양자화",),
        "Frantar et al. 2023 (GPTQ)",
    ),
    Claim(
        "C16",
        ("SmoothQuant: 활성화 함수 고려 양자화",),
        "Xiao et al. 2023 (SmoothQuant)",
    ),
    Claim(
        "C17",
        ("기본_메모리 = 파라미터_수 * 데이터타입_크기", "INT4 = 0.5"),
    ),
    Claim(
        "C18",
        ("필요_메모리 = 기본_메모리 * (옵티마이저_계수 + 그래디언트_계수 + 활성화_계수)",),
        "Rajbhandari et al. 2020 (ZeRO)",
    ),
    Claim(
        "C19",
        ("그래디언트 체크포인팅: 활성화 메모리 절약",),
        "Chen et al. 2016",
    ),
    Claim(
        "C20",
        ("그래디언트 누적: 작은 배치로 분할",),
    ),
    Claim(
        "C21",
        ("CPU 오프로딩: 일부 레이어를 CPU로 이동",),
        "Ren et al. 2021 (ZeRO-Offload)",
    ),
)

# The claims by topic, in the notes' order (the at-a-glance figure's rows).
SECTIONS: tuple[tuple[Msg, tuple[str, ...]], ...] = (
    (Msg("claims.section.tokens_and_embeddings"), ("C01", "C02", "C03")),
    (Msg("claims.section.attention"), ("C04", "C05", "C06")),
    (Msg("claims.section.normalisation_and_feed_forward"), ("C07", "C08", "C09")),
    (Msg("claims.section.encoder_and_decoder"), ("C10", "C11")),
    (Msg("claims.section.quantization"), ("C12", "C13", "C14", "C15", "C16")),
    (Msg("claims.section.memory"), ("C17", "C18", "C19", "C20", "C21")),
)

BY_ID: dict[str, Claim] = {c.id: c for c in CLAIMS}


def get(claim_id: str) -> Claim:
    try:
        return BY_ID[claim_id]
    except KeyError:
        raise KeyError(f"unknown claim id {claim_id!r}; known: {', '.join(BY_ID)}") from None
