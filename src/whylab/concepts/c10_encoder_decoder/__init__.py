"""C10 — encoders use (bidirectional) multi-head self-attention; decoders use masked multi-head
self-attention.

A definition check: what an encoder and a decoder *are* is read off implementations others wrote.
BERT (an encoder), GPT-2 (a decoder) and T5 (both) are built from their transformers configs with
random weights, two layers and the real model's number of heads. The causality test changes one
token at position p and measures how much the hidden states at positions < p move: in a masked
decoder they must not move at all, in an encoder they do. One forward pass with the attention maps
returned shows the heads: how many maps each layer computes, that they differ, and whether any
weight falls on later positions.

Our bench transformer, built twice from the same seed with and without the causal mask and tested
at initialisation and after brief training on the corpus, is the illustration: a check on our own
code alone would only read back the mask we wrote into it.
"""

CLAIM_ID = "C10"
