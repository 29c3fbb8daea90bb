"""battgen.soh: the paper's forest and MAPE."""

from __future__ import annotations

import numpy as np
import pytest

from battgen.soh import make_forest, mape


def test_mape_known_values() -> None:
    m, s = mape(np.array([1.0, 0.5]), np.array([0.9, 0.55]))
    assert m == pytest.approx(10.0)
    assert s == pytest.approx(0.0)
    m, s = mape(np.array([1.0, 1.0]), np.array([1.0, 0.8]))
    assert (m, s) == (pytest.approx(10.0), pytest.approx(10.0))
    with pytest.raises(ValueError, match="undefined"):
        mape(np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="shapes differ"):
        mape(np.ones(2), np.ones(3))


def test_forest_has_the_papers_settings_and_is_seeded() -> None:
    f = make_forest(3)
    assert (f.n_estimators, f.max_depth, f.min_samples_leaf, f.bootstrap, f.random_state) == (20, 64, 1, False, 3)
    rng = np.random.default_rng(0)
    X, y = rng.random((50, 21)), rng.random(50)
    np.testing.assert_array_equal(make_forest(1).fit(X, y).predict(X[:5]), make_forest(1).fit(X, y).predict(X[:5]))
