"""C09: the feed-forward block is made of linear layers, dropout, normalisation and an activation.

Two parts. First, what the block *is* in standard models: tiny BERT, GPT-2, Llama and T5 are
built from their transformers configs (no weights), one layer is run with forward hooks that
record which leaf modules are called, in which order, and with which tensors. That shows how
many linear layers, which activation and which dropout the feed-forward (FFN) path has, and
where the normalisation sits: never between the FFN's linear layers, always on the residual
stream, either before the sub-layer (Pre-LN) or on the residual sum after it (Post-LN). The
residual arithmetic is checked on the captured tensors. The parameter share of the FFN is
counted on the real-size configs, instantiated on PyTorch's ``meta`` device (shapes only).

Second, what the block *does* on the bench language model: no FFN, ReLU vs GELU vs SwiGLU, and
hidden width 1×, 2×, 4× d_model, each over several seeds.
"""

CLAIM_ID = "C09"
