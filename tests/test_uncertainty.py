"""Conformal intervals reach their nominal coverage; the novelty score flags a shifted population only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from battgen.uncertainty import NoveltyScore, conformal_quantile, interval


def test_conformal_quantile_is_the_finite_sample_order_statistic() -> None:
    scores = np.arange(1.0, 10.0)  # n = 9
    assert conformal_quantile(scores, 0.5) == 5.0  # ceil(10 * 0.5) = 5th smallest
    assert conformal_quantile(scores, 0.9) == 9.0  # ceil(10 * 0.9) = 9th
    assert conformal_quantile(scores, 0.95) == math.inf  # ceil(10 * 0.95) = 10 > n: no finite interval
    assert conformal_quantile([np.nan, 1.0, 2.0, 3.0], 0.5) == 2.0  # NaN scores are ignored
    with pytest.raises(ValueError, match="coverage"):
        conformal_quantile(scores, 1.0)


def test_coverage_on_known_noise_is_nominal() -> None:
    """Exchangeable scores: the expected coverage is in [c, c + 1/(n + 1)]. Over 200 trials of
    n = 200 calibration and 1000 test points the mean coverage has a standard deviation of about
    0.0016 (per trial about 0.023), so 0.008 is five standard deviations."""
    rng = np.random.default_rng(0)
    c, n, trials = 0.9, 200, 200
    covered = []
    for _ in range(trials):
        noise_cal = rng.standard_t(df=3, size=n)  # heavy tails: no Gaussian assumption
        truth = rng.standard_t(df=3, size=1000)
        lo, hi = interval(np.zeros(1000), np.abs(noise_cal), c)
        covered.append(np.mean((truth >= lo) & (truth <= hi)))
    mean = float(np.mean(covered))
    assert c - 0.008 < mean < c + 1 / (n + 1) + 0.008


def _population(rng, n_groups: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    offsets = rng.normal(0, 0.3, size=(n_groups, 21))  # battery-to-battery differences
    X = np.vstack([o + shift + rng.normal(0, 1, size=(30, 21)) for o in offsets])
    return X, np.repeat(np.arange(n_groups), 30)


def test_novelty_flags_a_shifted_population_and_not_a_new_battery_of_the_same_kind() -> None:
    rng = np.random.default_rng(1)
    X, groups = _population(rng, 20)
    novelty = NoveltyScore(k=5, false_alarm=0.01).fit(X, groups)
    same, _ = _population(rng, 10)
    shifted, _ = _population(rng, 10, shift=2.0)
    assert novelty.flag(same).mean() < 0.05
    assert novelty.flag(shifted).mean() > 0.95
    assert np.isfinite(novelty.threshold_) and len(novelty.calibration_) == len(X)


def test_novelty_extra_reference_rows_are_always_kept() -> None:
    rng = np.random.default_rng(2)
    X, groups = _population(rng, 5)
    far, _ = _population(rng, 1, shift=4.0)
    plain = NoveltyScore().fit(X, groups)
    assert plain.flag(far).all()
    with_far = NoveltyScore().fit(X, groups, X_extra=far)  # e.g. generated rows at levels nobody measured
    assert not with_far.flag(far).any()
    with pytest.raises(RuntimeError, match="not fitted"):
        NoveltyScore().score(X)
