"""A small claim package in the per-seed form, for the runner's, the CLI's and the DAG's tests.

The tests register it under a real claim id (the decide step needs the claim's text): in process
by patching ``whylab.concepts.REGISTRY`` to ``fake_seed_claim`` (tests/ is on the path), in a
workflow copy by copying this folder over that claim's package. ``experiment.measure_seed``
draws from torch's seeded generator, so each seed gives its own, repeatable numbers;
``verdict`` decides from the metrics alone; ``figures`` draws one figure. It has no
``measure``: all it measures is per seed.
"""

CLAIM_ID = "C08"
