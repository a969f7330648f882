"""The activations one training step keeps for backward, counted operation by operation for
each family (see :mod:`whylab.memory.planner`): per layer, in the head, and the logits."""

from __future__ import annotations

from dataclasses import dataclass

from whylab.errors import InputError
from whylab.memory.architecture import Arch

ATTENTION = ("eager", "sdpa")  # the attention implementations counted (eager stores the s² probabilities)


@dataclass(frozen=True)
class Kernels:
    """What the kernels keep that differs between devices.

    ``mask_bytes``: bytes of a dropout-mask value (CUDA: bool, 1; CPU: the input's dtype);
    ``stat_bytes``: bytes of LayerNorm's saved mean and 1/std (CUDA: FP32 for 16-bit inputs;
    CPU: the input's dtype); ``sdpa_mask``: the sdpa kernel receives an explicit (b, 1, s, s)
    causal mask that each layer saves (transformers 4.57 on CPU; on CUDA it passes
    ``is_causal`` and no mask when nothing is padded).
    """

    mask_bytes: int = 1
    stat_bytes: int = 4
    sdpa_mask: bool = False

    @classmethod
    def cpu(cls, act: int) -> Kernels:
        return cls(act, act, True)


CUDA = Kernels()


def layer_activation_bytes(
    a: Arch,
    batch: int,
    seq: int,
    act: int,
    attention: str = "eager",
    kernels: Kernels = CUDA,
    train: bool = True,
) -> int:
    """Bytes one layer saves for backward, counted per operation (checked against autograd in the tests).

    ``act``: bytes of an activation value. Dropout with p = 0 (or ``train=False``) saves nothing.
    """
    b, s, h, f, n = batch, seq, a.hidden, a.intermediate, a.heads
    attn_drop = train and a.attn_dropout > 0
    hid_drop = train and a.hidden_dropout > 0
    m, st = kernels.mask_bytes, kernels.stat_bytes
    if attention == "eager":
        # probabilities (and, with attention dropout, its mask and its output), b·n·s² values
        probs = (4 + (act if act != 4 else 0)) if a.family == "llama" else act  # Llama: softmax in FP32
        if attn_drop:
            probs += m + act
        scores = b * n * s * s * probs
    elif attention == "sdpa":
        scores = b * n * s * 4  # log-sum-exp per head and token (FP32); dropout is regenerated from a seed
        if kernels.sdpa_mask and a.family == "llama":
            scores += b * s * s * act
    else:
        raise InputError(f"attention implementation {attention!r} is not one of {', '.join(ATTENTION)}")
    if a.family == "llama":
        # two RMSNorms (input upcast to FP32, normed value, output, 1/rms); q after RoPE, k and v with
        # the KV heads repeated to every head, attention output; SwiGLU: gate, silu(gate), up, product
        norms = 2 * (4 * h + 2 * act * h + 4)
        return b * s * (norms + 4 * act * a.q_dim + 4 * act * f) + scores
    if a.family == "gpt2":
        ln = 2 * (act * h + 2 * st)  # ln_1, ln_2: input, mean and rstd
        # c_attn input; q and v copied for the batched matmul, k copied too when batch > 1 (for batch 1
        # the k view keeps the whole fused qkv output, 3h, alive; sdpa keeps q, k, v views of it and
        # copies of two); the attention output; c_proj input; ln_2 output into c_fc
        qkv = 3 * h if (b == 1 or attention == "sdpa") else h
        attn = act * (h + h + qkv + h + h + h)
        mlp = 4 * act * f + act * f  # gelu_new's four saved tensors, c_proj input
        masks = 2 * m * h if hid_drop else 0
        const = act if attention == "eager" else 0  # the 0-d scale tensor
        return b * s * (ln + attn + mlp + masks) + scores + const
    # bert: the layer input (q, k, v share it), copies of q, k, v for the matmuls (sdpa: the kernel's
    # inputs and output), the context before attention.output, LayerNorm 1 input, intermediate input,
    # LayerNorm 2 input; GELU input and output-dense input (f wide)
    per_token = act * 8 * h + 2 * act * f + 2 * 2 * st
    masks = 2 * m * h if hid_drop else 0
    return b * s * (per_token + masks) + scores


def head_activation_bytes(
    a: Arch, batch: int, seq: int, act: int, kernels: Kernels = CUDA, train: bool = True
) -> int:
    """Saved bytes outside the layers (embeddings, final norm, head input), logits' log-softmax excluded."""
    b, s, h = batch, seq, a.hidden
    emb_drop = train and a.embd_dropout > 0
    m, st = kernels.mask_bytes, kernels.stat_bytes
    if a.family == "llama":
        rope = 2 * s * a.head_dim * act  # cos and sin (position ids have batch 1)
        final_norm = b * s * (4 * h + 2 * act * h + 4)
        targets = 8 * (b * s + (1 if b == 1 else 0)) + 4
        return 8 * b * s + rope + final_norm + targets
    if a.family == "gpt2":
        ids = 8 * b * s + 8 * s  # input ids, position ids
        drop = b * s * h * m if emb_drop else 0
        ln_f = b * s * (act * h + 2 * st)
        lm_in = b * s * act * h
        targets = 8 * (b * s + (1 if b == 1 else 0)) + 4
        return ids + drop + ln_f + lm_in + targets
    # bert (sequence classification): ids, embedding LayerNorm and its dropout mask; the pooler's input is
    # a view of the last hidden state (the whole b·s·h storage stays alive), its tanh output, the
    # classifier's dropout; the loss keeps a (b, labels) log-softmax and the targets
    ids = 8 * b * s
    emb_ln = b * s * (act * h + 2 * st)
    drop = b * s * h * m if emb_drop else 0
    pooler = b * s * h * act + b * h * act + (b * h * (m + act) if emb_drop else 0)
    loss = b * a.num_labels * act + 8 * b + act
    return ids + emb_ln + drop + pooler + loss


def logits_bytes(a: Arch, batch: int, seq: int) -> tuple[int, int]:
    """(saved FP32 log-softmax, FP32 gradients alive at the start of backward) of the LM head; BERT's is tiny."""
    if a.family == "bert":
        return 0, 0
    n = batch * seq * a.vocab
    return 4 * n, 2 * 4 * n
