"""C21: CPU offloading moves some layers (or optimizer state) to the CPU to save accelerator memory.

Two real mechanisms (whylab.memory.offload): ZeRO-Offload-style AdamW (FP32 master weights and Adam
moments in host memory; gradients down, weights up every step) for training, and accelerate's
cpu_offload of the first N decoder layers (weights fetched per forward) for inference. What the
claim is about, peak accelerator memory, can only be measured with an accelerator: on CUDA this
rule measures peak allocated memory and time with and without each; on a CPU-only machine it says
so, checks that both mechanisms compute the same results as the plain model, and computes from
the model the bytes that would leave the accelerator and the bytes moved per step. A result of a
GPU run can be passed in (memory.C21.recorded_gpu_run) and is then reported as recorded.
"""

CLAIM_ID = "C21"
