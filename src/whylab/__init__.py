"""whylab: test the claims of a set of LLM study notes by experiment."""

__version__ = "0.1.0"
