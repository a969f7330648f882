"""The language-model half of whylab: a small Llama trained from a config, then exported.

``model`` builds it, ``data`` turns corpus files into token blocks with the trained
tokenizer, ``evaluate`` measures perplexity, ``train`` is the training step (with
checkpoints and resume) and ``export`` the ONNX export with its parity check.
Helpers that quantize the model (C12-C16) use ``model``, ``data`` and ``evaluate``.
"""
