"""Quantizing the trained LM and measuring every variant the same way (claims C12-C16).

``variants`` names and measures the variants; ``variant_jobs`` is the ``quant_variant`` step
(a family of variants built and measured in one process);
``measure`` holds the measurement (size, perplexity, interleaved latency, throughput,
actual ONNX Runtime providers); ``onnx_quant`` and ``torch_quant`` build the ONNX Runtime and
PyTorch variants; ``int4`` is the 4-bit grid and MatMulNBits layout; ``gptq`` and ``awq`` are
the published algorithms written out (no library fits this stack); ``onnx_graph`` edits the
exported graph; ``report`` reads all variants back for the concept pages. ``smoothquant`` and
``qlora`` belong to C16 and C14.
"""
