"""C01 — tokenization turns text into numbers (and, the test adds, back again).

A definition check: what a tokenizer *does* is read off the library's own tokenizers (Hugging
Face ``tokenizers``, trained here). Every trained tokenizer encodes each validation paragraph to
ids and decodes the ids back. We check that every id is an integer inside the vocabulary, count how
often the text comes back exactly, and, where it does not, why: an unknown token replaced a
character, only the whitespace differs (the decoder rejoins pieces with single spaces), or only the
Unicode normal form differs. Byte-level BPE is lossless by construction (every byte has an id and
the spaces travel inside the pieces); the verdict says which algorithms are reversible and, from
the counted causes and their pre-tokenizer and decoder, why the others are not. The notes' own
sample sentence is shown as tokens and ids.
"""

CLAIM_ID = "C01"
