"""C17: model memory = parameters × bytes per value (FP32 4, FP16/BF16 2, INT8 1, INT4 0.5).

Three checks. (1) The parameter counts the notes quote (BERT-base 110M, GPT-3 175B) against
exact counts of the real architectures, from transformers' config classes, counted
analytically and on the meta device (no weights anywhere). (2) The notes' arithmetic
(440/220/110 MB; 700/350/175/87.5 GB) against exact counts × bytes, in decimal MB/GB and
in the binary MiB/GiB that tools such as nvidia-smi print. (3) A small model really loaded
in each format, its tensors' bytes read from their storages (quantized formats carry scales,
zero points, block statistics) and its resident-set growth in a fresh process.
"""

CLAIM_ID = "C17"
