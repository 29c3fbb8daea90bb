"""battgen.economics: measured per-level energy, linear savings, validation of units and signs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battgen import economics as ec
from battgen.data import fetch
from battgen.protocol import ALL_SOC, CASES, PULSE_WIDTHS_S

LMO_KEY = "workstep/LMO_C_10_B_2_SOC_5-55_Part_1-1_ID_PIP15827A00221240.xlsx"
NMC_KEY = "workstep/NMC_C_21_B_6_SOC_5-90_Part_1-2_ID_02LCC02100101A87Y0052124.xlsx"


@pytest.fixture(scope="module")
def lmo_path(data_dir: Path) -> Path:
    return fetch(LMO_KEY, data_dir, download=False)  # a missing file fails the test, never skips it


@pytest.fixture(scope="module")
def nmc_path(data_dir: Path) -> Path:
    return fetch(NMC_KEY, data_dir, download=False)


@pytest.fixture()
def level() -> ec.LevelCost:
    # a synthetic, round level cost: 0.25 Wh/Ah in, 0.08 Wh/Ah out, 0.75 h per level
    return ec.LevelCost(ec.Q_(0.25, "Wh/Ah"), ec.Q_(0.08, "Wh/Ah"), ec.Q_(0.75, "h"), "synthetic")


@pytest.fixture()
def params() -> ec.EconomicParameters:
    return ec.EconomicParameters()


# --------------------------------------------------------------------------- measured energy


def test_level_energy_equals_hand_calculation(lmo_path):
    """SOC 5 % of the LMO file: rows 5..206 (after 5 calibration rows, 202 steps per level)."""
    raw = pd.read_excel(lmo_path)
    rows = raw.iloc[5:5 + 202]
    assert (rows["循环步骤号"] == 1).all()  # the layout of SOURCES.md: these rows are the first level
    hand_in = rows["充电能量(Wh)"].abs().sum()
    hand_out = rows["放电能量(Wh)"].abs().sum()
    hand_steps_h = pd.to_timedelta(rows["持续时间(h:min:s:ms)"]).dt.total_seconds().sum() / 3600
    table = ec.measure_level_cost(lmo_path)
    first = table.set_index("soc_pct").loc[5]
    assert first["energy_in_wh"] == pytest.approx(hand_in, abs=1e-9)
    assert first["energy_out_wh"] == pytest.approx(hand_out, abs=1e-9)
    assert first["step_time_h"] == pytest.approx(hand_steps_h, abs=1e-9)
    # the same numbers written out: conditioning 1.4953 Wh + pulses; 3 min + 10 min + 10 widths x 5 amps x 2 x 16 x width
    assert first["energy_in_wh"] == pytest.approx(2.1924, abs=1e-4)
    assert first["conditioning_wh"] == pytest.approx(1.4953, abs=1e-4)
    widths = sum(PULSE_WIDTHS_S)
    assert first["step_time_h"] == pytest.approx((180 + 600 + 5 * 2 * 16 * widths) / 3600, abs=1e-6)
    assert first["energy_in_wh_per_ah"] == pytest.approx(first["energy_in_wh"] / 10.0)
    assert first["tester_time_h"] >= first["step_time_h"]


def test_level_table_shape_and_charge_throughput(lmo_path, nmc_path):
    lmo, nmc = ec.measure_level_cost(lmo_path), ec.measure_level_cost(nmc_path)
    assert list(lmo["soc_pct"]) == list(ALL_SOC) == list(nmc["soc_pct"])
    # the protocol moves 5 % of nominal capacity (conditioning) plus the pulses: same Ah/Ah for both designs
    clean = lmo[lmo["n_truncated"] == 0]
    assert clean["charge_ah_per_ah"].mean() == pytest.approx(nmc["charge_ah_per_ah"].mean(), rel=0.01)
    # energy in = conditioning + positive pulses, energy out = negative pulses (charge-neutral pulses)
    assert np.allclose(nmc["energy_in_wh"], nmc["conditioning_wh"] + nmc["pulse_in_wh"])
    assert (nmc["energy_out_wh"] < nmc["pulse_in_wh"]).all()


def test_pulse_width_filter_keeps_conditioning(lmo_path):
    full = ec.measure_level_cost(lmo_path)
    five = ec.measure_level_cost(lmo_path, pulse_widths_s=(5,))
    assert (five["n_steps"] == 2 + 5 * 4).all()
    assert np.allclose(five["conditioning_wh"], full["conditioning_wh"])
    assert (five["energy_in_wh"] < full["energy_in_wh"]).all()
    assert five["step_time_h"].iloc[0] == pytest.approx((180 + 600 + 5 * 2 * (5 + 75)) / 3600)
    with pytest.raises(ValueError, match="pulse_widths_s"):
        ec.measure_level_cost(lmo_path, pulse_widths_s=(4,))


def test_level_cost_pools_batteries(lmo_path, nmc_path):
    lmo, nmc = ec.measure_level_cost(lmo_path), ec.measure_level_cost(nmc_path)
    lc = ec.LevelCost.from_tables(lmo, nmc)
    expected = (lmo["energy_in_wh_per_ah"].mean() + nmc["energy_in_wh_per_ah"].mean()) / 2
    assert lc.energy_in_per_ah.to("Wh/Ah").magnitude == pytest.approx(expected)
    per = ec.cost_per_level(ec.Q_(21, "Ah"), ec.EconomicParameters(), ec.LevelCost.from_tables(nmc))
    assert per["energy_in"].to("Wh").magnitude == pytest.approx(nmc["energy_in_wh"].mean())


# --------------------------------------------------------------------------- savings


def test_savings_linear_in_retirement_volume(params, level):
    n = np.array([1e3, 1e6, 2e6, 1e9])
    s = ec.savings(6, n, params, level).magnitudes()
    one = ec.savings(6, 1, params, level).magnitudes()
    for key in ("energy_kwh", "cost_usd", "co2_kg", "tester_h"):
        assert np.allclose(s[key], n * one[key], rtol=1e-12)
    # and additive: a + b batteries save what a and b save separately
    a, b = ec.savings(6, 3e6, params, level), ec.savings(6, 4e6, params, level)
    ab = ec.savings(6, 7e6, params, level)
    assert (a.cost + b.cost).to("USD").magnitude == pytest.approx(ab.cost.to("USD").magnitude)


def test_no_level_saved_saves_nothing(params, level):
    s = ec.savings(0, 1e9, params, level).magnitudes()
    assert all(float(v) == 0.0 for v in s.values())
    assert ec.levels_saved(ALL_SOC) == 0
    frame = ec.scenario({9: ALL_SOC}, params, level)
    assert frame.loc[0, ["energy_kwh", "cost_usd", "co2_kg", "tester_h"]].eq(0).all()
    with pytest.raises(ValueError, match="saves nothing"):
        ec.reproduce_paper(params, level, 0)


def test_levels_saved_by_case():
    assert {c: ec.levels_saved(s) for c, s in CASES.items()} == {0: 4, 1: 5, 2: 6, 3: 7, 4: 6, 5: 7, 6: 6, 7: 8}
    assert ec.levels_saved([0.05, 0.10]) == 8  # fractions work too
    with pytest.raises(ValueError, match="train_soc"):
        ec.levels_saved([5, 12])


def test_savings_by_hand(params, level):
    """One battery of 17 Ah, one level: (0.25*17/0.85 + 10 W * 0.75 h) Wh at 0.148 USD/kWh."""
    grid_wh = 0.25 * 17 / 0.85 + 10 * 0.75
    s = ec.savings(1, 1, params, level).magnitudes()
    assert s["energy_kwh"] == pytest.approx(grid_wh / 1000)
    assert s["cost_usd"] == pytest.approx(grid_wh / 1000 * 0.148)
    assert s["co2_kg"] == pytest.approx(grid_wh / 1000 * 0.481)
    assert s["tester_h"] == pytest.approx(0.75)
    recovering = params.replace(discharge_recovery=0.5)
    r = ec.savings(1, 1, recovering, level).magnitudes()
    assert r["energy_kwh"] == pytest.approx((grid_wh - 0.5 * 0.85 * 0.08 * 17) / 1000)


def test_curve_and_time_tables(params, level):
    curve = ec.savings_curve(CASES, np.logspace(3, 9, 7), params, level)
    assert len(curve) == 8 * 7
    assert curve.groupby("case")["cost_usd"].apply(lambda c: c.is_monotonic_increasing).all()
    times = ec.time_saved_per_battery(CASES, {"full": level})
    assert times.set_index("case").loc[7, "hours_per_battery"] == pytest.approx(8 * 0.75)


# --------------------------------------------------------------------------- the paper and sensitivity


def test_reproduce_paper_hits_the_target(params, level):
    out = ec.reproduce_paper(params, level, 8)
    knobs = out["knobs"].set_index("parameter")
    assert out["ratio"]["kg_per_usd_paper"] == pytest.approx(35.8 / 4.9)
    for name in ("n_batteries_2030", "standby_power", "charger_efficiency", "mean_capacity", "electricity_price"):
        value = knobs.loc[name, "required_for_usd"]
        if name == "n_batteries_2030":
            got = ec.savings(8, value, params, level).cost.to("USD").magnitude
        else:
            unit = params.sources[name]["unit"]
            got = ec.savings(8, params.replace(**{name: ec.Q_(value, unit)}).n_batteries_2030,
                             params.replace(**{name: ec.Q_(value, unit)}), level).cost.to("USD").magnitude
        assert got == pytest.approx(ec.PAPER_USD, rel=1e-9), name
    co2 = params.replace(carbon_intensity=ec.Q_(knobs.loc["carbon_intensity", "required_for_co2"], "kg/kWh"))
    assert ec.savings(8, params.n_batteries_2030, co2, level).co2.to("kg").magnitude == pytest.approx(ec.PAPER_KG_CO2)
    # pinned ratio: price x 7.31 = carbon intensity
    assert out["ratio"]["price_for_default_intensity_usd_per_kwh"] * ec.PAPER_KG_PER_USD == pytest.approx(0.481)


def test_sensitivity_brackets_baseline(params, level):
    table = ec.sensitivity(params, level, 6)
    assert set(table["parameter"]) == {f.name for f in dataclasses.fields(params)}
    base = table["cost_usd_base"].iloc[0]
    assert base == pytest.approx(ec.savings(6, params.n_batteries_2030, params, level).cost.to("USD").magnitude)
    price = table.set_index("parameter").loc["electricity_price"]
    assert price["cost_usd_low"] < base < price["cost_usd_high"]
    ci = table.set_index("parameter").loc["carbon_intensity"]
    assert ci["cost_usd_low"] == ci["cost_usd_high"] == pytest.approx(base)  # carbon does not cost money here
    by_factor = ec.sensitivity(params, level, 6, factor=0.5).set_index("parameter")
    assert by_factor.loc["charger_efficiency", "high"] == 1.0  # capped for a fraction
    with pytest.raises(ValueError, match="factor"):
        ec.sensitivity(params, level, 6, factor=1.5)


# --------------------------------------------------------------------------- validation


def test_unitless_input_raises_naming_the_unit():
    with pytest.raises(TypeError, match=r"electricity_price.*no unit.*USD/kWh"):
        ec.EconomicParameters(electricity_price=0.1)
    with pytest.raises(TypeError, match=r"standby_power.*W"):
        ec.EconomicParameters().replace(standby_power=10)
    with pytest.raises(TypeError, match="capacity"):
        ec.cost_per_level(17, ec.EconomicParameters(), ec.LevelCost(ec.Q_(0.25, "Wh/Ah"), ec.Q_(0.08, "Wh/Ah"), ec.Q_(0.75, "h")))
    with pytest.raises(TypeError, match="energy_in_per_ah"):
        ec.LevelCost(0.25, ec.Q_(0.08, "Wh/Ah"), ec.Q_(0.75, "h"))


def test_wrong_or_negative_input_raises():
    with pytest.raises(ValueError, match=r"carbon_intensity.*expected kg/kWh"):
        ec.EconomicParameters(carbon_intensity=ec.Q_(0.4, "USD/kWh"))
    with pytest.raises(ValueError, match=r"electricity_price.*negative"):
        ec.EconomicParameters(electricity_price=ec.Q_(-0.1, "USD/kWh"))
    with pytest.raises(ValueError, match=r"charger_efficiency.*above 1"):
        ec.EconomicParameters(charger_efficiency=1.2)
    with pytest.raises(ValueError, match=r"mean_capacity.*zero"):
        ec.EconomicParameters(mean_capacity=ec.Q_(0, "Ah"))
    params = ec.EconomicParameters()
    lc = ec.LevelCost(ec.Q_(0.25, "Wh/Ah"), ec.Q_(0.08, "Wh/Ah"), ec.Q_(0.75, "h"))
    with pytest.raises(ValueError, match="n_batteries"):
        ec.savings(6, -5, params, lc)
    with pytest.raises(ValueError, match="n_levels_saved"):
        ec.savings(11, 5, params, lc)
    with pytest.raises(TypeError, match="n_levels_saved"):
        ec.savings(2.5, 5, params, lc)
    with pytest.raises(TypeError, match="unknown parameter"):
        params.replace(price=ec.Q_(0.1, "USD/kWh"))


def test_units_convert_and_sources_are_documented():
    p = ec.EconomicParameters(electricity_price=ec.Q_(10, "USD/MWh"), standby_power=ec.Q_(0.01, "kW"))
    assert p.electricity_price.to("USD/kWh").magnitude == pytest.approx(0.01)
    assert p.standby_power.to("W").magnitude == pytest.approx(10)
    for name, info in ec.EconomicParameters().sources.items():
        assert info["kind"] in {"sourced", "assumption"}, name
        assert info["source"], name
        if info["kind"] == "assumption":
            assert info["source"].startswith("assumption"), name
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.electricity_price = ec.Q_(1, "USD/kWh")  # type: ignore[misc]
