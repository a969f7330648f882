"""C18: training memory = base memory × (optimizer + gradient + activation factors).

The notes give per-parameter factors (Adam 8 B, AdaFactor 2-4 B, SGD 0; gradients 4 B in FP32,
2 B in FP16; activations "proportional to batch and sequence, about 20-30 % of the model") and
multiply the model's bytes by their sum. This experiment measures real training steps of a small
LlamaForCausalLM (peak live tensor bytes, broken down into weights / gradients / optimizer state /
activations) across batch sizes, sequence lengths and optimizers, checks each factor on its own,
and holds three estimates against the measured peak: the notes' formula as written, the same
factors added per parameter, and the exact accounting model of :mod:`whylab.memory.calculator`.
"""

CLAIM_ID = "C18"
