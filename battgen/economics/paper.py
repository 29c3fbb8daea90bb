"""The paper's 2030 figure: which parameter values reach it, and how sensitive the estimate is.

Tao et al. (2024) state that generating the unmeasured SOC levels "would save 4.9 billion USD in
electricity costs and 35.8 billion kg CO2 emissions ... for a 2030 worldwide battery retirement
scenario", without publishing the parameter values behind the figure. :func:`reproduce_paper`
solves, one parameter at a time, for the value that makes the cost model
(:mod:`battgen.economics.model`) reach the paper's figures; :func:`sensitivity` swings every
parameter over its documented range for a tornado chart.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from battgen.economics.measured import LevelCost
from battgen.economics.model import as_level_count, cost_per_level, savings
from battgen.economics.params import Q_, EconomicParameters, as_quantity

__all__ = ["PAPER_KG_CO2", "PAPER_KG_PER_USD", "PAPER_USD", "reproduce_paper", "sensitivity"]

PAPER_USD = 4.9e9
"""Electricity cost the paper says is saved in its 2030 scenario (USD)."""
PAPER_KG_CO2 = 35.8e9
"""CO2 the paper says is saved in its 2030 scenario (kg)."""
PAPER_KG_PER_USD = PAPER_KG_CO2 / PAPER_USD
"""7.31 kg CO2 per USD: pins the paper's carbon intensity to price ratio."""


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
    k = as_level_count("n_levels_saved", n_levels_saved)
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
    k = as_level_count("n_levels_saved", n_levels_saved)
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
            lo, hi = (as_quantity(f.name, q, meta["unit"], upper=meta["upper"]) for q in ranges[f.name])
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
