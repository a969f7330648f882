"""C04: attention needs learned W_q and W_k, because raw token embeddings cannot express relations.

The notes' example: in "내일 점심에 팀장님이랑 밥 약속이 있어." the relation (내일 점심 ↔ 팀장님) is
not a similarity between the tokens themselves. With Q = K = X the score of a token with another
is the plain dot product of their vectors, which is symmetric, and a token's score with itself,
‖x‖², is the largest a vector of that norm can get; so a token tends to look at itself or at tokens
that *look like it*. Learned W_q, W_k make the score an arbitrary bilinear form xᵢᵀ W_q W_kᵀ xⱼ,
which can rank a different, related token first.

Learned embeddings can make related tokens *similar*, so Q = K = X is not helpless; what it cannot
do is break the symmetry s(a, b) = s(b, a) or stop preferring itself. So the synthetic task uses a
*directed* relation (a looks for σ(a), which looks for σ(σ(a)), ...), like 내일 점심 → 팀장님.

Two measurements, each over seeds, the same model with and without the projections:
(a) the relation task, on a one-layer, one-head, attention-only model (so the attention score alone
    must express the relation): accuracy, and where the query's attention goes (the token it looks
    for, the token that looks for it, itself);
(b) next-token loss on the corpus and the share of attention tokens give themselves.
"""

CLAIM_ID = "C04"

# the two variants: display name (table cells, legend entries, column names) -> key of the
# measurements (experiment.py) and of the metrics (verdict.py)
KEYS = {"learned W_q, W_k": "learned", "Q = K = X": "no_qk"}
