"""The bench: a small hand-written transformer with ablation switches, its data and its
training loop, shared by the mechanism experiments (claims C03–C11).

- :mod:`whylab.bench.model`: ``BenchConfig``, ``BenchTransformer``, ``EncoderDecoder``, ``attention``
- :mod:`whylab.bench.data`: tokenizer, id streams, LM batches and validation windows
- :mod:`whylab.bench.train`: ``train_lm``, ``evaluate_lm``, ``per_layer_grad_norms``
- :mod:`whylab.bench.loss`: the LM cross-entropy with a one-pass backward ``train_lm`` uses
- :mod:`whylab.bench.reference`: the loop before the fast path, for its test and benchmark
"""
