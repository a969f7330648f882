"""C07: NLP prefers LayerNorm to BatchNorm because sentences differ in length and BatchNorm
averages over the padding.

The experiment trains the same bench transformer with LayerNorm, with naive BatchNorm (each channel
normalised over batch *and* time, PAD positions included, as a naive user would write it), with
masked BatchNorm (the same, but its statistics use only the real tokens: the notes' reason removed)
and optionally RMSNorm, on padded batches of real sentences of mixed lengths, paired by seed. Naive vs
masked BatchNorm tests the reason; LayerNorm vs masked BatchNorm the preference. It measures
what the notes' argument predicts:

- the validation loss (BatchNorm evaluates with its running statistics) and the gap between
  evaluating with running and with batch statistics on the same batches;
- batch dependence: how much one sentence's logits change when the *other* sentences in its
  batch change (with and without any PAD in the batch), or when only the amount of padding in
  its batch grows. LayerNorm normalises each token on its own, so it must show ~0; BatchNorm
  in training mode must not;
- for BatchNorm, how far the PAD rows move the batch mean (the notes' mechanism itself) and how
  much the batch statistics fluctuate from batch to batch (Shen et al. 2020's diagnosis);
- non-causality: in training mode BatchNorm's statistics include later tokens, so changing them
  moves the logits at earlier positions (LayerNorm: exactly 0).
Each norm trains at its own learning rate, chosen by one rule on held-out sentences from one grid
(``whylab.concepts._settle``), and a loss comparison decides only once its paired difference has
stopped moving over the last evaluations; before that it is a limit of this run.
"""

CLAIM_ID = "C07"
