"""What one SOC level of the PulseBat protocol costs a real battery, measured from workstep files.

One SOC level is a 1 C conditioning charge for 3 min (5 % of nominal capacity), a 10-minute
rest and the pulse sequence (10 widths x 5 amplitudes, +/- pulse each, rests of 15x the width):
:data:`battgen.protocol.LEVEL_PROGRAM`. :func:`measure_level_cost` sums, per level, the energy
the tester put in and took out (Wh), the charge (Ah) and the time the channel was occupied, from
the rows :func:`battgen.workstep.read_workstep` reads. :class:`LevelCost` pools such tables into
the per-Ah energy and per-battery time the cost model (:mod:`battgen.economics.model`) scales.

The protocol fixes C-rates and the 5 % SOC step, so the charge moved per level is proportional
to the nominal capacity; the energy is therefore expressed per Ah of nominal capacity per level
(Wh/Ah). The tester time per level does not depend on capacity (fixed C-rates and durations).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from battgen.economics.params import Q_, Quantity, as_quantity
from battgen.protocol import (
    ALL_SOC,
    AMPLITUDES_C,
    CALIBRATION_STEPS,
    CONDITIONING,
    CONDITIONING_STEPS,
    LEVEL_PROGRAM,
    LEVEL_STEPS,
    PULSE_STEPS,
    PULSE_WIDTHS_S,
    loop_soc,
)
from battgen.workstep import COMPLETED, calibration, loop_positions, parse_name, read_workstep

__all__ = ["LevelCost", "calibrated_capacity", "measure_level_cost"]

_ENERGY_COLUMNS = ("q_charge_ah", "e_charge_wh", "e_discharge_wh", "start_time", "end_time")
"""Workstep columns the cost needs beyond battgen.workstep.REQUIRED: charge, energies, time stamps."""
_WIDTH = np.array([step.width_s for step in LEVEL_PROGRAM])  # (LEVEL_STEPS,) s; NaN for conditioning


def calibrated_capacity(path: str | Path) -> Quantity:
    """The battery's calibrated capacity: the discharge capacity of the calibration CC discharge (Ah)."""
    path = Path(path)
    q_ah, _ = calibration(read_workstep(path), parse_name(path))
    return Q_(q_ah, "Ah")


def _check_layout(steps: pd.DataFrame, source: str) -> None:
    """Every SOC level must hold each protocol step once, in order, conditioning first.

    The cost sums steps by their position in :data:`battgen.protocol.LEVEL_PROGRAM` (which pulse
    width a step belongs to), so a level with a missing, repeated or stray step is an error.
    """
    calib = steps[steps["loop"] == 0]
    if len(calib) != CALIBRATION_STEPS:
        raise ValueError(f"{source}: expected {CALIBRATION_STEPS} calibration steps, found {len(calib)}")
    loops, problems = loop_positions(steps, int(calib["program_step"].max()) + 1)
    conditioning = [step.kind for step in CONDITIONING]
    for loop, grp in steps[steps["loop"] > 0].groupby("loop"):
        if problems[loop]:
            raise ValueError(f"{source}: SOC level {loop}: {problems[loop][0]}")
        if len(grp) != LEVEL_STEPS:
            raise ValueError(f"{source}: SOC level {loop} (rows {grp['sheet_row'].min()}-{grp['sheet_row'].max()}) "
                             f"has {len(grp)} steps, expected {LEVEL_STEPS} ({CONDITIONING_STEPS} conditioning + "
                             f"{len(PULSE_WIDTHS_S)} widths x {len(AMPLITUDES_C)} amplitudes x {PULSE_STEPS})")
        if list(grp["kind"].iloc[:CONDITIONING_STEPS]) != conditioning:
            raise ValueError(f"{source}: SOC level {loop}, row {grp['sheet_row'].iloc[0]}: does not start with a "
                             "conditioning charge and a rest")


def measure_level_cost(
    path: str | Path,
    *,
    nominal_ah: float | None = None,
    soc_range: tuple[int, int] = (ALL_SOC[0], ALL_SOC[-1]),
    pulse_widths_s: Iterable[float] | None = None,
) -> pd.DataFrame:
    """Measured energy and time of every SOC level of one workstep file, one row per level.

    Parameters
    ----------
    path: a workstep-layer sheet (e.g. ``battgen.data.fetch("workstep/<name>")``).
    nominal_ah: nominal capacity (Ah); read from the file name (``..._C_10_...``) if omitted.
    soc_range: keep levels with SOC in this closed range (percent); the paper uses 5-50 %.
    pulse_widths_s: keep only the pulses of these widths (e.g. ``(5,)``: the 5 s pulses the
        paper's features use), as a protocol that skipped the other widths would; ``None`` keeps
        the full measured sequence.

    Returns columns ``soc_pct``, ``level``, ``energy_in_wh`` (all charge energy into the battery:
    conditioning + positive pulses), ``energy_out_wh`` (negative pulses), ``conditioning_wh``,
    ``pulse_in_wh``, ``charge_ah``, ``discharge_ah``, ``step_time_h`` (sum of step durations),
    ``tester_time_h`` (channel occupation: the steps plus one switching gap per step, the
    median gap between consecutive steps of the level), ``n_steps``, ``n_truncated`` and the per-Ah versions
    ``energy_in_wh_per_ah``, ``energy_out_wh_per_ah``, ``charge_ah_per_ah``, and
    ``mean_charge_v`` (energy in / charge in: the voltage that turns Ah into Wh).
    Energies and charges are magnitudes (the tester signs discharges negative).
    """
    path = Path(path)
    steps = read_workstep(path, extra=_ENERGY_COLUMNS)
    _check_layout(steps, path.name)
    try:
        name, why = parse_name(path), ""
    except ValueError as exc:  # an unconventional name: the capacity must be given, SOC starts at 5 %
        name, why = None, str(exc)
    if nominal_ah is None:
        if name is None:
            raise ValueError(f"{why}; cannot read the nominal capacity from it: pass nominal_ah")
        nominal_ah = name.qn_ah
    nominal_ah = float(as_quantity("nominal_ah", Q_(nominal_ah, "Ah") if not isinstance(nominal_ah, Quantity) else nominal_ah,
                                   "Ah", allow_zero=False).magnitude)
    soc_lo = ALL_SOC[0] if name is None else name.soc_lo
    keep_widths = None
    if pulse_widths_s is not None:
        keep_widths = {float(w) for w in pulse_widths_s}
        unknown = keep_widths - set(PULSE_WIDTHS_S)
        if unknown:
            raise ValueError(f"pulse_widths_s: {sorted(unknown)} not in the protocol's widths {PULSE_WIDTHS_S}")
    pulse = ~np.isnan(_WIDTH)
    mask = np.ones(LEVEL_STEPS, dtype=bool) if keep_widths is None else ~pulse | np.isin(_WIDTH, list(keep_widths))

    rows = []
    for loop, grp in steps[steps["loop"] > 0].groupby("loop", sort=True):
        soc = loop_soc(loop, soc_lo)
        if not soc_range[0] <= soc <= soc_range[1]:
            continue
        # the tester's switching gap between steps: the median over the level, so that a pause
        # (a step cut short by hand, an operator intervention) does not count as protocol time
        gaps = (grp["start_time"].iloc[1:].to_numpy() - grp["end_time"].iloc[:-1].to_numpy()) / np.timedelta64(1, "s")
        gap_s = float(np.median(gaps)) if len(gaps) else 0.0
        g = grp[mask]
        e_in, e_out = g["e_charge_wh"].abs(), g["e_discharge_wh"].abs()  # (n_steps,) Wh
        cond_wh = abs(float(grp["e_charge_wh"].iloc[0]))
        step_time_s = float(g["duration_s"].sum())
        rows.append({
            "soc_pct": soc,
            "level": int(loop),
            "energy_in_wh": float(e_in.sum()),
            "energy_out_wh": float(e_out.sum()),
            "conditioning_wh": cond_wh,
            "pulse_in_wh": float(e_in.sum() - cond_wh),
            "charge_ah": float(g["q_charge_ah"].abs().sum()),
            "discharge_ah": float(g["q_discharge_ah"].abs().sum()),
            "step_time_h": step_time_s / 3600.0,
            "tester_time_h": (step_time_s + gap_s * len(g)) / 3600.0,
            "n_steps": int(len(g)),
            "n_truncated": int((g["result"] != COMPLETED).sum()),
        })
    if not rows:
        raise ValueError(f"{path.name}: no SOC level within {soc_range} %")
    out = pd.DataFrame(rows)
    out["nominal_ah"] = nominal_ah
    out["energy_in_wh_per_ah"] = out["energy_in_wh"] / nominal_ah
    out["energy_out_wh_per_ah"] = out["energy_out_wh"] / nominal_ah
    out["charge_ah_per_ah"] = out["charge_ah"] / nominal_ah
    out["mean_charge_v"] = out["energy_in_wh"] / out["charge_ah"]
    return out


@dataclass(frozen=True)
class LevelCost:
    """Measured cost of one SOC level, per Ah of nominal capacity (energy) and per battery (time)."""

    energy_in_per_ah: Quantity  # Wh/Ah: charge energy into the battery per Ah nominal per level
    energy_out_per_ah: Quantity  # Wh/Ah: energy the pulses take back out
    tester_time: Quantity  # h: channel occupation per level (independent of capacity)
    label: str = "measured"

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_in_per_ah", as_quantity("energy_in_per_ah", self.energy_in_per_ah, "Wh/Ah"))
        object.__setattr__(self, "energy_out_per_ah", as_quantity("energy_out_per_ah", self.energy_out_per_ah, "Wh/Ah"))
        object.__setattr__(self, "tester_time", as_quantity("tester_time", self.tester_time, "h"))

    @classmethod
    def from_tables(cls, *tables: pd.DataFrame, label: str = "measured") -> LevelCost:
        """Pool :func:`measure_level_cost` tables: mean over levels, then over batteries (equal weight)."""
        if not tables:
            raise ValueError("from_tables needs at least one measure_level_cost table")
        e_in = float(np.mean([t["energy_in_wh_per_ah"].mean() for t in tables]))
        e_out = float(np.mean([t["energy_out_wh_per_ah"].mean() for t in tables]))
        time = float(np.mean([t["tester_time_h"].mean() for t in tables]))
        return cls(Q_(e_in, "Wh/Ah"), Q_(e_out, "Wh/Ah"), Q_(time, "h"), label)

    def to_dict(self) -> dict[str, float]:
        return {
            "energy_in_wh_per_ah": float(self.energy_in_per_ah.to("Wh/Ah").magnitude),
            "energy_out_wh_per_ah": float(self.energy_out_per_ah.to("Wh/Ah").magnitude),
            "tester_time_h": float(self.tester_time.to("h").magnitude),
        }
