"""C11 — decoders have cross-attention, "which uses the encoder output as query and key".

In the transformer of Vaswani et al. (2017, 3.2.3) the cross-attention ("encoder-decoder
attention") takes its queries from the decoder's previous layer and its keys *and values* from
the encoder output. The notes put the encoder output on the query side. Three pieces of evidence:

1. **Definition check (decides the label).** T5 and BART, built from their transformers configs
   (random weights), with hooks on their cross-attention's W_q, W_k, W_v: which tensor enters each
   (shapes, identity with the encoder output, and which input change moves it). GPT-2, a
   decoder-only model, is checked for cross-attention too.
2. **The notes' wiring, built and trained.** Queries and keys from the encoder output leave the
   values to the decoder (``wiring.NotesCrossAttention``, same parameters as the standard
   module). With a source and a target of different lengths its score matrix has the source's
   length on both axes and the forward pass fails where the weights meet the values; with equal
   lengths it runs, and it is trained on the same reversal task as the standard wiring, seed by
   seed from the same initial weights and batches, and compared on held-out token accuracy
   (paired over seeds).
3. **Our model, as illustration.** In the trained standard encoder–decoder, noise on the encoder
   output moves K, V (and the first layer's Q not at all); noise on the decoder input moves Q but
   never K or V; switching the cross-attention off shows that the decoder uses it.
"""

CLAIM_ID = "C11"
