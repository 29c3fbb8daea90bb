"""battgen.interpolation: per-battery linear interpolation in SOC, on synthetic data where it is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.data import FEATURES
from battgen.interpolation import interpolate_features, interpolation_weights, loo_interpolation_residuals


def linear_batteries(levels=(0.05, 0.25, 0.5), n=4) -> pd.DataFrame:
    """Batteries whose every feature is exactly linear in SOC (so interpolation is exact)."""
    rows = []
    for b in range(n):
        for soc in levels:
            feats = {f: 3.0 + 0.1 * b + (1.0 + 0.05 * k) * soc for k, f in enumerate(FEATURES)}
            rows.append({"battery_id": f"B{b}", "cell": f"B{b}", "soh": 0.8 + 0.01 * b, "soc": soc, **feats})
    return pd.DataFrame(rows)


def truth(df: pd.DataFrame) -> np.ndarray:
    b = df["battery_id"].str[1:].astype(int).to_numpy()[:, None]
    k = np.arange(len(FEATURES))[None, :]
    return 3.0 + 0.1 * b + (1.0 + 0.05 * k) * df["soc"].to_numpy()[:, None]


def test_weights_inside_exact_and_outside() -> None:
    assert interpolation_weights([5, 25, 50], 15) == (0, 1, 0.5)
    assert interpolation_weights([5, 25, 50], 25) == (1, 1, 0.0)
    assert interpolation_weights([5, 25, 50], 55) == (1, 2, 1.2)  # extrapolated from the two highest
    i, j, w = interpolation_weights([35, 40, 45, 50], 5)
    assert (i, j) == (0, 1) and w == pytest.approx(-6.0)
    assert interpolation_weights([20], 40) == (0, 0, 0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolation_weights([25, 5], 10)
    with pytest.raises(ValueError, match="at least one"):
        interpolation_weights([], 10)


def test_interpolation_and_extrapolation_are_exact_on_linear_data() -> None:
    df = linear_batteries()
    targets = [0.05, 0.1, 0.3, 0.5, 0.55, 0.0]
    out = interpolate_features(df, targets)
    assert len(out) == 4 * len(targets)
    np.testing.assert_allclose(out[FEATURES].to_numpy(), truth(out), atol=1e-12)
    # battery-major, the targets in the order given
    assert out["battery_id"].tolist() == [f"B{b}" for b in range(4) for _ in targets]
    np.testing.assert_array_equal(out["soc"].to_numpy(), np.tile(targets, 4))
    # labels and identity come from the battery itself
    assert (out.groupby("battery_id")["soh"].nunique() == 1).all()
    np.testing.assert_array_equal(out["soh"].to_numpy(), 0.8 + 0.01 * out["battery_id"].str[1:].astype(int).to_numpy())


def test_row_order_and_empty_input_do_not_matter() -> None:
    df = linear_batteries()
    shuffled = df.sample(frac=1.0, random_state=0)
    def tidy(out: pd.DataFrame) -> pd.DataFrame:
        return out.sort_values(["battery_id", "soc"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(tidy(interpolate_features(shuffled, [0.1, 0.3])), tidy(interpolate_features(df, [0.1, 0.3])))
    assert interpolate_features(df.iloc[:0], [0.1]).empty
    assert loo_interpolation_residuals(df.iloc[:0]).empty
    twice = pd.concat([df, df.iloc[:1]])
    with pytest.raises(ValueError, match="distinct"):
        interpolate_features(twice, [0.1])


def test_loo_residuals_vanish_on_straight_lines_and_measure_curvature() -> None:
    df = linear_batteries(levels=(0.05, 0.1, 0.2, 0.4))
    res = loo_interpolation_residuals(df)
    assert len(res) == len(df)
    np.testing.assert_allclose(res[FEATURES].to_numpy(), 0.0, atol=1e-12)
    curved = df.copy()
    curved["U1"] = curved["U1"] + curved["soc"] ** 2
    res = loo_interpolation_residuals(curved)
    assert np.abs(res["U1"]).max() > 1e-3 and np.allclose(res["U2"], 0.0)
    # an interior level: measured minus the straight line through its neighbours, by hand
    b0 = curved[curved["battery_id"] == "B0"].sort_values("soc")
    u = b0["U1"].to_numpy()
    s = b0["soc"].to_numpy()
    expected = u[1] - (u[0] + (s[1] - s[0]) / (s[2] - s[0]) * (u[2] - u[0]))
    got = res[(res["battery_id"] == "B0") & (res["soc"] == 0.1)]["U1"].item()
    assert got == pytest.approx(expected, abs=1e-12)


def test_loo_residuals_with_one_level_are_zero() -> None:
    res = loo_interpolation_residuals(linear_batteries(levels=(0.25,)))
    np.testing.assert_array_equal(res[FEATURES].to_numpy(), 0.0)
