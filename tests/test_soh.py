"""battgen.soh: the paper's forest and MAPE."""

from __future__ import annotations

import numpy as np
import pytest

from battgen.soh import fit_forest, make_forest, mape


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


@pytest.mark.parametrize("threads", [1, 2])
def test_fit_forest_equals_the_scikit_learn_forest_bit_for_bit(threads: int) -> None:
    """Same seeds, same trees, predictions summed in tree order: equal bytes, ties included (rounded
    features make many equal candidate splits, where the seeds decide)."""
    from battgen.soh import PaperForest, fast_forest_available

    assert fast_forest_available()  # the installed scikit-learn is one PaperForest was written for: test it
    rng = np.random.default_rng(1)
    for seed in range(6):
        X, y = rng.random((120, 21)), rng.random(120)
        for features in (X, np.round(X, 1), np.asfortranarray(X)):
            ours = fit_forest(features, y, seed, threads=threads)
            assert isinstance(ours, PaperForest)
            theirs = make_forest(seed).fit(features, y)
            assert ours.predict(X[:40]).tobytes() == theirs.predict(X[:40]).tobytes()
            assert [t.random_state for t in ours.estimators_] == [t.random_state for t in theirs.estimators_]
    with pytest.raises(ValueError, match="X has 5 features, the forest was fitted on 21"):
        ours.predict(X[:, :5])


def test_other_scikit_learn_releases_get_scikit_learns_forest(monkeypatch) -> None:
    """PaperForest calls scikit-learn's private tree API: on a release it was not written for, fit_forest
    falls back to the forest itself (same predictions by definition)."""
    import sklearn

    import battgen.soh as soh

    monkeypatch.setattr(sklearn, "__version__", "1.5.2")
    soh.fast_forest_available.cache_clear()  # the answer is kept per process
    try:
        assert not soh.fast_forest_available()
        X, y = np.random.default_rng(0).random((50, 21)), np.random.default_rng(1).random(50)
        forest = soh.fit_forest(X, y, 3)
        assert not isinstance(forest, soh.PaperForest) and forest.random_state == 3
        assert forest.predict(X[:5]).tobytes() == make_forest(3).fit(X, y).predict(X[:5]).tobytes()
    finally:
        monkeypatch.undo()
        soh.fast_forest_available.cache_clear()
