"""SOC-invariant features: each resistance returns the resistance a synthetic pulse was built from,
relaxation differences are exact, the voltage pairs are the protocol's, and the variance shares
separate SOC from SOH on data built to do so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.data import FEATURES
from battgen.features import feature_position
from battgen.invariant import (
    RESISTANCE_KINDS,
    invariant_features,
    nominal_capacity,
    pulse_resistances,
    pulses,
    relaxation_differences,
    synthetic_pulses,
    variance_shares,
)
from battgen.protocol import LEVEL_PROGRAM, PULSE_WIDTHS_S

R_OHM = np.array([8.0, 15.0, 40.0])  # mohm
R_POLAR = np.array([3.0, 6.5, 12.0])  # mohm
OCV = np.array([3.30, 3.65, 3.90])  # V
QN = 2.1  # Ah


def test_pulses_pair_the_voltages_the_extraction_reads():
    """Every pulse's start/end voltages are, in battgen.features, the start/end of a pulse step of
    that current, and the voltage before it is the end of the step before."""
    found = pulses()
    assert [p.c_rate for p in found] == [0.5, -0.5, 1.0, -1.0, 1.5]
    for width_index in (0, len(PULSE_WIDTHS_S) - 1):
        for p in found:
            pos, which = feature_position(int(p.start[1:]), width_index)
            assert which == "u_start_v" and LEVEL_PROGRAM[pos].c_rate == p.c_rate
            assert feature_position(int(p.end[1:]), width_index) == (pos, "u_end_v")
            assert feature_position(int(p.before[1:]), width_index) == (pos - 1, "u_end_v")
            if p.rest is not None:
                rest_pos, rest_which = feature_position(int(p.rest[1:]), width_index)
                assert rest_pos == pos + 1 and rest_which == "u_start_v" and LEVEL_PROGRAM[rest_pos].kind == "rest"


def test_each_resistance_returns_the_resistance_of_the_synthetic_pulse():
    res = pulse_resistances(synthetic_pulses(OCV, R_OHM, R_POLAR, QN), QN)
    expected = {"ohm": R_OHM, "pulse": R_OHM + R_POLAR, "polar": R_POLAR, "off": R_OHM}
    assert len(res.columns) == 4 * len(pulses()) == 20  # U20 starts the rest after the +1.5 C pulse
    for p in pulses():
        for kind in RESISTANCE_KINDS:
            np.testing.assert_allclose(res[p.name(kind)].to_numpy(), expected[kind], rtol=1e-9, err_msg=p.name(kind))


def test_a_pulse_whose_rest_lies_beyond_the_features_has_no_step_off():
    assert pulses(19)[-1].rest is None and pulses(20)[-1].rest == "U20"
    assert len(pulses(18)) == 4  # the +1.5 C pulse ends at U19


def test_specific_resistance_is_ohm_ah_and_the_capacity_comes_from_the_row():
    df = synthetic_pulses(OCV, R_OHM, R_POLAR, 35.0).assign(battery="LFP35")
    assert np.allclose(nominal_capacity(df), 35.0)
    np.testing.assert_allclose(pulse_resistances(df)["r_ohm_charge_1C"], R_OHM, rtol=1e-9)
    np.testing.assert_allclose(pulse_resistances(df, specific=True)["r_ohm_charge_1C"], R_OHM * 1e-3 * 35.0, rtol=1e-9)
    with pytest.raises(ValueError, match="qn_ah"):
        nominal_capacity(df.drop(columns="battery"))
    with pytest.raises(ValueError, match="positive"):
        nominal_capacity(df, qn_ah=0.0)


def test_relaxation_differences_are_exact():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.uniform(2.5, 4.2, size=(7, 21)), columns=FEATURES)
    rel = relaxation_differences(df)
    assert list(rel.columns) == [f"dU{k}" for k in range(2, 22)]
    for k in range(2, 22):
        assert np.array_equal(rel[f"dU{k}"].to_numpy(), df[f"U{k}"].to_numpy() - df["U1"].to_numpy())


def test_an_ocv_shift_leaves_every_feature_unchanged():
    """What SOC does to the rest voltage cancels: the same impedance at another OCV gives the same features."""
    base = invariant_features(synthetic_pulses(OCV, R_OHM, R_POLAR, QN), QN)
    shifted = invariant_features(synthetic_pulses(OCV + 0.2, R_OHM, R_POLAR, QN), QN)
    np.testing.assert_allclose(shifted.to_numpy(), base.to_numpy(), atol=1e-9)


def _balanced(seed: int = 0) -> pd.DataFrame:
    """Every battery at every SOC level, so that SOH and SOC are exactly uncorrelated."""
    rng = np.random.default_rng(seed)
    soh = rng.uniform(0.7, 1.0, 8)
    soc = np.arange(5, 55, 5) / 100
    df = pd.DataFrame({"battery": "X", "soh": np.repeat(soh, len(soc)), "soc": np.tile(soc, len(soh))})
    return df.assign(by_soc=np.sin(8 * df["soc"]) + 3 * df["soc"], by_soh=2.0 - df["soh"], flat=1.0)


def test_variance_shares_separate_soc_from_soh():
    shares = variance_shares(_balanced(), ["by_soc", "by_soh", "flat"]).set_index("feature")
    assert shares.loc["by_soc", "share_soc"] == pytest.approx(1.0)
    assert shares.loc["by_soc", "share_soh"] == pytest.approx(0.0, abs=1e-12)
    assert shares.loc["by_soh", "share_soc"] == pytest.approx(0.0, abs=1e-12)
    assert shares.loc["by_soh", "share_soh"] == pytest.approx(1.0)
    assert shares.loc["flat", ["share_soc", "share_soh"]].isna().all()


def test_variance_shares_are_per_group():
    df = pd.concat([_balanced(0), _balanced(1).assign(battery="Y", by_soc=lambda d: d["soh"])], ignore_index=True)
    shares = variance_shares(df, ["by_soc"]).set_index("battery")["share_soh"]
    assert shares["X"] == pytest.approx(0.0, abs=1e-12) and shares["Y"] == pytest.approx(1.0)
