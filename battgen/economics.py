"""What measuring fewer SOC levels saves: energy, money, CO2 and tester time, rebuilt in the open.

Tao et al. (2024) state that generating the unmeasured SOC levels "would save 4.9 billion USD in
electricity costs and 35.8 billion kg CO2 emissions ... for a 2030 worldwide battery retirement
scenario", without publishing the parameter values behind the figure. This module rebuilds the
estimate from two ingredients kept strictly apart:

* **Measured**: what one SOC level of the PulseBat protocol costs a real battery, read from the
  two workstep-layer files (per-step charge/discharge energy in Wh, capacity in Ah, duration).
  One level is a 1C conditioning charge for 3 min (5 % of nominal capacity), a 10-minute rest and
  the pulse sequence (10 widths x 5 amplitudes, +/- pulse each, rests of 15x the width).
  :func:`measure_level_cost` returns one row per SOC level.
* **Assumed or sourced**: everything else, gathered in :class:`EconomicParameters`, one field per
  parameter, each a :mod:`pint` quantity with its unit, a source (or the label *assumption*) and a
  plausible low/high range for the sensitivity chart.

How the measurements are scaled to other designs. The protocol fixes C-rates and the 5 % SOC step,
so the charge moved per level is proportional to the nominal capacity (both files move 0.072 Ah
per Ah of nominal capacity per level). The energy is that charge times the battery's voltage, so
it is expressed **per Ah of nominal capacity per 5 % SOC level** (Wh/Ah) and multiplied by the
capacity of the battery in question; the voltage is the one of the measured chemistry (LMO and
NMC are measured; pooling both gives the generic retired battery). The tester time per level does
not depend on capacity (fixed C-rates, fixed step durations).

Grid energy for one battery at one level::

    E_grid = E_in / charger_efficiency - discharge_recovery * charger_efficiency * E_out
             + standby_power * tester_time

where ``E_in``/``E_out`` are the measured energies into/out of the battery. A case saves the
levels it does not measure: ``10 - len(train_soc)`` levels per battery, and :func:`savings` is
linear in the number of batteries.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pint

__all__ = [
    "ureg",
    "Q_",
    "PAPER_USD",
    "PAPER_KG_CO2",
    "PAPER_KG_PER_USD",
    "SOC_LEVELS",
    "PULSE_WIDTHS_S",
    "EconomicParameters",
    "LevelCost",
    "Savings",
    "read_workstep",
    "calibrated_capacity",
    "measure_level_cost",
    "levels_saved",
    "case_table",
    "cost_per_level",
    "design_costs",
    "savings",
    "scenario",
    "savings_curve",
    "time_saved_per_battery",
    "reproduce_paper",
    "sensitivity",
]

# --------------------------------------------------------------------------- units

ureg = pint.get_application_registry()
if "USD" not in ureg:  # the money unit; defined once per process
    try:
        ureg.define("USD = [currency]")
    except pint.errors.RedefinitionError:  # pragma: no cover - defined concurrently elsewhere
        pass
Q_ = ureg.Quantity
Quantity = pint.Quantity

PAPER_USD = 4.9e9
"""Electricity cost the paper says is saved in its 2030 scenario (USD)."""
PAPER_KG_CO2 = 35.8e9
"""CO2 the paper says is saved in its 2030 scenario (kg)."""
PAPER_KG_PER_USD = PAPER_KG_CO2 / PAPER_USD
"""7.31 kg CO2 per USD: pins the paper's carbon intensity to price ratio."""

SOC_LEVELS: tuple[int, ...] = tuple(range(5, 55, 5))
"""The ten SOC levels of the paper's dataset, in percent (5 ... 50)."""

PULSE_WIDTHS_S: tuple[float, ...] = (0.03, 0.05, 0.07, 0.1, 0.3, 0.5, 0.7, 1.0, 3.0, 5.0)
"""The pulse widths of the PulseBat protocol in the order the tester applies them (s)."""
_AMPLITUDES_PER_WIDTH = 5
_STEPS_PER_PULSE = 4  # +pulse, rest, -pulse, rest
_CONDITIONING_STEPS = 2  # CC charge (3 min at 1C), rest (10 min)
_STEPS_PER_LEVEL = _CONDITIONING_STEPS + len(PULSE_WIDTHS_S) * _AMPLITUDES_PER_WIDTH * _STEPS_PER_PULSE  # 202
_CALIBRATION_STEPS = 5


# --------------------------------------------------------------------------- validation


def _as_quantity(name: str, value: Any, unit: str, *, allow_zero: bool = True, upper: float | None = None) -> Quantity:
    """Return ``value`` converted to ``unit``; raise a clear error if it is unit-less, wrong or negative.

    A bare number is refused for a dimensional ``unit`` (TypeError), a wrong dimension too
    (ValueError), and so are negative values, NaN and (with ``upper``) values above ``upper``.
    Dimensionless parameters (``unit == ""``) accept plain numbers.
    """
    dimensionless = unit in ("", "dimensionless")
    if isinstance(value, Quantity):
        try:
            q = value.to(unit or "dimensionless")
        except pint.errors.DimensionalityError:
            raise ValueError(
                f"{name}: {value!r} has units of {value.units:~P}, expected {unit or 'a dimensionless number'}"
            ) from None
    elif isinstance(value, bool) or value is None:
        raise TypeError(f"{name}: expected a number{'' if dimensionless else ' with a unit'}, got {value!r}")
    elif dimensionless and isinstance(value, (int, float, np.integer, np.floating, np.ndarray, list, tuple)):
        q = Q_(np.asarray(value, dtype=float) if isinstance(value, (np.ndarray, list, tuple)) else float(value), "")
    elif isinstance(value, (int, float, np.integer, np.floating, np.ndarray, list, tuple)):
        raise TypeError(
            f"{name}: {value!r} has no unit; pass a pint quantity such as Q_({value!r}, {unit!r}) "
            f"(battgen.economics.Q_), expected {unit}"
        )
    else:
        raise TypeError(f"{name}: expected a pint quantity in {unit or 'dimensionless'}, got {type(value).__name__}")
    mag = np.asarray(q.magnitude, dtype=float)
    if not np.all(np.isfinite(mag)):
        raise ValueError(f"{name}: {value!r} is not finite; expected a non-negative value in {unit or 'dimensionless'}")
    if np.any(mag < 0) or (not allow_zero and np.any(mag == 0)):
        bound = "positive" if not allow_zero else "non-negative"
        raise ValueError(f"{name}: {value!r} is negative{' or zero' if not allow_zero else ''}; expected a {bound} value in {unit or 'dimensionless'}")
    if upper is not None and np.any(mag > upper):
        raise ValueError(f"{name}: {value!r} is above {upper}; expected a value in [0, {upper}] ({unit or 'dimensionless'})")
    return q


def _count(name: str, value: Any) -> np.ndarray | float:
    """A non-negative count (scalar or array); a pint quantity must be dimensionless."""
    if isinstance(value, Quantity):
        value = _as_quantity(name, value, "").magnitude
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{name}: expected a non-negative number (a count), got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a non-negative number (a count), got {value!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name}: {value!r} must be finite and non-negative (a count of batteries)")
    return float(arr) if arr.ndim == 0 else arr


def _levels(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer number of SOC levels, got {value!r}")
    if not 0 <= int(value) <= len(SOC_LEVELS):
        raise ValueError(f"{name}: {value!r} is outside 0..{len(SOC_LEVELS)} (SOC levels per battery)")
    return int(value)


# --------------------------------------------------------------------------- parameters


def _param(default: str, unit: str, source: str, kind: str, low: str, high: str, label: str, upper: float | None = None,
           allow_zero: bool = True):
    """A dataclass field holding a pint quantity, with its unit, source and sensitivity range."""
    return field(
        default_factory=lambda: Q_(default),
        metadata={"unit": unit, "source": source, "kind": kind, "low": low, "high": high, "label": label,
                  "upper": upper, "allow_zero": allow_zero},
    )


@dataclass(frozen=True)
class EconomicParameters:
    """Every economic and scenario parameter, each a pint quantity with a unit and a source.

    ``kind`` in each field's metadata is ``"sourced"`` (a public figure, cited) or
    ``"assumption"`` (no public figure found; chosen and labelled). ``low``/``high`` give the
    range used by :func:`sensitivity`. Build variants with :meth:`replace`; every value is checked
    (unit-less or negative inputs raise).
    """

    electricity_price: Quantity = _param(
        "0.148 USD/kWh", "USD/kWh",
        "GlobalPetrolPrices.com, world average electricity price for businesses, March 2024 "
        "(https://www.globalpetrolprices.com/electricity_prices/); range: the Asian (0.082) and European "
        "(0.195) business averages of the same release", "sourced",
        "0.082 USD/kWh", "0.195 USD/kWh", "electricity price",
    )
    carbon_intensity: Quantity = _param(
        "0.481 kg/kWh", "kg/kWh",
        "Ember (2024), global average carbon intensity of electricity generation in 2023, 481 gCO2/kWh "
        "(Global Electricity Review 2024; via Statista/Our World in Data); range: 0.30 (assumption: a "
        "decarbonising 2030 grid) to 0.582 (China 2023, Ember via Our World in Data)", "sourced",
        "0.30 kg/kWh", "0.582 kg/kWh", "grid carbon intensity",
    )
    charger_efficiency: Quantity = _param(
        "0.85", "",
        "assumption: AC-to-DC efficiency of a switched-mode cell tester channel (no public figure for "
        "the NEBULA BAT-NEEFLCT-05300 used by PulseBat)", "assumption",
        "0.75", "0.95", "charger efficiency", upper=1.0, allow_zero=False,
    )
    discharge_recovery: Quantity = _param(
        "0", "",
        "assumption: fraction of the discharged energy fed back to the grid (0 = dissipative load; an "
        "energy-feedback tester would recover most of it, times the charger efficiency)", "assumption",
        "0", "0.85", "discharge energy recovered", upper=1.0,
    )
    standby_power: Quantity = _param(
        "10 W", "W",
        "assumption: power a tester channel draws whatever the step (control electronics, fans), "
        "per channel and battery", "assumption",
        "2 W", "30 W", "tester standby power",
    )
    retired_energy_2030: Quantity = _param(
        "200 GWh", "GWh",
        "McKinsey (2019), 'Second-life EV batteries: the newest value pool in energy storage': used EV "
        "batteries could exceed 200 GWh per year by 2030; range 100-400 GWh is an assumption", "sourced",
        "100 GWh", "400 GWh", "capacity retired in 2030",
    )
    mean_capacity: Quantity = _param(
        "17 Ah", "Ah",
        "assumption: unweighted mean nominal capacity of the four PulseBat designs (2.1, 10, 21, 35 Ah); "
        "a 'battery' is the unit tested (cell or module)", "assumption",
        "2.1 Ah", "50 Ah", "mean capacity of a retired battery", allow_zero=False,
    )
    nominal_voltage: Quantity = _param(
        "3.6 V", "V",
        "assumption: nominal voltage of an NMC/LMO cell (LFP: 3.2 V), used to turn retired GWh into "
        "a number of batteries", "assumption",
        "3.2 V", "3.7 V", "nominal voltage", allow_zero=False,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            meta = f.metadata
            q = _as_quantity(f.name, getattr(self, f.name), meta["unit"], allow_zero=meta["allow_zero"],
                             upper=meta["upper"])
            if np.ndim(q.magnitude) != 0:
                raise ValueError(f"{f.name}: expected a single value, got {q!r}")
            object.__setattr__(self, f.name, Q_(float(q.magnitude), meta["unit"] or "dimensionless"))

    # ----------------------------------------------------------------- derived and metadata

    @property
    def n_batteries_2030(self) -> float:
        """Batteries retired worldwide in 2030: retired capacity / (mean capacity x nominal voltage)."""
        return float((self.retired_energy_2030 / (self.mean_capacity * self.nominal_voltage)).to("").magnitude)

    @property
    def kg_per_usd(self) -> float:
        """Carbon intensity / price (kg CO2 per USD of electricity); the paper's figures imply 7.31."""
        return float((self.carbon_intensity / self.electricity_price).to("kg/USD").magnitude)

    @property
    def sources(self) -> dict[str, dict[str, str]]:
        """``{name: {"value", "unit", "kind", "source", "low", "high", "label"}}`` for every parameter."""
        out = {}
        for f in dataclasses.fields(self):
            q = getattr(self, f.name)
            out[f.name] = {
                "label": f.metadata["label"],
                "value": float(q.magnitude),
                "unit": f.metadata["unit"] or "dimensionless",
                "kind": f.metadata["kind"],
                "source": f.metadata["source"],
                "low": f.metadata["low"],
                "high": f.metadata["high"],
            }
        return out

    def table(self) -> pd.DataFrame:
        """The parameters as a table: label, value, unit, kind, source, low, high."""
        return pd.DataFrame.from_dict(self.sources, orient="index").rename_axis("parameter").reset_index()

    def replace(self, **changes: Any) -> EconomicParameters:
        """A copy with some values changed (validated like the constructor)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: each parameter's value, unit, kind and source."""
        return {k: {kk: v[kk] for kk in ("value", "unit", "kind", "source")} for k, v in self.sources.items()}


# --------------------------------------------------------------------------- workstep files

_WS_COLUMNS = {
    "循环步骤号": "level",
    "工步类型": "step_type",
    "状态": "state",
    "结果": "result",
    "起始电压(V)": "v_start",
    "结束电压(V)": "v_end",
    "起始电流(A)": "current_a",
    "充电容量(Ah)": "charge_ah",
    "放电容量(Ah)": "discharge_ah",
    "充电能量(Wh)": "charge_wh",
    "放电能量(Wh)": "discharge_wh",
    "持续时间(h:min:s:ms)": "duration",
    "绝对时间": "start",
    "结束时间": "end",
}
_KIND = {"充电": "charge", "放电": "discharge", "其它": "rest"}
_NAME_RE = re.compile(r"_C_(?P<cap>[\d.]+)_B_.*_SOC_(?P<lo>\d+)-(?P<hi>\d+)_")


def _parse_name(path: Path) -> tuple[float | None, int | None]:
    m = _NAME_RE.search(path.name)
    return (float(m["cap"]), int(m["lo"])) if m else (None, None)


def read_workstep(path: str | Path) -> pd.DataFrame:
    """Read a PulseBat workstep-layer sheet into tidy English columns, one row per tester step.

    Columns: ``step`` (0-based row), ``level`` (0 = capacity calibration, k = k-th SOC level),
    ``kind`` (charge/discharge/rest), ``truncated`` (the tester cut the step short, e.g. at the
    protection voltage), ``current_a``, ``charge_ah``, ``discharge_ah``, ``charge_wh``,
    ``discharge_wh`` (both positive), ``duration_s``, ``start``, ``end`` (timestamps),
    ``v_start``, ``v_end``.
    """
    path = Path(path)
    raw = pd.read_excel(path)
    missing = [c for c in _WS_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path.name}: not a workstep-layer sheet; missing column(s) {missing}")
    df = raw[list(_WS_COLUMNS)].rename(columns=_WS_COLUMNS)
    kinds = df["step_type"].astype(str).str.strip().map(_KIND)
    if kinds.isna().any():
        i = int(np.flatnonzero(kinds.isna().to_numpy())[0])
        raise ValueError(f"{path.name}: row {i + 2}: unknown step type {df['step_type'].iloc[i]!r}; expected 充电/放电/其它")
    out = pd.DataFrame({
        "step": np.arange(len(df)),
        "level": pd.to_numeric(df["level"], errors="raise").astype(int),
        "kind": kinds,
        "truncated": df["result"].astype(str).str.strip() != "完成",
        "current_a": pd.to_numeric(df["current_a"]),
        "charge_ah": pd.to_numeric(df["charge_ah"]).abs(),
        "discharge_ah": pd.to_numeric(df["discharge_ah"]).abs(),
        "charge_wh": pd.to_numeric(df["charge_wh"]).abs(),
        "discharge_wh": pd.to_numeric(df["discharge_wh"]).abs(),
        "duration_s": pd.to_timedelta(df["duration"].astype(str).str.strip()).dt.total_seconds(),
        "start": pd.to_datetime(df["start"]),
        "end": pd.to_datetime(df["end"]),
        "v_start": pd.to_numeric(df["v_start"]),
        "v_end": pd.to_numeric(df["v_end"]),
    })
    for col in ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh", "duration_s"):
        if out[col].isna().any():
            i = int(np.flatnonzero(out[col].isna().to_numpy())[0])
            raise ValueError(f"{path.name}: row {i + 2}: {col} is missing")
    return out


def calibrated_capacity(path: str | Path) -> Quantity:
    """The battery's calibrated capacity: the discharge capacity of the calibration CC discharge (Ah)."""
    path = Path(path)
    steps = read_workstep(path)
    dis = steps[(steps["level"] == 0) & (steps["kind"] == "discharge")]
    if dis.empty:
        raise ValueError(f"{path.name}: no calibration discharge step (level 0)")
    return Q_(float(dis["discharge_ah"].iloc[0]), "Ah")


def _check_layout(steps: pd.DataFrame, source: str) -> None:
    calib = steps[steps["level"] == 0]
    if len(calib) != _CALIBRATION_STEPS:
        raise ValueError(f"{source}: expected {_CALIBRATION_STEPS} calibration steps, found {len(calib)}")
    for level, grp in steps[steps["level"] > 0].groupby("level"):
        if len(grp) != _STEPS_PER_LEVEL:
            raise ValueError(f"{source}: SOC level {level} has {len(grp)} steps, expected {_STEPS_PER_LEVEL} "
                             "(2 conditioning + 10 widths x 5 amplitudes x 4)")
        kinds = grp["kind"].to_numpy()
        if kinds[0] != "charge" or kinds[1] != "rest":
            raise ValueError(f"{source}: SOC level {level} does not start with a conditioning charge and a rest")


def measure_level_cost(
    path: str | Path,
    *,
    nominal_ah: float | None = None,
    soc_range: tuple[int, int] = (5, 50),
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
    """
    path = Path(path)
    steps = read_workstep(path)
    _check_layout(steps, path.name)
    cap, soc_lo = _parse_name(path)
    if nominal_ah is None:
        if cap is None:
            raise ValueError(f"{path.name}: cannot read the nominal capacity from the name; pass nominal_ah")
        nominal_ah = cap
    nominal_ah = float(_as_quantity("nominal_ah", Q_(nominal_ah, "Ah") if not isinstance(nominal_ah, Quantity) else nominal_ah,
                                    "Ah", allow_zero=False).magnitude)
    soc_lo = 5 if soc_lo is None else soc_lo
    keep_widths = None
    if pulse_widths_s is not None:
        keep_widths = {float(w) for w in pulse_widths_s}
        unknown = keep_widths - set(PULSE_WIDTHS_S)
        if unknown:
            raise ValueError(f"pulse_widths_s: {sorted(unknown)} not in the protocol's widths {PULSE_WIDTHS_S}")

    rows = []
    for level, grp in steps[steps["level"] > 0].groupby("level", sort=True):
        soc = soc_lo + 5 * (int(level) - 1)
        if not soc_range[0] <= soc <= soc_range[1]:
            continue
        grp = grp.reset_index(drop=True)
        # the tester's switching gap between steps: the median over the level, so that a pause
        # (a step cut short by hand, an operator intervention) does not count as protocol time
        gaps = (grp["start"].iloc[1:].to_numpy() - grp["end"].iloc[:-1].to_numpy()) / np.timedelta64(1, "s")
        gap_s = float(np.median(gaps)) if len(gaps) else 0.0
        position = np.arange(len(grp)) - _CONDITIONING_STEPS
        width = np.full(len(grp), np.nan)
        pulse = position >= 0
        width[pulse] = np.asarray(PULSE_WIDTHS_S)[position[pulse] // (_AMPLITUDES_PER_WIDTH * _STEPS_PER_PULSE)]
        mask = np.ones(len(grp), dtype=bool)
        if keep_widths is not None:
            mask = ~pulse | np.isin(width, list(keep_widths))
        g = grp[mask]
        cond = grp.iloc[0]
        step_time_s = float(g["duration_s"].sum())
        rows.append({
            "soc_pct": soc,
            "level": int(level),
            "energy_in_wh": float(g["charge_wh"].sum()),
            "energy_out_wh": float(g["discharge_wh"].sum()),
            "conditioning_wh": float(cond["charge_wh"]),
            "pulse_in_wh": float(g["charge_wh"].sum() - cond["charge_wh"]),
            "charge_ah": float(g["charge_ah"].sum()),
            "discharge_ah": float(g["discharge_ah"].sum()),
            "step_time_h": step_time_s / 3600.0,
            "tester_time_h": (step_time_s + gap_s * len(g)) / 3600.0,
            "n_steps": int(len(g)),
            "n_truncated": int(g["truncated"].sum()),
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


# --------------------------------------------------------------------------- per-level cost


@dataclass(frozen=True)
class LevelCost:
    """Measured cost of one SOC level, per Ah of nominal capacity (energy) and per battery (time)."""

    energy_in_per_ah: Quantity  # Wh/Ah: charge energy into the battery per Ah nominal per level
    energy_out_per_ah: Quantity  # Wh/Ah: energy the pulses take back out
    tester_time: Quantity  # h: channel occupation per level (independent of capacity)
    label: str = "measured"

    def __post_init__(self) -> None:
        object.__setattr__(self, "energy_in_per_ah", _as_quantity("energy_in_per_ah", self.energy_in_per_ah, "Wh/Ah"))
        object.__setattr__(self, "energy_out_per_ah", _as_quantity("energy_out_per_ah", self.energy_out_per_ah, "Wh/Ah"))
        object.__setattr__(self, "tester_time", _as_quantity("tester_time", self.tester_time, "h"))

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


def cost_per_level(capacity: Quantity, params: EconomicParameters, level: LevelCost) -> dict[str, Quantity]:
    """Energy, time, money and CO2 of measuring one battery of ``capacity`` at one SOC level.

    Returns quantities ``energy_in`` and ``energy_out`` (Wh, at the battery), ``losses`` (Wh,
    charger losses), ``standby`` (Wh), ``grid_energy`` (Wh drawn from the grid), ``tester_time`` (h),
    ``cost`` (USD) and ``co2`` (kg).
    """
    capacity = _as_quantity("capacity", capacity, "Ah", allow_zero=False)
    e_in = (level.energy_in_per_ah * capacity).to("Wh")
    e_out = (level.energy_out_per_ah * capacity).to("Wh")
    eta = params.charger_efficiency.to("").magnitude
    rec = params.discharge_recovery.to("").magnitude
    standby = (params.standby_power * level.tester_time).to("Wh")
    from_grid_for_charge = e_in / eta
    returned = rec * eta * e_out
    grid = (from_grid_for_charge - returned + standby).to("Wh")
    return {
        "energy_in": e_in,
        "energy_out": e_out,
        "losses": (from_grid_for_charge - e_in).to("Wh"),
        "returned": returned.to("Wh"),
        "standby": standby,
        "grid_energy": grid,
        "tester_time": level.tester_time.to("h"),
        "cost": (grid * params.electricity_price).to("USD"),
        "co2": (grid * params.carbon_intensity).to("kg"),
    }


def design_costs(designs: Mapping[str, tuple[Any, LevelCost]], params: EconomicParameters) -> pd.DataFrame:
    """Cost of one SOC level for several battery designs.

    ``designs`` maps a name to ``(nominal capacity, LevelCost)``: the capacity as a quantity in Ah
    and the measured per-Ah level cost to scale (the same chemistry's file where there is one).
    Columns: ``design``,
    ``capacity_ah``, ``basis`` (the LevelCost label), ``energy_in_wh``, ``energy_out_wh``,
    ``grid_wh``, ``tester_time_h``, ``cost_usd``, ``co2_kg`` per battery and level.
    """
    rows = []
    for name, (cap, lc) in designs.items():
        cap_q = _as_quantity(f"capacity of {name}", cap, "Ah", allow_zero=False)
        per = cost_per_level(cap_q, params, lc)
        rows.append({"design": name, "capacity_ah": float(cap_q.to("Ah").magnitude), "basis": lc.label,
                     "energy_in_wh": float(per["energy_in"].to("Wh").magnitude),
                     "energy_out_wh": float(per["energy_out"].to("Wh").magnitude),
                     "grid_wh": float(per["grid_energy"].to("Wh").magnitude),
                     "tester_time_h": float(per["tester_time"].to("h").magnitude),
                     "cost_usd": float(per["cost"].to("USD").magnitude),
                     "co2_kg": float(per["co2"].to("kg").magnitude)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- cases and savings


def levels_saved(train_soc: Sequence[float], all_soc: Sequence[int] = SOC_LEVELS) -> int:
    """Levels a case does not measure: ``len(all_soc) - len(train_soc)``.

    ``train_soc`` in percent (5 ... 50) or as fractions (0.05 ... 0.5); each must be one of
    ``all_soc``.
    """
    vals = [float(v) for v in train_soc]
    if vals and max(vals) <= 1.0:
        vals = [v * 100.0 for v in vals]
    pct = {int(round(v)) for v in vals}
    if any(abs(v - round(v)) > 1e-6 for v in vals) or not pct <= set(all_soc):
        raise ValueError(f"train_soc {list(train_soc)!r}: every level must be one of {list(all_soc)} (percent)")
    return len(all_soc) - len(pct)


def case_table(cases: Mapping[int, Sequence[float]]) -> pd.DataFrame:
    """One row per case: ``case``, ``train_soc`` (text), ``n_train``, ``n_saved``."""
    rows = [{"case": int(c), "train_soc": ", ".join(str(int(round(v * 100 if max(soc) <= 1 else v))) for v in soc),
             "n_train": len(soc), "n_saved": levels_saved(soc)} for c, soc in cases.items()]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Savings:
    """What a case saves: grid energy, electricity cost, CO2 and tester time (scalars or arrays)."""

    energy: Quantity
    cost: Quantity
    co2: Quantity
    tester_time: Quantity

    def magnitudes(self) -> dict[str, Any]:
        """``{"energy_kwh", "cost_usd", "co2_kg", "tester_h"}`` as plain numbers (or arrays)."""
        return {
            "energy_kwh": self.energy.to("kWh").magnitude,
            "cost_usd": self.cost.to("USD").magnitude,
            "co2_kg": self.co2.to("kg").magnitude,
            "tester_h": self.tester_time.to("h").magnitude,
        }


def savings(
    n_levels_saved: int,
    n_batteries: Any,
    params: EconomicParameters,
    level: LevelCost,
    capacity: Quantity | None = None,
) -> Savings:
    """Savings of not measuring ``n_levels_saved`` levels on each of ``n_batteries`` batteries.

    Linear in ``n_batteries`` (a count, scalar or array); zero when no level is saved.
    ``capacity`` defaults to ``params.mean_capacity``.
    """
    k = _levels("n_levels_saved", n_levels_saved)
    n = _count("n_batteries", n_batteries)
    per = cost_per_level(params.mean_capacity if capacity is None else capacity, params, level)
    factor = k * np.asarray(n, dtype=float)
    if np.ndim(factor) == 0:
        factor = float(factor)
    return Savings(
        energy=(per["grid_energy"] * factor).to("kWh"),
        cost=(per["cost"] * factor).to("USD"),
        co2=(per["co2"] * factor).to("kg"),
        tester_time=(per["tester_time"] * factor).to("h"),
    )


def scenario(
    cases: Mapping[int, Sequence[float]],
    params: EconomicParameters,
    level: LevelCost,
    n_batteries: Any | None = None,
) -> pd.DataFrame:
    """Savings of every case for ``n_batteries`` (default: the 2030 retirement, ``params.n_batteries_2030``).

    Columns: ``case``, ``train_soc``, ``n_saved``, ``n_batteries``, ``energy_kwh``, ``cost_usd``,
    ``co2_kg``, ``tester_h``, ``tester_h_per_battery``.
    """
    n = params.n_batteries_2030 if n_batteries is None else _count("n_batteries", n_batteries)
    table = case_table(cases)
    rows = []
    for _, r in table.iterrows():
        s = savings(int(r["n_saved"]), n, params, level).magnitudes()
        rows.append({"case": int(r["case"]), "train_soc": r["train_soc"], "n_saved": int(r["n_saved"]),
                     "n_batteries": float(n), **{k: float(v) for k, v in s.items()},
                     "tester_h_per_battery": float(int(r["n_saved"]) * level.tester_time.to("h").magnitude)})
    return pd.DataFrame(rows)


def savings_curve(
    cases: Mapping[int, Sequence[float]],
    n_batteries: Sequence[float],
    params: EconomicParameters,
    level: LevelCost,
) -> pd.DataFrame:
    """Long table for the retirement-scale plot: one row per (case, number of batteries)."""
    n = np.atleast_1d(_count("n_batteries", n_batteries))
    frames = []
    for case, soc in cases.items():
        s = savings(levels_saved(soc), n, params, level).magnitudes()
        frames.append(pd.DataFrame({"case": int(case), "n_saved": levels_saved(soc), "n_batteries": n,
                                    **{k: np.broadcast_to(v, n.shape) for k, v in s.items()}}))
    return pd.concat(frames, ignore_index=True)


def time_saved_per_battery(
    cases: Mapping[int, Sequence[float]],
    levels: Mapping[str, LevelCost],
) -> pd.DataFrame:
    """Tester hours saved per battery for every case under each protocol in ``levels``.

    ``levels`` maps a protocol label (e.g. "full sequence", "5 s pulses only") to its
    :class:`LevelCost`. Columns: ``case``, ``n_saved``, ``protocol``, ``hours_per_battery``,
    ``minutes_per_level``.
    """
    rows = []
    for case, soc in cases.items():
        k = levels_saved(soc)
        for label, lc in levels.items():
            t = float(lc.tester_time.to("h").magnitude)
            rows.append({"case": int(case), "n_saved": k, "protocol": label,
                         "hours_per_battery": k * t, "minutes_per_level": 60.0 * t})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the paper's figures


def reproduce_paper(
    params: EconomicParameters,
    level: LevelCost,
    n_levels_saved: int,
    *,
    paper_usd: float = PAPER_USD,
    paper_kg: float = PAPER_KG_CO2,
) -> dict[str, Any]:
    """Which parameter values make the 2030 savings reach the paper's USD and kg CO2.

    Every answer changes one parameter and keeps the others at ``params``. Savings are linear in
    the price, the carbon intensity, the number of batteries and the grid energy per
    battery-level, so those are solved by a factor; the standby power, charger efficiency and
    mean capacity enter non-linearly and are solved in closed form (``nan`` when no value
    reaches the target). The price and carbon intensity are solved together too: the paper's two
    figures fix their ratio at ``paper_kg / paper_usd`` (7.31 kg CO2 per USD).

    Returns a dict: ``baseline`` (USD, kg, kWh, batteries), ``ratio`` (the pinned kg/USD, the
    price it implies at the default carbon intensity, the carbon intensity it implies at the
    default price, and the grid energy the paper's figures imply in each pairing), ``knobs`` (a
    DataFrame: parameter, unit, default, required_for_usd, required_for_co2, factor_usd,
    factor_co2) and ``full_charges_per_retired_battery`` (implied energy / energy capacity retired).
    """
    k = _levels("n_levels_saved", n_levels_saved)
    if k == 0:
        raise ValueError("n_levels_saved: a case with no level saved saves nothing; no parameter reaches the paper")
    n = params.n_batteries_2030
    base = savings(k, n, params, level).magnitudes()
    f_usd = paper_usd / base["cost_usd"]
    f_kg = paper_kg / base["co2_kg"]
    per = cost_per_level(params.mean_capacity, params, level)
    grid_wh = float(per["grid_energy"].to("Wh").magnitude)
    e_in = float(per["energy_in"].to("Wh").magnitude)
    e_out = float(per["energy_out"].to("Wh").magnitude)
    t_h = float(level.tester_time.to("h").magnitude)
    eta = float(params.charger_efficiency.magnitude)
    rec = float(params.discharge_recovery.magnitude)
    p_w = float(params.standby_power.to("W").magnitude)
    standby_wh = p_w * t_h
    charge_part = e_in / eta - rec * eta * e_out

    def standby_for(f: float) -> float:  # W reaching f x grid energy
        need = (f * grid_wh - charge_part) / t_h
        return need if need >= 0 else math.nan

    def efficiency_for(f: float) -> float:  # charger efficiency reaching f x grid energy (rec = 0 branch exact)
        target = f * grid_wh - standby_wh
        # e_in/eta - rec*eta*e_out = target  ->  rec*e_out*eta^2 + target*eta - e_in = 0
        if rec == 0 or e_out == 0:
            eta_req = e_in / target if target > 0 else math.nan
        else:
            a, b, c = rec * e_out, target, -e_in
            eta_req = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
        return eta_req if 0 < eta_req <= 1 else math.nan

    # mean capacity: total = N_ah/V * levels * (w_in/eta - rec*eta*w_out + P t / cap) * price
    w_per_ah = charge_part / float(params.mean_capacity.to("Ah").magnitude)

    def capacity_for(f: float) -> float:
        cap0 = float(params.mean_capacity.to("Ah").magnitude)
        lhs = f * (w_per_ah + standby_wh / cap0) - w_per_ah  # = P t / cap_required
        return standby_wh / lhs if lhs > 0 and standby_wh > 0 else math.nan

    knobs = [
        ("n_batteries_2030", "batteries", n, n * f_usd, n * f_kg),
        ("retired_energy_2030", "GWh", params.retired_energy_2030.to("GWh").magnitude,
         params.retired_energy_2030.to("GWh").magnitude * f_usd, params.retired_energy_2030.to("GWh").magnitude * f_kg),
        ("grid_energy_per_battery_level", "Wh", grid_wh, grid_wh * f_usd, grid_wh * f_kg),
        ("electricity_price", "USD/kWh", params.electricity_price.magnitude, params.electricity_price.magnitude * f_usd, math.nan),
        ("carbon_intensity", "kg/kWh", params.carbon_intensity.magnitude, math.nan, params.carbon_intensity.magnitude * f_kg),
        ("standby_power", "W", p_w, standby_for(f_usd), standby_for(f_kg)),
        ("charger_efficiency", "dimensionless", eta, efficiency_for(f_usd), efficiency_for(f_kg)),
        ("mean_capacity", "Ah", params.mean_capacity.to("Ah").magnitude, capacity_for(f_usd), capacity_for(f_kg)),
    ]
    knob_df = pd.DataFrame(knobs, columns=["parameter", "unit", "default", "required_for_usd", "required_for_co2"])
    knob_df["factor_usd"] = knob_df["required_for_usd"] / knob_df["default"]
    knob_df["factor_co2"] = knob_df["required_for_co2"] / knob_df["default"]

    ratio = paper_kg / paper_usd
    price = float(params.electricity_price.to("USD/kWh").magnitude)
    ci = float(params.carbon_intensity.to("kg/kWh").magnitude)
    energy_at_price = paper_usd / price  # kWh, keeping the default price (carbon intensity = ratio x price)
    energy_at_ci = paper_kg / ci  # kWh, keeping the default carbon intensity (price = ci / ratio)
    retired_kwh = float(params.retired_energy_2030.to("kWh").magnitude)
    return {
        "n_levels_saved": k,
        "baseline": {"cost_usd": float(base["cost_usd"]), "co2_kg": float(base["co2_kg"]),
                     "energy_kwh": float(base["energy_kwh"]), "tester_h": float(base["tester_h"]), "n_batteries": n},
        "ratio": {
            "kg_per_usd_paper": ratio,
            "kg_per_usd_default": params.kg_per_usd,
            "price_for_default_intensity_usd_per_kwh": ci / ratio,
            "intensity_for_default_price_kg_per_kwh": ratio * price,
            "energy_kwh_at_default_price": energy_at_price,
            "energy_kwh_at_default_intensity": energy_at_ci,
        },
        "energy_factor_range": (min(energy_at_price, energy_at_ci) / base["energy_kwh"],
                                max(energy_at_price, energy_at_ci) / base["energy_kwh"]),
        "full_charges_per_retired_battery": (energy_at_price / retired_kwh, energy_at_ci / retired_kwh),
        "knobs": knob_df,
    }


# --------------------------------------------------------------------------- sensitivity


def sensitivity(
    params: EconomicParameters,
    level: LevelCost,
    n_levels_saved: int,
    *,
    factor: float | None = None,
    ranges: Mapping[str, tuple[Any, Any]] | None = None,
    n_batteries: Any | None = None,
) -> pd.DataFrame:
    """One-at-a-time sensitivity of the 2030 savings, for a tornado chart.

    Each parameter goes to its ``low`` and ``high`` value (from the field metadata; or
    ``value x (1 -/+ factor)``, capped at 1 for fractions, when ``factor`` is given; ``ranges``
    overrides single parameters with quantities), the others stay at ``params``. The number of
    batteries follows ``params`` (retired capacity, mean capacity, voltage) unless ``n_batteries``
    fixes it.

    Columns: ``parameter``, ``label``, ``unit``, ``kind``, ``base``, ``low``, ``high``, and for the
    metrics ``cost_usd``, ``co2_kg``, ``energy_kwh``: ``<metric>_base``, ``<metric>_low``,
    ``<metric>_high``; sorted by the USD swing, largest first.
    """
    k = _levels("n_levels_saved", n_levels_saved)
    if factor is not None and not (0 < float(factor) < 1):
        raise ValueError(f"factor: {factor!r} must lie in (0, 1), e.g. 0.5 for -/+50 %")

    def run(p: EconomicParameters) -> dict[str, float]:
        n = p.n_batteries_2030 if n_batteries is None else n_batteries
        return {m: float(v) for m, v in savings(k, n, p, level).magnitudes().items()}

    base = run(params)
    rows = []
    for f in dataclasses.fields(params):
        meta = f.metadata
        unit = meta["unit"] or "dimensionless"
        val = getattr(params, f.name)
        if ranges is not None and f.name in ranges:
            lo, hi = (_as_quantity(f.name, q, meta["unit"], upper=meta["upper"]) for q in ranges[f.name])
        elif factor is not None:
            lo, hi = val * (1 - factor), val * (1 + factor)
            if meta["upper"] is not None:
                hi = Q_(min(hi.magnitude, meta["upper"]), val.units)
        else:
            lo, hi = Q_(meta["low"]), Q_(meta["high"])
        lo_run, hi_run = run(params.replace(**{f.name: lo})), run(params.replace(**{f.name: hi}))
        row = {"parameter": f.name, "label": meta["label"], "unit": unit, "kind": meta["kind"],
               "base": float(val.magnitude), "low": float(lo.to(unit).magnitude), "high": float(hi.to(unit).magnitude)}
        for m in ("cost_usd", "co2_kg", "energy_kwh"):
            row[f"{m}_base"], row[f"{m}_low"], row[f"{m}_high"] = base[m], lo_run[m], hi_run[m]
        rows.append(row)
    out = pd.DataFrame(rows)
    swing = (out["cost_usd_high"] - out["cost_usd_low"]).abs()
    return out.assign(_swing=swing).sort_values("_swing", ascending=False).drop(columns="_swing").reset_index(drop=True)
