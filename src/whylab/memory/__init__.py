"""Memory profiling (claims C17-C21): what a model and its training cost in bytes.

``counting``    exact parameter counts from real configs (analytic, checked on the meta device)
``calculator``  the notes' formula and an exact accounting model (weights, gradients,
                optimizer state, activations) per dtype and optimizer
``measure``     measured memory: tensor bytes, saved-activation bytes, peak allocations
                (CUDA allocator statistics or torch's dispatch-level MemTracker on CPU),
                peak RSS of a fresh process, and step timing
``training``    the small LlamaForCausalLM and the training step every experiment uses
``accumulation`` gradient accumulation and its loss normalisation
``offload``     CPU offloading of optimizer state (ZeRO-Offload style) and of layer weights
``planner``     the training-memory planner (``python -m whylab plan-memory MODEL``): BERT, GPT-2 and
                Llama from a config dict, per component, pure Python
``presets``     the planner's model presets, as plain config.json dicts
``provenance``  commit and settings hash of a measured result (recorded GPU runs)
"""
