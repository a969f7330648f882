"""C15 — "GPTQ is a gradient-based quantization method".

What GPTQ computes (Frantar et al., ICLR 2023): for each linear layer it minimises the output
error ‖WX − QX‖² on calibration inputs X. The Hessian of that quadratic is H = 2XXᵀ — built
from forward activations alone. Columns of W are rounded one by one and each rounding error is
pushed onto the not-yet-rounded columns through H⁻¹ (Optimal Brain Surgeon's update), layer by
layer, in one shot: second-order information, no loss gradient, no backpropagation.

The experiment checks that in code, on the trained LM:
1. whylab's GPTQ runs under an autograd probe that counts ``backward``/``grad`` calls and every
   tensor autograd saves for a backward pass (a positive control shows the probe sees a real
   gradient step);
2. its result depends on H: with H = I GPTQ reproduces round-to-nearest exactly, with the real
   H it changes codes and lowers the calibration output error, and a second calibration set
   gives different codes;
3. GPTQ vs RTN perplexity on the same model, from the INT4 variants' measures.
It also checks ONNX Runtime's built-in GPTQ config on one layer (it ignores H in 1.32).
"""

CLAIM_ID = "C15"
