"""C14: "QLoRA is 4-bit quantization plus LoRA fine-tuning."

The claim is a definition, so the experiment checks the definition on a real run and
then what it buys: the trained LM (pretrained on ``lm.train_languages``) is fine-tuned
on a language it never saw (ko by default) three ways, with the same seeds, batches,
steps and schedule: (a) QLoRA — NF4 4-bit frozen base (bitsandbytes, double
quantization) + LoRA adapters (peft); (b) the same LoRA adapters on the FP32 base;
(c) full fine-tuning. Measured: how many linear layers really are 4-bit and how many
bytes they take, which parameters train (and that the 4-bit base stays bit-identical),
peak memory, wall time, and validation perplexity before/after on the new language
(and on the pretraining language, to see what is forgotten).
"""

CLAIM_ID = "C14"
