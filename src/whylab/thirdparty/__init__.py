"""Checks that run someone else's implementation in an environment of its own.

``llmcompressor_check`` runs in ``.venv-llmc`` (``make setup-llmc``; ``workflow/envs/llmcompressor.yaml``
under ``--sdm conda``): llmcompressor 0.14 needs transformers 5, which the main environment cannot
share (optimum-onnx 0.1.0 caps transformers below 4.58). The modules here import only torch,
transformers, llmcompressor, the standard library and whylab's light modules (``whylab.errors``,
``whylab.lm.data``), never optimum or ONNX.
"""
