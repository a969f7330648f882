"""The bench-model claims' shared code, re-exported from where it now lives, for the claims not
yet split into packages: measuring in :mod:`whylab.bench.lab`, statistics in
:mod:`whylab.concepts._bench_stats`, figures in :mod:`whylab.concepts._bench_figures`.
A claim package imports those directly (this module imports all three, torch included)."""

from whylab.bench.lab import *  # noqa: F403
from whylab.bench.lab import __all__ as _lab
from whylab.concepts._bench_figures import *  # noqa: F403
from whylab.concepts._bench_figures import __all__ as _figures
from whylab.concepts._bench_stats import *  # noqa: F403
from whylab.concepts._bench_stats import __all__ as _stats

__all__ = [*_lab, *_figures, *_stats]
