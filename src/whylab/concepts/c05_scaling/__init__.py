"""C05 — attention scores are divided by the square root of a dimension, because large score
variance saturates the softmax and makes gradients vanish. Which dimension?

The notes' text says "the embedding dimension" (임베딩차원); their code divides by √d_k. Vaswani et
al. (2017, 3.2.1) argue: if the components of q and k are independent with mean 0 and variance 1,
q·k has variance d_k, so for large d_k the softmax is pushed "into regions where it has extremely
small gradients"; dividing by √d_k brings the variance back to 1. With h heads, d_k = d_model / h,
so dividing by √d_model instead leaves a variance of 1/h: it shrinks the scores too much.

Three measurements:
(1) synthetic, no model: variance of q·k against d_k; softmax max-probability, entropy and the
    gradient that flows back through the softmax, with and without the scaling;
(2) synthetic, the dimension question: at a fixed model width, scaling by √d_k vs √d_model vs
    nothing for several head counts;
(3) training: the bench LM on the corpus with each scaling at several d_k (head counts at a fixed
    width), over seeds; W_q, W_k start with unit-variance outputs so the argument's premise holds.
"""

CLAIM_ID = "C05"
