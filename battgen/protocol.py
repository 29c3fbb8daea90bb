"""The PulseBat test protocol, defined once: SOC levels, the paper's eight unseen-SOC cases and
the physical test program (calibration, conditioning, pulse widths, amplitudes and rests).

Every module that needs "which SOC levels exist", "which were measured in case k", "which
SOC level is this row at" or "which step should the tester have run here" reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for the annotations: `battgen --help` need not import pandas
    import pandas as pd

__all__ = ["ALL_SOC", "CASES", "case_kind", "test_levels", "soc_percent", "levels_text"]

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


def levels_text(levels) -> str:
    """SOC levels (%) as the messages write them: ``"5, 25, 50"``."""
    return ", ".join(str(s) for s in levels)


# --------------------------------------------------------------------------- the test program
#
# What the tester does to every battery (PulseBat README; SOURCES.md "workstep/"): a capacity
# calibration, then per SOC level a conditioning charge and rest followed by the pulse sequence.
# battgen.workstep reads what the tester recorded, battgen.features checks every step against
# LEVEL_PROGRAM, battgen.economics.measured prices it and battgen.plotting draws it.

__all__ += [
    "AMPLITUDES_C",
    "CALIBRATION",
    "CALIBRATION_DISCHARGE",
    "CALIBRATION_STEPS",
    "CONDITIONING",
    "CONDITIONING_STEPS",
    "LEVEL_PROGRAM",
    "LEVEL_STEPS",
    "PULSE_STEPS",
    "PULSE_WIDTHS_S",
    "ProgramStep",
    "REST_FACTOR",
    "SOC_STEP_PCT",
    "WIDTH_STEPS",
    "loop_soc",
    "pulse_group",
    "soc_loop",
]

SOC_STEP_PCT = 5
"""SOC levels lie 5 % of nominal capacity apart: the conditioning charge is 1 C for 3 min."""

PULSE_WIDTHS_S: tuple[float, ...] = (0.03, 0.05, 0.07, 0.1, 0.3, 0.5, 0.7, 1.0, 3.0, 5.0)
"""The ten pulse widths (s), in the order the tester applies them at every SOC level."""

AMPLITUDES_C: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5)
"""The five pulse amplitudes (C: multiples of the nominal capacity per hour), applied in this order per width."""

REST_FACTOR = 15
"""The rest after every pulse lasts ``REST_FACTOR`` x the pulse width (75 s after a 5 s pulse)."""

CALIBRATION: tuple[str, ...] = ("rest", "cccv_charge", "rest", "discharge", "rest")
"""Step kinds of the capacity calibration (loop 0): rest, 1 C CCCV charge, rest, 1 C CC discharge, rest."""
CALIBRATION_STEPS = len(CALIBRATION)  # 5 steps before the first SOC level
CALIBRATION_DISCHARGE = CALIBRATION.index("discharge")  # 3: its discharged Ah is the calibrated capacity


@dataclass(frozen=True)
class ProgramStep:
    """One step of an SOC level as the protocol prescribes it (what the tester should record)."""

    pos: int  # 0-based position within the SOC level (0, 1: conditioning; 2..201: pulse sequence)
    kind: str  # rest / charge / discharge (battgen.workstep's names for the tester modes)
    c_rate: float  # signed current in C: > 0 charge, < 0 discharge, 0 rest
    duration_s: float
    what: str  # human-readable, e.g. "+1.5 C pulse (5 s)"; error messages quote it
    width_s: float = float("nan")  # pulse width of the group the step belongs to; NaN for conditioning


CONDITIONING: tuple[ProgramStep, ...] = (
    ProgramStep(0, "charge", 1.0, 180.0, "1 C conditioning charge"),  # 1 C x 3 min = SOC_STEP_PCT
    ProgramStep(1, "rest", 0.0, 600.0, "conditioning rest"),
)
"""The two steps that bring a battery to the next SOC level and let it relax before the pulses."""
CONDITIONING_STEPS = len(CONDITIONING)  # 2

PULSE_STEPS = 4
"""Steps per amplitude: +pulse, rest, -pulse, rest (the -pulse returns the charge of the +pulse)."""
WIDTH_STEPS = PULSE_STEPS * len(AMPLITUDES_C)  # 20 steps per pulse width


def pulse_group(width_s: float, start: int = 0) -> tuple[ProgramStep, ...]:
    """The ``WIDTH_STEPS`` steps of one pulse width: per amplitude +pulse, rest, -pulse, rest.

    ``start`` is the position of the first step within the SOC level. Any positive width is
    accepted, so that plots can draw a schedule the tester never ran.
    """
    w, rest = float(width_s), float(width_s) * REST_FACTOR
    steps: list[ProgramStep] = []
    for a in AMPLITUDES_C:
        for kind, c, d, what in (("charge", a, w, f"+{a:g} C pulse ({w:g} s)"),
                                 ("rest", 0.0, rest, f"rest after +{a:g} C pulse ({w:g} s)"),
                                 ("discharge", -a, w, f"-{a:g} C pulse ({w:g} s)"),
                                 ("rest", 0.0, rest, f"rest after -{a:g} C pulse ({w:g} s)")):
            steps.append(ProgramStep(start + len(steps), kind, c, d, what, w))
    return tuple(steps)


LEVEL_PROGRAM: tuple[ProgramStep, ...] = CONDITIONING + tuple(
    step for i, w in enumerate(PULSE_WIDTHS_S) for step in pulse_group(w, CONDITIONING_STEPS + i * WIDTH_STEPS)
)
"""The program steps of one SOC level, in order: conditioning, then 10 widths x 5 amplitudes x 4."""
LEVEL_STEPS = len(LEVEL_PROGRAM)  # 202 = 2 + 10 x 5 x 4


def soc_loop(soc_pct: int, first_soc_pct: int = ALL_SOC[0]) -> int:
    """The tester's loop counter (循环步骤号: 1, 2, ...) of an SOC level when the test starts at ``first_soc_pct``."""
    return (int(soc_pct) - int(first_soc_pct)) // SOC_STEP_PCT + 1


def loop_soc(loop: int, first_soc_pct: int = ALL_SOC[0]) -> int:
    """The SOC level (%) of loop ``loop`` (1, 2, ...) when the test starts at ``first_soc_pct``."""
    return int(first_soc_pct) + SOC_STEP_PCT * (int(loop) - 1)
