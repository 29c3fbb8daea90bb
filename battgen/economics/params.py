"""Every assumed or sourced number of the economic estimate, each a pint quantity with its source.

:class:`EconomicParameters` holds one field per parameter (electricity price, carbon intensity,
charger efficiency, ...), each with a unit, a source or the label *assumption*, and a plausible
low/high range for the sensitivity chart (:func:`battgen.economics.paper.sensitivity`). The unit
registry (``ureg``, ``Q_``) and the checks that refuse unit-less, wrong-unit or negative inputs
live here too, so that every economics module validates the same way. What the protocol costs
a real battery is measured, not assumed: :mod:`battgen.economics.measured`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pint

__all__ = ["ureg", "Q_", "Quantity", "EconomicParameters", "as_quantity", "as_count"]

# --------------------------------------------------------------------------- units

ureg = pint.get_application_registry()
if "USD" not in ureg:  # the money unit; defined once per process
    try:
        ureg.define("USD = [currency]")
    except pint.errors.RedefinitionError:  # pragma: no cover - defined concurrently elsewhere
        pass
Q_ = ureg.Quantity
Quantity = pint.Quantity

# --------------------------------------------------------------------------- validation


def as_quantity(name: str, value: Any, unit: str, *, allow_zero: bool = True, upper: float | None = None) -> Quantity:
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


def as_count(name: str, value: Any) -> np.ndarray | float:
    """A non-negative count (scalar or array); a pint quantity must be dimensionless."""
    if isinstance(value, Quantity):
        value = as_quantity(name, value, "").magnitude
    if isinstance(value, bool) or value is None:
        raise TypeError(f"{name}: expected a non-negative number (a count), got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a non-negative number (a count), got {value!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name}: {value!r} must be finite and non-negative (a count of batteries)")
    return float(arr) if arr.ndim == 0 else arr


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
            q = as_quantity(f.name, getattr(self, f.name), meta["unit"], allow_zero=meta["allow_zero"],
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
