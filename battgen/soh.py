"""SOH estimation: the paper's random forest and the error metric."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestRegressor

__all__ = ["make_forest", "mape", "absolute_percentage_errors", "FOREST_PARAMS"]

FOREST_PARAMS = dict(n_estimators=20, max_depth=64, min_samples_leaf=1, bootstrap=False)
"""The paper's regressor settings (the authors' code leaves random_state unset; battgen fixes it)."""


def make_forest(random_state: int | None = 0, n_jobs: int | None = None) -> RandomForestRegressor:
    """``RandomForestRegressor(n_estimators=20, max_depth=64, min_samples_leaf=1, bootstrap=False)``.

    Without bootstrap and with every feature tried at each split, the 20 trees differ only
    where two candidate splits tie (scikit-learn visits features in a random order), so the
    forest is close to one deep tree; ``random_state`` fixes those tie-breaks.
    """
    return RandomForestRegressor(**FOREST_PARAMS, random_state=random_state, n_jobs=n_jobs)


def absolute_percentage_errors(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``|y_true - y_pred| / |y_true| * 100`` per sample."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred shapes differ: {y_true.shape} vs {y_pred.shape}")
    if np.any(y_true == 0):
        raise ValueError("MAPE is undefined where y_true is 0")
    return np.abs((y_true - y_pred) / y_true) * 100.0


def mape(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """Mean absolute percentage error (%) and the standard deviation of the absolute percentage errors."""
    ape = absolute_percentage_errors(y_true, y_pred)
    return float(ape.mean()), float(ape.std())
