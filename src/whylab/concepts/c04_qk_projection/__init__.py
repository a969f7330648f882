"""C04: attention needs learned W_q and W_k, because raw token embeddings cannot express relations.

The notes' example: in "내일 점심에 팀장님이랑 밥 약속이 있어." the relation (내일 점심 ↔ 팀장님) is
not a similarity between the tokens themselves. With Q = K = X the score of a token with another
is the plain dot product of their vectors, which is symmetric, and a token's score with itself,
‖x‖², is the largest a vector of that norm can get; so a token tends to look at itself or at tokens
that *look like it*. Learned W_q, W_k make the score an arbitrary bilinear form xᵢᵀ W_q W_kᵀ xⱼ,
which can rank a different, related token first.

Learned embeddings can make related tokens *similar*, so Q = K = X is not helpless: it can find
a token tied to the query by a symmetric relation (make the two vectors alike). What it cannot do
is break the symmetry s(a, b) = s(b, a) for every token. So two synthetic tasks (``tasks.py``) ask
the same question with and without a direction: find the query's fixed partner (symmetric), or the
token σ(q) it looks for on a fixed cycle, with σ⁻¹(q) in the context (directed, like 내일 점심 → 팀장님).

Per seed, the same model with and without the projections:
(a) each task, on a one-layer, one-head, attention-only model (so the attention score alone must
    express the relation): accuracy, the probability of the right answer, the updates needed, and
    where the query's attention goes (the token it looks for, the token that looks for it, itself);
(b) next-token loss on the corpus and the share of attention tokens give themselves.
"""

CLAIM_ID = "C04"

# the two variants: display name (table cells, legend entries, column names) -> key of the
# measurements (experiment.py) and of the metrics (verdict.py)
KEYS = {"learned W_q, W_k": "learned", "Q = K = X": "no_qk"}
# "learned the task": the first update at which the training loss, averaged over LEARN_WINDOW
# updates, is below LEARN_LOSS nats (the right answer at about 90%); measured in experiment.py
LEARN_WINDOW, LEARN_LOSS = 20, 0.1
