"""battgen.baselines: interpolation arithmetic on synthetic data, and the paper-protocol hook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battgen.baselines import (
    BASELINES,
    constant_predictions,
    interpolate_features,
    interpolation_weights,
    loo_interpolation_residuals,
    soc_input_forest,
)
from battgen.data import FEATURES, load_pulsebat
from battgen.experiments import CASES, ExperimentConfig, run_grid, test_levels
from battgen.train import TrainConfig


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


def test_interpolation_and_extrapolation_are_exact_on_linear_data() -> None:
    df = linear_batteries()
    targets = [0.05, 0.1, 0.3, 0.5, 0.55, 0.0]
    out = interpolate_features(df, targets)
    assert len(out) == 4 * len(targets)
    np.testing.assert_allclose(out[FEATURES].to_numpy(), truth(out), atol=1e-12)
    # labels and identity come from the battery itself
    assert (out.groupby("battery_id")["soh"].nunique() == 1).all()
    np.testing.assert_array_equal(out["soh"].to_numpy(), 0.8 + 0.01 * out["battery_id"].str[1:].astype(int).to_numpy())


def test_loo_residuals_vanish_on_straight_lines_and_measure_curvature() -> None:
    df = linear_batteries(levels=(0.05, 0.1, 0.2, 0.4))
    res = loo_interpolation_residuals(df)
    assert len(res) == len(df)
    np.testing.assert_allclose(res[FEATURES].to_numpy(), 0.0, atol=1e-12)
    curved = df.copy()
    curved["U1"] = curved["U1"] + curved["soc"] ** 2
    res = loo_interpolation_residuals(curved)
    assert np.abs(res["U1"]).max() > 1e-3 and np.allclose(res["U2"], 0.0)


def test_constant_and_soc_forest() -> None:
    np.testing.assert_allclose(constant_predictions([0.8, 0.9], 3), [0.85, 0.85, 0.85], rtol=1e-15)
    df = linear_batteries()
    forest = soc_input_forest(df, 0)
    assert forest.n_features_in_ == len(FEATURES) + 1


@pytest.fixture(scope="module")
def grid(data_dir: Path) -> pd.DataFrame:
    cfg = ExperimentConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], data_dir=str(data_dir),
                           train=TrainConfig(epochs=1), progress=False, baselines=True)
    return run_grid(cfg)


def test_baselines_join_the_paper_protocol_on_the_same_rows(grid: pd.DataFrame) -> None:
    for case in (3, 7):
        sub = grid[grid["case"] == case]
        assert set(BASELINES) <= set(sub["method"])
        assert sorted(sub["test_soc"].unique()) == list(test_levels(case))
        n_test = sub.groupby("test_soc")["n_test"].nunique()
        assert (n_test == 1).all()  # every method scored on the same rows at a level
    # the constant predictor of the issue: 3.3 % on NMC 21 Ah, whatever the case
    const = grid[grid["method"] == "baseline_constant"].groupby("case")["mape"].mean()
    assert const.round(1).tolist() == [3.3, 3.3]
    interp = grid[grid["method"] == "baseline_interpolation"]
    assert (interp["n_train"] == 52).all()  # one interpolated row per battery


def test_without_baselines_the_table_is_unchanged(grid: pd.DataFrame, data_dir: Path) -> None:
    plain = run_grid(ExperimentConfig(batteries=["NMC21"], cases=[7], seeds=[0], data_dir=str(data_dir),
                                      train=TrainConfig(epochs=1), progress=False))
    kept = grid[~grid["method"].isin(list(BASELINES)) & (grid["case"] == 7)].reset_index(drop=True)
    pd.testing.assert_frame_equal(plain, kept, check_exact=True)


def test_interpolation_baseline_matches_a_hand_computation(grid: pd.DataFrame, data_dir: Path) -> None:
    from battgen.soh import make_forest, mape

    df = load_pulsebat("NMC21", data_dir=data_dir)
    soc = np.rint(df["soc"] * 100).astype(int)
    train, test = df[np.isin(soc, CASES[3])], df[soc == 10]
    # hand-made: 10 % lies between 5 % and 25 %, a quarter of the way
    lo = train[train["soc"] == 0.05].set_index("battery_id")
    hi = train[train["soc"] == 0.25].set_index("battery_id").loc[lo.index]
    X = lo[FEATURES].to_numpy() + 0.25 * (hi[FEATURES].to_numpy() - lo[FEATURES].to_numpy())
    from battgen.evaluation.split import derive_seed

    rs = derive_seed("NMC21", 3, None, 0, "forest")  # the split's forest stream (one seed convention)
    pred = make_forest(rs).fit(X, lo["soh"].to_numpy()).predict(test[FEATURES].to_numpy())
    got = grid.query("case == 3 and method == 'baseline_interpolation' and test_soc == 10")["mape"].item()
    assert got == pytest.approx(mape(test["soh"].to_numpy(), pred)[0], rel=1e-9)
