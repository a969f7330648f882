"""C19: gradient checkpointing saves activation memory.

Checkpointing keeps only some layers' inputs during the forward pass and recomputes the rest
during backward. If the claim holds, the peak memory of a forward + backward pass drops, more so
the deeper the model and the longer the sequence, and each step takes longer (the recomputation).
Measured on a LlamaForCausalLM across depth and sequence length, without checkpointing, with
transformers' per-layer checkpointing, and with Chen et al.'s sqrt(n) segments; gradients are
checked to be the same in every mode.
"""

CLAIM_ID = "C19"
