"""C12 — "INT8 quantization (BERT, GPT) costs 20–30% of performance, cuts model size by 75%, speeds inference up 2–4×".

Three parts, each decided by one pre-registered comparison (``../shared/VALIDITY.md``, rule 2);
every other variant is shown, none decides:

* **loss** — the primary INT8 variant, ONNX Runtime dynamic quantization with per-channel
  weight scales, against ONNX Runtime FP32 on the trained LM: validation-perplexity change,
  with a 95% interval from per-block paired NLL differences, against 20–30%. The NLL difference
  (nats/token) and next-token top-1 accuracy are reported beside it; the perplexity change
  decides. The measured model's size is stated next to the claim.
* **size** — at real scale: the whole ONNX file of a BERT-base encoder (the notes' example;
  random weights, built from config) in FP32 vs the same INT8 quantization, against 75%.
* **speed** — at real scale: batch-1 decode tokens/s with the KV cache on a Llama-2-7B-width
  decoder layer, INT8 vs FP32, timed interleaved per round, against 2–4×. Where the CPU has no
  INT8 fast path for that regime the part is not judged (inconclusive, not refuted); the kernel
  path that ran and the CPU's instruction sets are recorded. BERT-base prefill latency and the
  small LM's timings are shown as evidence.

Label: every judged part holds → supported; none holds → not supported; some → partly; no
part judged → inconclusive. A part not judged is listed as limited and never lowers the label.
"""

CLAIM_ID = "C12"
