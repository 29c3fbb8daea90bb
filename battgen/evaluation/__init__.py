"""One evaluation core: splits, a registry of generators, and the protocols that use them.

- :mod:`~battgen.evaluation.split`: :class:`Split`, the one seed convention (:func:`derive_seed`),
  how each protocol splits a battery type's table;
- :mod:`~battgen.evaluation.generators`: the registry :data:`GENERATORS` behind one interface;
- :mod:`~battgen.evaluation.core`: fit, generate, train forests, score (SOC known or unknown);
- :mod:`~battgen.evaluation.paper`: the paper's eight-case grid;
- :mod:`~battgen.evaluation.leakfree`: the leak-free benchmark and the estimator benchmark;
- :mod:`~battgen.evaluation.stats`: intervals, paired differences, skill, verdicts.
"""

from battgen.evaluation.generators import GENERATORS, GeneratorSettings
from battgen.evaluation.leakfree import LeakFreeConfig, run_estimator_benchmark, run_leakfree
from battgen.evaluation.paper import ExperimentConfig, run_grid, summarize, write_results
from battgen.evaluation.split import Split, derive_seed

__all__ = [
    "GENERATORS",
    "GeneratorSettings",
    "Split",
    "derive_seed",
    "ExperimentConfig",
    "run_grid",
    "summarize",
    "write_results",
    "LeakFreeConfig",
    "run_leakfree",
    "run_estimator_benchmark",
]
