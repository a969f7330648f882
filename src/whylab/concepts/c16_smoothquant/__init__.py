"""C16: "SmoothQuant is quantization that takes the activation function into account."

The notes call SmoothQuant "활성화 함수 고려 양자화" (quantization that considers the
activation *function*). What the paper (Xiao et al. 2023) computes is about the
*activations*, the inputs of the linear layers: a few channels carry outliers far larger
than the rest, which ruins per-tensor INT8 activation scales. SmoothQuant divides each
input channel by s_j = max|X_j|^alpha / max|W_j|^(1-alpha) and multiplies the matching
weight column by s_j (an exact rewrite), moving outlier "difficulty" from activations
into weights so both quantize well to INT8 (W8A8). No activation function is involved.

The experiment (one pre-registered primary comparison, paired over seeds): W8A8 perplexity
change vs FP32, naive minus SmoothQuant at alpha_ref, on a model that has LLM-like outlier
channels *trained in*. A few hidden channels of every RMSNorm output are made
``outlier_scale`` times larger, which changes the function (a rescaling that smoothing could
exactly undo would decide the outcome by construction), and the whole model is fine-tuned with
them, per seed (its own batches and its own calibration draw). Without that condition
(``outlier_channels: 0``, e.g. on a user's checkpoint via ``lm.pretrained``) the model as
given decides. The model as trained, the α sweep and the outlier ratios are shown as evidence.
"""

CLAIM_ID = "C16"
