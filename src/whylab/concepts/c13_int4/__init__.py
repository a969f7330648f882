"""C13 — "INT4 quantization (GPT-J, LLaMA; AWQ) costs 40–50% of performance and cuts size by 87.5%".

Two parts, each decided by one pre-registered comparison (the other variants are shown):

* **loss** — the primary INT4 variant, AWQ (named by the notes) at group 128 (the papers' setting; the
  widest configured group below 128 where the model is narrower), written as ONNX Runtime
  MatMulNBits, against ONNX Runtime FP32 on the trained LM: perplexity change with a paired 95%
  interval over blocks, against 40–50%. NLL difference and next-token top-1 accuracy are shown
  beside it; the perplexity change decides. The measured model's size is stated.
* **size** — at real scale: the whole ONNX file of a Llama-2-7B-width decoder layer (random
  weights, built from config) in FP32 vs 4-bit MatMulNBits at group 128, against 87.5%. (4-bit
  codes plus one scale and zero point per group cost more than 4 bits per weight.)

Every 4-bit variant of the trained LM (ORT's RTN and HQQ, whylab's GPTQ and AWQ at each group
size) is measured and shown, with the papers' comparisons (GPTQ and AWQ vs RTN, group size).
"""

CLAIM_ID = "C13"
