"""C20: gradient accumulation splits a large batch into small ones.

If accumulation is a faithful split, the gradients summed over micro-batches equal the large
batch's gradient, while the peak memory follows the micro-batch, not the batch. Both are measured
on a LlamaForCausalLM. The catch the notes do not mention is measured too: with padding or
variable-length sequences, averaging per-micro-batch mean losses ("mean of means") weights every
micro-batch equally rather than every token, so the result is not the large batch's gradient;
dividing token sums by the batch's total token count (transformers' ``num_items_in_batch``) is.
"""

CLAIM_ID = "C20"
