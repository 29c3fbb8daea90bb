"""The cost model: what measuring one SOC level costs, and what a case saves by not measuring some.

Grid energy for one battery of capacity ``C`` at one level::

    E_grid = E_in / charger_efficiency - discharge_recovery * charger_efficiency * E_out
             + standby_power * tester_time

where ``E_in``/``E_out`` = measured energy per Ah (:class:`battgen.economics.measured.LevelCost`)
x ``C``, and the parameters come from :class:`battgen.economics.params.EconomicParameters`.
Money and CO2 are the grid energy times the electricity price and the carbon intensity. A case
saves the levels it does not measure: ``10 - len(train_soc)`` levels per battery, and
:func:`savings` is linear in the number of batteries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from battgen.economics.measured import LevelCost
from battgen.economics.params import EconomicParameters, Quantity, as_count, as_quantity
from battgen.protocol import ALL_SOC

__all__ = [
    "Savings",
    "as_level_count",
    "case_table",
    "cost_per_level",
    "design_costs",
    "levels_saved",
    "savings",
    "savings_curve",
    "scenario",
    "time_saved_per_battery",
]


def as_level_count(name: str, value: Any) -> int:
    """An integer number of SOC levels per battery, 0..10; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer number of SOC levels, got {value!r}")
    if not 0 <= int(value) <= len(ALL_SOC):
        raise ValueError(f"{name}: {value!r} is outside 0..{len(ALL_SOC)} (SOC levels per battery)")
    return int(value)


def cost_per_level(capacity: Quantity, params: EconomicParameters, level: LevelCost) -> dict[str, Quantity]:
    """Energy, time, money and CO2 of measuring one battery of ``capacity`` at one SOC level.

    Returns quantities ``energy_in`` and ``energy_out`` (Wh, at the battery), ``losses`` (Wh,
    charger losses), ``standby`` (Wh), ``grid_energy`` (Wh drawn from the grid), ``tester_time`` (h),
    ``cost`` (USD) and ``co2`` (kg).
    """
    capacity = as_quantity("capacity", capacity, "Ah", allow_zero=False)
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
        cap_q = as_quantity(f"capacity of {name}", cap, "Ah", allow_zero=False)
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


def levels_saved(train_soc: Sequence[float], all_soc: Sequence[int] = ALL_SOC) -> int:
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
    k = as_level_count("n_levels_saved", n_levels_saved)
    n = as_count("n_batteries", n_batteries)
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
    n = params.n_batteries_2030 if n_batteries is None else as_count("n_batteries", n_batteries)
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
    n = np.atleast_1d(as_count("n_batteries", n_batteries))
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
