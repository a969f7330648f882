"""C04's two synthetic tasks: find the token related to the query, by a directed relation (the
notes' 내일 점심 → 팀장님) or by a symmetric one (the query's fixed partner).

Both draw sequences ``e_1 … e_L q``: L distinct entity tokens, then a query entity q (not among
them); the target at the last position is the answer token "position j" of the token the query
looks for, so the model must find it and read where it sits. Vocabulary: ids [0, n_entities) are
entities, [n_entities, n_entities + context_len) answers. Same shapes, same sampling: only the
relation differs, so the two tasks ask Q = K = X the same question with and without a direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _check(n_entities: int, context_len: int) -> None:
    if n_entities < 4 or n_entities % 2:
        raise ValueError("n_entities must be even and at least 4")
    if not 2 <= context_len <= n_entities - 1:
        raise ValueError("context_len must be in [2, n_entities - 1] (distinct entities, not q)")


def _place(wanted: torch.Tensor, others: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The context: ``wanted`` (B,) then ``others`` (B, L-1) in a random order per row; the
    positions of column 0 (the token to find) and of column 1 (the first of ``others``)."""
    tokens = torch.cat([wanted[:, None], others], dim=1)
    order = torch.rand(tokens.shape, generator=gen).argsort(dim=1)
    return {
        "context": tokens.gather(1, order),
        "position": (order == 0).long().argmax(dim=1),
        "second_position": (order == 1).long().argmax(dim=1),
    }


def _distractors(n: int, batch: int, k: int, taken: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """(B, k) distinct entities per row, none of ``taken``."""
    scores = torch.rand(batch, n, generator=gen)
    rows = torch.arange(batch)
    for t in taken:
        scores[rows, t] = -1.0
    return scores.topk(k, dim=1).indices


@dataclass(frozen=True)
class _EntityTask:
    """What both tasks share: ``n_entities`` entity tokens, then ``context_len`` position tokens
    (the answers), and sequences of the context and the query."""

    n_entities: int
    context_len: int

    @property
    def vocab_size(self) -> int:
        return self.n_entities + self.context_len

    @property
    def seq_len(self) -> int:
        return self.context_len + 1


@dataclass(frozen=True)
class RelationTask(_EntityTask):
    """A fixed random *directed* relation σ (one random cycle through all entities: a → σ(a)) says
    which token each query looks for. The context always holds σ(q), the token to find, and
    σ⁻¹(q), the token that looks for q (a hard negative: same relation, other direction), plus
    L − 2 random distractors. With Q = K = X the scores are symmetric, s(a, b) = s(b, a), so the
    query prefers σ(q) over σ⁻¹(q) only if f(a) = s(a, σ(a)) grows along the cycle, which must
    break somewhere on a closed cycle: Q = K = X can get every query right but one (and a score with
    itself, ‖x‖², that is as large as any); learned W_q, W_k can get every query right.
    """

    forward: torch.Tensor  # (n_entities,) forward[a] = σ(a)
    backward: torch.Tensor  # (n_entities,) backward[σ(a)] = a

    @classmethod
    def make(cls, n_entities: int, context_len: int, seed: int) -> RelationTask:
        _check(n_entities, context_len)
        cycle = torch.randperm(n_entities, generator=torch.Generator().manual_seed(seed))
        forward = torch.empty(n_entities, dtype=torch.long)
        forward[cycle] = cycle.roll(-1)
        backward = torch.empty(n_entities, dtype=torch.long)
        backward[forward] = torch.arange(n_entities)
        return cls(n_entities, context_len, forward, backward)

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """ids (B, L+1), target answer ids (B,), positions of σ(q) and of σ⁻¹(q) (B,)."""
        n, length = self.n_entities, self.context_len
        query = torch.randint(n, (batch,), generator=gen)
        wanted, reverse = self.forward[query], self.backward[query]
        others = torch.cat(
            [reverse[:, None], _distractors(n, batch, length - 2, [query, wanted, reverse], gen)], dim=1
        )
        placed = _place(wanted, others, gen)
        return {
            "ids": torch.cat([placed["context"], query[:, None]], dim=1),
            "target": n + placed["position"],
            "position": placed["position"],
            "reverse_position": placed["second_position"],
        }


@dataclass(frozen=True)
class PairTask(_EntityTask):
    """A fixed random *symmetric* relation: the entities are cut into fixed random pairs, and each
    query looks for its partner π(q) (π(π(a)) = a), among L − 1 random distractors. Q = K = X has a
    natural solution here: make partners' vectors alike, so x_q · x_π(q) is large (a score with
    itself stays as large, but the query's own position carries no answer). This is the task on
    which the notes' "the tokens themselves find similarity hard" can be tested fairly.
    """

    partner: torch.Tensor  # (n_entities,) partner[a] = π(a), partner[partner[a]] = a

    @classmethod
    def make(cls, n_entities: int, context_len: int, seed: int) -> PairTask:
        _check(n_entities, context_len)
        order = torch.randperm(n_entities, generator=torch.Generator().manual_seed(seed))
        partner = torch.empty(n_entities, dtype=torch.long)
        partner[order[0::2]] = order[1::2]
        partner[order[1::2]] = order[0::2]
        return cls(n_entities, context_len, partner)

    def sample(self, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """ids (B, L+1), target answer ids (B,), position of π(q) (B,)."""
        n, length = self.n_entities, self.context_len
        query = torch.randint(n, (batch,), generator=gen)
        wanted = self.partner[query]
        placed = _place(wanted, _distractors(n, batch, length - 1, [query, wanted], gen), gen)
        return {
            "ids": torch.cat([placed["context"], query[:, None]], dim=1),
            "target": n + placed["position"],
            "position": placed["position"],
        }


# measurements' task name (run_task's kind) -> the task
TASKS: dict[str, type[RelationTask] | type[PairTask]] = {"directed": RelationTask, "symmetric": PairTask}
