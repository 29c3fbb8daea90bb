"""The paper's eight-case grid, under the import path of battgen's first release.

The protocol lives in :mod:`battgen.evaluation.paper`; this module re-exports it so that
``from battgen.experiments import ExperimentConfig, run_grid, summarize`` keeps working.
"""

from battgen.evaluation.paper import *  # noqa: F401,F403
from battgen.evaluation.paper import __all__  # noqa: F401
from battgen.protocol import ALL_SOC, CASES, case_kind, soc_percent, test_levels  # noqa: F401
