"""The PulseBat test protocol, defined once: SOC levels and the paper's eight unseen-SOC cases.

Every module that needs "which SOC levels exist", "which were measured in case k" or "which
SOC level is this row at" reads it from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ALL_SOC", "CASES", "case_kind", "test_levels", "soc_percent"]

ALL_SOC: tuple[int, ...] = tuple(range(5, 55, 5))
"""The ten SOC levels (% of nominal capacity) at which PulseBat pulses were measured."""

CASES: dict[int, tuple[int, ...]] = {
    0: (5, 15, 25, 35, 45, 50),
    1: (5, 10, 30, 40, 50),
    2: (5, 25, 40, 50),
    3: (5, 25, 50),
    4: (35, 40, 45, 50),
    5: (20, 25, 30),
    6: (5, 10, 15, 20),
    7: (5, 10),
}
"""The paper's eight cases: measured (training) SOC levels in %; cases 0-3 interpolate, 4-7 extrapolate."""


def case_kind(case: int) -> str:
    """``"interpolation"`` for cases 0-3, ``"extrapolation"`` for 4-7."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; expected one of {sorted(CASES)}")
    return "interpolation" if case <= 3 else "extrapolation"


def test_levels(case: int) -> tuple[int, ...]:
    """The unseen SOC levels (%) of a case."""
    case_kind(case)
    return tuple(s for s in ALL_SOC if s not in CASES[case])


test_levels.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one


def soc_percent(df: pd.DataFrame) -> np.ndarray:
    """SOC of each row as an integer percentage (5, 10, ...)."""
    return np.rint(df["soc"].to_numpy() * 100).astype(int)
