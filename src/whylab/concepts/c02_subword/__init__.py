"""C02 — subword tokenizers keep frequent words whole and split rare ones.

Words are counted in the training split (English: whitespace-separated words
with surrounding punctuation stripped; Korean: 어절, the space-separated units,
which carry their particles: 우리는, 가족의). Each word type is encoded alone, in
the form it takes inside running text, and its pieces are counted. Words are
grouped into frequency bands; the claim predicts fewer pieces and a higher share
of whole words in higher bands. A word-level vocabulary of the same size is the
baseline for unknown-token rates.
"""

CLAIM_ID = "C02"
