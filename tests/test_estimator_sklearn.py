"""SOHEstimator is a real scikit-learn regressor, its intervals cover, its novelty score flags other designs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from battgen.data import FEATURES, load_pulsebat
from battgen.estimator import SOHEstimator
from battgen.protocol import soc_percent

EXPECTED_FAILED_CHECKS: dict[str, str] = {}
"""Checks of scikit-learn's that cannot apply to SOHEstimator, with the reason. None at present:
plain feature matrices of any width are accepted as generic features."""


def test_scikit_learn_check_estimator_passes() -> None:
    """Every check of ``check_estimator`` (two calibration folds instead of five, to keep it quick)."""
    failed: dict[str, str] = {}

    def record(estimator, check_name, exception, status, expected_to_fail, expected_to_fail_reason) -> None:
        if status == "failed" and not expected_to_fail:
            failed[check_name] = f"{type(exception).__name__}: {exception}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(SOHEstimator(calibration_folds=2), expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None,
                        callback=record)
    assert not failed, failed


def test_parameters_are_stored_unchanged_and_validated_in_fit() -> None:
    levels = [5, 25, 50]
    est = SOHEstimator(soc_levels=levels, generator="nope", epochs=-3)
    assert est.soc_levels is levels and est.get_params()["generator"] == "nope"  # __init__ validates nothing
    assert clone(est).get_params() == est.get_params()
    X, y = np.random.default_rng(0).uniform(size=(10, 3)), np.linspace(0.6, 0.9, 10)
    with pytest.raises(ValueError, match="generator must be one of"):
        est.fit(X, y)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        SOHEstimator(epochs=-3).fit(X, y)
    with pytest.raises(ValueError, match="soc_levels must be PulseBat SOC levels"):
        SOHEstimator(soc_levels=[7]).fit(X, y)


@pytest.fixture(scope="module")
def lmo(data_dir: Path) -> pd.DataFrame:
    df = load_pulsebat("LMO10", data_dir=data_dir)
    return df[df["cell"].isin(sorted(df["cell"].unique())[:30])].reset_index(drop=True)


def test_cross_val_score_with_groups_grid_search_and_pipeline(lmo: pd.DataFrame) -> None:
    measured = lmo[np.isin(soc_percent(lmo), [5, 25, 50])].reset_index(drop=True)
    X, y, groups = measured[FEATURES], measured["soh"], measured["cell"]
    fit_params = {"soc": measured["soc"], "battery_id": measured["battery_id"]}
    scores = cross_val_score(SOHEstimator(calibration_folds=0), X, y, groups=groups, cv=GroupKFold(3), params=fit_params,
                             scoring="neg_mean_absolute_percentage_error")
    assert scores.shape == (3,) and np.all(scores < 0)
    grid = GridSearchCV(SOHEstimator(calibration_folds=0), {"generator": ["interpolation", "none"]}, cv=GroupKFold(3),
                        scoring="neg_mean_absolute_percentage_error").fit(X, y, groups=groups, **fit_params)
    assert grid.best_params_["generator"] in {"interpolation", "none"}
    pipe = Pipeline([("soh", SOHEstimator(calibration_folds=0))]).fit(X, y, soh__soc=measured["soc"],
                                                                     soh__battery_id=measured["battery_id"])
    assert pipe.predict(lmo[FEATURES]).shape == (len(lmo),)


def test_intervals_on_held_out_batteries(lmo: pd.DataFrame) -> None:
    cells = sorted(lmo["cell"].unique())
    train = lmo[lmo["cell"].isin(cells[:20]) & np.isin(soc_percent(lmo), [5, 25, 50])]
    test = lmo[lmo["cell"].isin(cells[20:])]
    est = SOHEstimator(calibration_folds=4).fit(train)
    assert len(est.calibration_scores_) == len(train) + 7 * train["battery_id"].nunique()  # measured + interpolated
    estimate, lo, hi = est.predict(test[FEATURES], interval=0.9)
    assert np.array_equal(estimate, est.predict(test[FEATURES]))
    assert np.all(lo < estimate) and np.all(estimate < hi)
    _, lo5, hi5 = est.predict(test[FEATURES], interval=0.5)
    assert np.all(hi5 - lo5 < hi - lo)
    back = SOHEstimator.load(est.save(Path(__import__("tempfile").mkdtemp()) / "m.pt"))
    np.testing.assert_array_equal(back.predict(test[FEATURES], interval=0.9)[1], lo)
    np.testing.assert_array_equal(back.novelty_score(test[FEATURES]), est.novelty_score(test[FEATURES]))


def test_conformal_coverage_on_synthetic_data_with_known_noise() -> None:
    """y = x0 + N(0, 0.05^2) on 5 generic features; 600 rows in 120 groups of 5, 5 calibration folds.
    The realised coverage of a 90 % interval on 5,000 new rows has a standard deviation of about
    0.013 (calibration) and 0.004 (test), so 0.9 +- 0.05 is more than three of them."""
    rng = np.random.default_rng(7)
    X = rng.uniform(size=(600, 5))
    y = 0.5 + 0.4 * X[:, 0] + rng.normal(0, 0.05, size=600)
    est = SOHEstimator(calibration_folds=5).fit(X, y, battery_id=np.repeat(np.arange(120), 5))
    X_new = rng.uniform(size=(5000, 5))
    y_new = 0.5 + 0.4 * X_new[:, 0] + rng.normal(0, 0.05, size=5000)
    _, lo, hi = est.predict(X_new, interval=0.9)
    coverage = np.mean((y_new >= lo) & (y_new <= hi))
    assert 0.85 < coverage < 0.95


def test_novelty_flags_another_design_not_new_batteries_of_the_same(data_dir: Path) -> None:
    lfp = load_pulsebat("LFP35", data_dir=data_dir)
    cells = sorted(lfp["cell"].unique())
    est = SOHEstimator(calibration_folds=0).fit(lfp[lfp["cell"].isin(cells[:37]) & np.isin(soc_percent(lfp), [5, 25, 50])])
    same = lfp[lfp["cell"].isin(cells[37:])]
    other = load_pulsebat("NMC21", data_dir=data_dir)
    assert np.mean(est.novelty_score(same[FEATURES]) > est.novelty_threshold_) < 0.1
    assert np.mean(est.novelty_score(other[FEATURES]) > est.novelty_threshold_) > 0.9


def test_one_measured_level_cannot_be_generated_from(data_dir: Path) -> None:
    lfp = load_pulsebat("LFP35", data_dir=data_dir)
    one = lfp[soc_percent(lfp) == 25]
    with pytest.raises(ValueError, match="one measured SOC level .25 %.; generator 'interpolation' needs at least two"):
        SOHEstimator(calibration_folds=0).fit(one)
    assert SOHEstimator(generator="none", calibration_folds=0).fit(one).generated_soc_ == []
