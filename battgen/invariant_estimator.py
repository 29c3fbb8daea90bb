"""Estimators of SOH at an unknown SOC on SOC-invariant pulse features (chapter 07).

:class:`InvariantEstimator` (one per method of :data:`NEW_METHODS`) reads only U1..U21 at
prediction time, through the features of :mod:`battgen.invariant` (pulse resistances in ohm Ah and
relaxation differences ``U_k - U1``, in which the OCV and with it most of the SOC cancels). It is
scored leak-free by :func:`battgen.evaluation.unknown_soc.run_unknown_soc` and deployed as
``SOHEstimator(regressor=...)`` (:mod:`battgen.estimator`), the same class with the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from battgen.data import FEATURES
from battgen.evaluation.split import derive_seed
from battgen.interpolation import interpolate_features
from battgen.invariant import invariant_features
from battgen.protocol import ALL_SOC, soc_percent

__all__ = ["NEW_METHODS", "RIDGE_ALPHAS", "InvariantEstimator", "augmented_rows", "grouped_ridge_alpha"]

NEW_METHODS: dict[str, str] = {
    "invariant_forest": "extra trees on U1..U21 + invariant features, measured + interpolated rows",
    "invariant_ridge": "ridge on U1..U21 + invariant features, measured rows, penalty by grouped CV",
    "invariant_ensemble": "mean of invariant_forest and invariant_ridge",
    "soc_then_soh": "SOC inferred by extra trees, then SOH by extra trees given the pulse and that SOC",
}
RIDGE_ALPHAS = np.logspace(-2, 4, 13)


def augmented_rows(train: pd.DataFrame, soc_levels: Sequence[int] = ALL_SOC) -> pd.DataFrame:
    """The measured rows plus, for every battery measured at two or more levels, its pulses linearly
    interpolated (extrapolated) to each of ``soc_levels`` (%) it was not measured at."""
    counts = train.groupby("battery_id")["soc"].transform("nunique").to_numpy()
    several = train[counts >= 2]
    if several.empty:
        return train.reset_index(drop=True)
    gen = interpolate_features(several, [lv / 100 for lv in soc_levels])
    have = set(zip(train["battery_id"], soc_percent(train)))
    new = [(b, s) not in have for b, s in zip(gen["battery_id"], soc_percent(gen))]
    return pd.concat([train, gen[new]], ignore_index=True)


def grouped_ridge_alpha(X: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: np.ndarray = RIDGE_ALPHAS,
                        n_splits: int = 3) -> float:
    """The ridge penalty (on standardised inputs) with the lowest MAPE in a grouped cross-validation
    (:class:`sklearn.model_selection.GroupKFold`, physical batteries kept whole); 1.0 with fewer than
    two groups. All penalties of a fold come from one eigendecomposition of its standardised Gram matrix."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(set(np.asarray(groups).tolist()))
    if n_groups < 2:
        return 1.0
    ape = np.zeros(len(alphas))
    for tr, te in GroupKFold(min(n_splits, n_groups)).split(X, y, groups):
        mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        Z, Zt, y0 = (X[tr] - mu) / sd, (X[te] - mu) / sd, y[tr].mean()
        w, V = np.linalg.eigh(Z.T @ Z)  # (f,), (f, f): Z'Z = V diag(w) V'
        vy = V.T @ (Z.T @ (y[tr] - y0))  # (f,)
        coefs = V @ (vy[:, None] / (np.clip(w, 0, None)[:, None] + alphas[None, :]))  # (f, n_alphas)
        ape += (np.abs(Zt @ coefs + y0 - y[te, None]) / np.abs(y[te, None])).sum(axis=0)
    return float(alphas[int(np.argmin(ape))])


def _groups(df: pd.DataFrame, group: str) -> np.ndarray:
    return df[group if group in df.columns else "battery_id"].to_numpy()


@dataclass
class InvariantEstimator:
    """SOH from U1..U21 at an unknown SOC (one of :data:`NEW_METHODS`); ``fit(df)`` takes a
    :mod:`battgen.data` table (U1..U21, ``soc``, ``soh``, ``battery_id``), ``predict(df)`` needs
    U1..U21 only. ``voltages=False`` uses the invariant features alone (for mixing battery designs)."""

    method: str = "invariant_ensemble"
    voltages: bool = True
    soc_levels: tuple[int, ...] = ALL_SOC
    n_trees: int = 100
    group: str = "cell"  # the physical battery, for the ridge's grouped cross-validation
    random_state: int = 0
    n_jobs: int | None = None

    def _inputs(self, df: pd.DataFrame) -> np.ndarray:
        inv = invariant_features(df, specific=True).to_numpy(float)  # (n, 40) ohm Ah and V
        return np.hstack([df[FEATURES].to_numpy(float), inv]) if self.voltages else inv

    def _trees(self, stream: str):
        from sklearn.ensemble import ExtraTreesRegressor

        return ExtraTreesRegressor(n_estimators=self.n_trees, max_features=1 / 3, min_samples_leaf=3, n_jobs=self.n_jobs,
                                   random_state=derive_seed(self.random_state, stream))

    def _ridge(self, df: pd.DataFrame):
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = self._inputs(df), df["soh"].to_numpy(float)
        self.alpha_ = grouped_ridge_alpha(X, y, _groups(df, self.group))
        return make_pipeline(StandardScaler(), Ridge(alpha=self.alpha_)).fit(X, y)

    def fit(self, df: pd.DataFrame) -> "InvariantEstimator":
        if self.method not in NEW_METHODS:
            raise ValueError(f"method must be one of {list(NEW_METHODS)}, got {self.method!r}")
        aug = augmented_rows(df, self.soc_levels)
        self.models_: dict = {}
        if self.method in ("invariant_forest", "invariant_ensemble"):
            self.models_["forest"] = self._trees("forest").fit(self._inputs(aug), aug["soh"].to_numpy(float))
        if self.method in ("invariant_ridge", "invariant_ensemble"):
            self.models_["ridge"] = self._ridge(df)
        if self.method == "soc_then_soh":  # stage 1: SOC from the pulse; stage 2: SOH from the pulse and that SOC
            self.models_["soc"] = self._trees("soc").fit(self._inputs(aug), aug["soc"].to_numpy(float))
            self.soc_given_ = self._trees("soh given soc").fit(np.column_stack([self._inputs(aug), aug["soc"].to_numpy(float)]),
                                                               aug["soh"].to_numpy(float))
        return self

    def predict_soc(self, df: pd.DataFrame) -> np.ndarray:
        """The inferred SOC (fraction) of each row (``soc_then_soh`` only)."""
        if "soc" not in getattr(self, "models_", {}):
            raise RuntimeError("predict_soc needs a fitted soc_then_soh estimator")
        return self.models_["soc"].predict(self._inputs(df))

    def component_predictions(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """The SOH predicted by each fitted part (``forest``, ``ridge``) of an invariant estimator:
        one ``invariant_ensemble`` fit yields all three invariant methods (same seeds, same models)."""
        X = self._inputs(df)
        return {name: m.predict(X) for name, m in self.models_.items() if name != "soc"}

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """SOH (fraction of nominal capacity) of each row of U1..U21 (volts); SOC is not needed."""
        if not hasattr(self, "models_"):
            raise RuntimeError("this InvariantEstimator is not fitted yet; call fit()")
        if self.method == "soc_then_soh":
            return self.soc_given_.predict(np.column_stack([self._inputs(df), self.predict_soc(df)]))
        return np.mean(list(self.component_predictions(df).values()), axis=0)
