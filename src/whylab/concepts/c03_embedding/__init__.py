"""C03: the embedding table (nn.Embedding) is itself learned.

If it is, training moves its rows (the more often a token is seen, the more its row moves; rows of
tokens never seen in the training inputs get no gradient at all), the geometry of the table changes
(nearest neighbours before and after differ; spellings of the same word such as "the"/" The" move
together), and learning it matters: the same model with the table frozen at random values should
end at a higher loss. The last point has an honest nuance: a frozen random table is still a usable
code (random vectors in 64 dimensions are nearly orthogonal) and the layers after it adapt, so the
frozen model trains too, and how well depends on the scale of the frozen vectors. So the primary
frozen table is the model's own init (N(0, 0.02²), the very table the learned arm starts from: the
scale is the same at the start, and only learning differs); the GPU profile adds a unit-scale table
(nn.Embedding's default N(0, 1)), and learning must beat every frozen table that ran: paired by seed (same other initial weights, same batches), Holm over the
tables, by at least ``min_loss_gain``. The learned arm is the shared baseline LM (also in C04, C06),
trained once per seed by the bench_baseline rule.
"""

CLAIM_ID = "C03"

# the arms, as keys of the measurements (experiment.py) and of the metrics (verdict.py)
LEARNED, FROZEN, FROZEN_UNIT = "learned", "frozen", "frozen_unit"
