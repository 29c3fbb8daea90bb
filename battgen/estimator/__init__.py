"""A deployable SOH estimator for batteries whose SOC nobody tells you.

:class:`SOHEstimator` is trained on pulses measured at a few SOC levels plus pulses generated at
the other levels of 5-50 % SOC, and predicts SOH from U1..U21 alone, with a prediction interval
and a novelty score if asked. It is a scikit-learn regressor (``clone``, ``cross_val_score`` with
``groups=`` (the CV's batteries), ``GridSearchCV`` and ``Pipeline`` work; parameters are stored unchanged by
``__init__`` and validated by ``fit``). Generators (``generator=``):

- ``"interpolation"`` (default): each training battery's pulses linearly interpolated (or
  extrapolated) in SOC to the unmeasured levels. No generative model: on held-out batteries at
  all ten SOC levels it beat every CVAE variant for NMC 2.1 Ah, LMO 10 Ah and NMC 21 Ah
  (:func:`battgen.evaluation.leakfree.run_estimator_benchmark`, chapter 06), so it is the default;
- ``"residual"``: the interpolated pulses plus a residual drawn from a CVAE trained on
  leave-one-level-out interpolation residuals;
- ``"cvae"``: the paper's CVAE, decoded at (level, SOH grid spanning the training SOH);
- ``"cvae_plus"``: the improved CVAE on the same grid;
- ``"none"``: the measured rows only.

The generators are those of the registry :mod:`battgen.evaluation.generators`; the split
(:func:`battgen.evaluation.split.estimator_split`, key ``(random_state,)``) and the training set
(:func:`battgen.evaluation.core.training_set`: measured + generated rows, SOC unknown) are the
evaluation core's, so the estimator and its benchmark run the same code. Regressors (``regressor=``):

- ``"forest"`` (default): the paper's random forest (:func:`battgen.soh.fit_forest`, the predictions
  of :func:`battgen.soh.make_forest` bit for bit) on U1..U21 of the training set;
- ``"invariant_forest"``, ``"invariant_ridge"``, ``"invariant_ensemble"``, ``"soc_then_soh"``: the
  estimators on SOC-invariant pulse features of :mod:`battgen.invariant_estimator`
  (:class:`~battgen.invariant_estimator.InvariantEstimator`, pulse resistances and relaxation
  differences beside U1..U21), fitted on the measured rows, which they interpolate per battery
  themselves (so they take ``generator="interpolation"``). With the same ``random_state`` they are
  the very estimators chapter 07 scores; the default stays the forest because none of them wins the
  nested choice in every battery type (chapter 07).

**Intervals** (``predict(X, interval=0.9)``): grouped split-conformal
(:mod:`battgen.uncertainty`). ``fit`` deals the training batteries (physical cells) into
``calibration_folds`` groups, refits the whole estimator without each group, and keeps the
absolute errors on the held-out batteries' pulses: the measured ones and the same batteries'
pulses interpolated to the levels nobody measured (the estimate is asked for at every level, and
errors there are larger). Split-conformal was chosen over conformalized quantile regression
because the paper's forest has no quantile output and its trees, grown without bootstrap, are
near copies of one another; the scores are exchangeable at the battery level, which is what a
new battery is. Coverage is measured on held-out batteries in chapter 08, not assumed.

**Novelty** (:meth:`SOHEstimator.novelty_score`, :attr:`novelty_threshold_`): the distance of a
pulse to the training pulses (:class:`battgen.uncertainty.NoveltyScore`), with a threshold set on
the training batteries (each scored against the others) so that about ``false_alarm`` of a new
same-design battery's pulses are flagged. A model also records the battery design and pulse
width of its training rows and refuses rows that declare others (:mod:`battgen.estimator.inputs`).

Saving and loading: :mod:`battgen.estimator.persistence`.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from battgen.data import FEATURES
from battgen.estimator.inputs import CUSTOM, DECLARED, check_pulses, declared_mismatches, design_of, read_pulses, refuse_declared
from battgen.evaluation.core import in_threads, run_generators, training_set
from battgen.evaluation.generators import GeneratorSettings, Rows
from battgen.evaluation.split import Split, derive_seed, estimator_split, grouped_folds
from battgen.interpolation import interpolate_features
from battgen.protocol import ALL_SOC
from battgen.soh import fit_forest
from battgen.uncertainty import NoveltyScore, interval as conformal_interval, pulse_shape

__all__ = ["SOHEstimator", "ESTIMATOR_GENERATORS", "REGRESSORS", "fit_estimators", "read_pulses", "check_pulses",
           "declared_mismatches", "refuse_declared", "DECLARED", "CUSTOM"]

ESTIMATOR_GENERATORS = ("interpolation", "residual", "cvae", "cvae_plus", "none")
"""The generators of :mod:`battgen.evaluation.generators` an estimator can use."""
REGRESSORS = ("forest", "invariant_forest", "invariant_ridge", "invariant_ensemble", "soc_then_soh")
"""What learns SOH from the training rows: the paper's forest, or an invariant-feature estimator (module docstring)."""


def _int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"SOHEstimator: {name} must be an integer >= {low}{' or None' if allow_none else ''}, got {value!r}")


class SOHEstimator(RegressorMixin, BaseEstimator):
    """SOH from U1..U21 at an unknown SOC, trained on a few measured SOC levels plus generated ones.

    Parameters
    ----------
    generator: one of :data:`ESTIMATOR_GENERATORS` (see the module docstring).
    regressor: one of :data:`REGRESSORS`: the paper's forest, or an estimator on SOC-invariant features.
    soc_levels: SOC levels (%) the training set should cover; the unmeasured ones are generated.
    epochs: generator training epochs (the paper's 50).
    n_grid: SOH grid size for the CVAE generators (default: number of training batteries).
    calibration_folds: grouped folds of training batteries for the interval scores (0: no intervals).
    novelty_k: the novelty score is the distance to the k-th nearest training pulse.
    false_alarm: share of a new same-design battery's pulses the novelty threshold lets through as novel.
    random_state: seeds the generator fit, the sampling, the forest and the calibration folds.

    ``score`` is scikit-learn's R^2 (for MAPE, ``scoring="neg_mean_absolute_percentage_error"``).
    ``fit(X, y, soc=..., battery_id=...)`` takes U1..U21 in volts; plain feature matrices of another
    width are accepted as generic features (nothing can then be generated, since generation
    needs U1..U21 and SOC), so that scikit-learn's tooling can exercise the estimator.
    """

    def __init__(self, generator: str = "interpolation", regressor: str = "forest", soc_levels: Sequence[int] = ALL_SOC, epochs: int = 50,
                 n_grid: int | None = None, calibration_folds: int = 5, novelty_k: int = 5, false_alarm: float = 0.01,
                 random_state: int = 0):
        self.generator = generator
        self.regressor = regressor
        self.soc_levels = soc_levels
        self.epochs = epochs
        self.n_grid = n_grid
        self.calibration_folds = calibration_folds
        self.novelty_k = novelty_k
        self.false_alarm = false_alarm
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        if self.generator not in ESTIMATOR_GENERATORS:
            raise ValueError(f"SOHEstimator: generator must be one of {ESTIMATOR_GENERATORS}, got {self.generator!r}")
        if self.regressor not in REGRESSORS:
            raise ValueError(f"SOHEstimator: regressor must be one of {REGRESSORS}, got {self.regressor!r}")
        if self.regressor != "forest" and self.generator != "interpolation":
            raise ValueError(f"SOHEstimator: regressor {self.regressor!r} interpolates each battery's pulses in SOC itself; "
                             f"it takes generator='interpolation', got {self.generator!r}")
        levels = list(self.soc_levels) if isinstance(self.soc_levels, (list, tuple, np.ndarray, range)) else None
        if not levels or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s not in ALL_SOC for s in levels):
            raise ValueError(f"SOHEstimator: soc_levels must be PulseBat SOC levels (%) among {list(ALL_SOC)}, got {self.soc_levels!r}")
        _int("epochs", self.epochs, 1)
        _int("n_grid", self.n_grid, 2, allow_none=True)
        if self.calibration_folds != 0:
            _int("calibration_folds", self.calibration_folds, 2)
        _int("novelty_k", self.novelty_k, 1)
        if not isinstance(self.false_alarm, numbers.Real) or not 0 < self.false_alarm < 1:
            raise ValueError(f"SOHEstimator: false_alarm must be between 0 and 1, got {self.false_alarm!r}")
        _int("random_state", self.random_state, 0)

    def _settings(self) -> GeneratorSettings:
        from battgen.train import TrainConfig

        return GeneratorSettings(train=TrainConfig(epochs=int(self.epochs)))

    def _split(self, df: pd.DataFrame) -> Split:
        return estimator_split(df, [int(s) for s in self.soc_levels], (int(self.random_state),), n_grid=self.n_grid)

    def _measured(self, X, y=None, soc=None, battery_id=None) -> pd.DataFrame:
        """The training rows as a battgen.data table (``generic_`` when they are not U1..U21 in volts)."""
        self._validate_params()
        if isinstance(X, pd.DataFrame) and y is None:
            df = X.copy()
            for col in ("soc", "soh"):
                if col not in df.columns:
                    raise ValueError(f"training data: column {col!r} is missing; pass a battgen.data table or fit(X, y, soc=...)")
        else:
            if y is None:
                raise ValueError("SOHEstimator requires y to be passed, but the target y is None "
                                 "(pass the SOH labels, or a battgen.data table with a 'soh' column)")
            if isinstance(X, pd.DataFrame) and all(c in X.columns for c in FEATURES):
                df = X.copy()
            else:
                from sklearn.utils.validation import check_array

                arr = check_array(X, dtype=float, ensure_min_samples=2)
                names = FEATURES if arr.shape[1] == len(FEATURES) else [f"x{i}" for i in range(arr.shape[1])]
                df = pd.DataFrame(arr, columns=names)
            from sklearn.utils.validation import column_or_1d

            y = column_or_1d(y, dtype=float, warn=True)
            if len(y) != len(df) or not np.isfinite(y).all():
                raise ValueError(f"y must be {len(df)} finite SOH values (one per row), got shape {y.shape}")
            df["soh"] = y
            if soc is not None:
                df["soc"] = np.asarray(soc, dtype=float)
            if battery_id is not None:
                df["battery_id"] = np.asarray(battery_id)
        self.generic_ = not all(c in df.columns for c in FEATURES)
        if not self.generic_:
            check_pulses(df, "training data")
        if self.regressor != "forest" and (self.generic_ or "soc" not in df.columns or "battery_id" not in df.columns):
            raise ValueError(f"regressor {self.regressor!r} needs U1..U21 in volts with the SOC (soc=...) and the battery "
                             f"(battery_id=...) of every row")
        if "battery_id" not in df.columns:
            if self.generator in {"residual", "interpolation"} and "soc" in df.columns and not self.generic_:
                raise ValueError(f"generator {self.generator!r} needs a battery_id column (or fit(..., battery_id=...)) to interpolate per battery")
            df["battery_id"] = np.arange(len(df)).astype(str)
        return df.reset_index(drop=True)

    def _features(self, df: pd.DataFrame) -> list[str]:
        return [c for c in df.columns if c.startswith("x")] if self.generic_ else FEATURES

    def _finish(self, df: pd.DataFrame, split: Split | None, rows: Rows, fitted) -> "SOHEstimator":
        self.generator_ = fitted
        if split is None:  # generic features or no SOC: the measured rows only
            self.train_X_, self.train_y_ = df[self._features(df)].to_numpy(float), df["soh"].to_numpy(float)
            self.measured_soc_, self.generated_soc_ = [], []
        else:
            self.train_X_, self.train_y_ = training_set(split, rows)
            self.measured_soc_ = list(split.train_levels)
            self.generated_soc_ = list(split.levels) if self.generator != "none" else []
        self.n_measured_ = len(df)
        self.n_features_in_ = self.train_X_.shape[1]
        self.design_ = design_of(df)
        self.measured_ = None
        if self.regressor != "forest":  # what the invariant estimator fits on (and a saved model refits from)
            self.measured_ = df[[*FEATURES, "soc", "soh"]].astype(float).assign(
                battery_id=df["battery_id"].astype(str), cell=_cells(df).astype(str)).reset_index(drop=True)
        self.calibration_scores_ = np.zeros(0)
        return self

    def _fit_regressor(self) -> "SOHEstimator":
        """Fit :attr:`regressor_`: the paper's forest on the training set (its seed from ``random_state``),
        or the invariant-feature estimator on the measured rows (:attr:`measured_`)."""
        if self.regressor == "forest":
            self.regressor_ = fit_forest(self.train_X_, self.train_y_, derive_seed(int(self.random_state), "forest"), threads=1)
        else:
            from battgen.invariant_estimator import InvariantEstimator

            self.regressor_ = InvariantEstimator(self.regressor, soc_levels=tuple(int(s) for s in self.soc_levels),
                                                 random_state=int(self.random_state)).fit(self.measured_)
        return self

    def _predict_array(self, X: np.ndarray) -> np.ndarray:
        """:attr:`regressor_`'s SOH for rows of the training features (U1..U21, or generic columns)."""
        if self.regressor == "forest":
            return self.regressor_.predict(X)
        return self.regressor_.predict(pd.DataFrame(X, columns=FEATURES))

    def _fit_novelty(self, groups: np.ndarray) -> None:
        """The novelty score's reference pulses and its threshold (``groups``: the measured rows' physical batteries)."""
        self.novelty_ = NoveltyScore(int(self.novelty_k), float(self.false_alarm)).fit(
            self._shape(self.train_X_[: self.n_measured_]), groups, X_extra=self._shape(self.train_X_[self.n_measured_:]))

    def _shape(self, X: np.ndarray) -> np.ndarray:
        """What the novelty score compares: :func:`battgen.uncertainty.pulse_shape` of U1..U21."""
        return np.asarray(X, dtype=float) if self.generic_ else pulse_shape(X)

    def _novelty_from(self, stored: dict) -> NoveltyScore:
        """The novelty score of a loaded model: refitted reference, stored threshold."""
        X = self._shape(self.train_X_)
        return NoveltyScore.restored(int(self.novelty_k), float(self.false_alarm), X[: self.n_measured_],
                                     X[self.n_measured_:], stored["threshold"])

    def fit(self, X, y=None, *, soc=None, battery_id=None, progress: bool | None = None) -> "SOHEstimator":
        """Fit on measured rows: a :mod:`battgen.data` table (U1..U21, ``soc``, ``soh``,
        ``battery_id``, optionally ``cell``) or ``fit(X, y, soc=..., battery_id=...)`` with SOC as a
        fraction and the tested battery of each row (scikit-learn slices both with the rows; the
        name ``groups`` is left to the cross-validation splitters)."""
        return fit_estimators([self], [(X, y, soc, battery_id)], progress=progress)[0]

    # ------------------------------------------------------------------ prediction
    def _input(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "regressor_", msg="this SOHEstimator is not fitted yet; call fit() or SOHEstimator.load()")
        if self.generic_:
            from sklearn.utils.validation import check_array

            arr = check_array(X, dtype=float)
            if arr.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {arr.shape[1]} features, but SOHEstimator is expecting {self.n_features_in_} features as input")
            return arr
        df = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.atleast_2d(np.asarray(X, dtype=float)), columns=FEATURES)
        check_pulses(df, "input")
        refuse_declared(df, getattr(self, "design_", {}), "input")
        return df[FEATURES].to_numpy(float)

    def predict(self, X, interval: float | None = None):
        """SOH (fraction of nominal capacity) for each row of U1..U21 (volts); SOC is not needed.

        With ``interval`` (e.g. 0.9) returns ``(estimate, lower, upper)``: the split-conformal
        interval that held-out batteries' errors calibrate (infinite when the model has too few
        calibration scores for that coverage). Rows whose ``battery`` or ``pulse_width_s`` column
        declares another design or pulse width than the model's (:attr:`design_`) are refused.
        """
        rows = self._input(X)
        estimate = self._predict_array(rows)
        if interval is None:
            return estimate
        lower, upper = conformal_interval(estimate, self.calibration_scores_, float(interval))
        return estimate, lower, upper

    def novelty_score(self, X) -> np.ndarray:
        """How unlike the training pulses each row is (:class:`battgen.uncertainty.NoveltyScore`);
        above :attr:`novelty_threshold_` a row is flagged."""
        return self.novelty_.score(self._shape(self._input(X)))

    @property
    def novelty_threshold_(self) -> float:
        return self.novelty_.threshold_

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write one file readable by :meth:`load` (see :mod:`battgen.estimator.persistence`)."""
        from battgen.estimator import persistence

        return persistence.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SOHEstimator":
        """Read, verify and refit what :meth:`save` wrote (see :mod:`battgen.estimator.persistence`)."""
        from battgen.estimator import persistence

        return persistence.load(cls, path)


def _cells(df: pd.DataFrame) -> pd.Series:
    """The physical battery of each row: ``cell`` where the table has it (a cell tested several times), else ``battery_id``."""
    return df["cell"] if "cell" in df.columns else df["battery_id"]


def _calibration_rows(df: pd.DataFrame, levels: Sequence[int]) -> pd.DataFrame:
    """A held-out battery's calibration pulses: its measured rows plus its rows interpolated to ``levels``."""
    if not levels or "soc" not in df.columns:
        return df
    return pd.concat([df, interpolate_features(df, [lv / 100 for lv in levels])], ignore_index=True)


def fit_estimators(estimators: Sequence[SOHEstimator], data: Sequence, progress: bool | None = None) -> list[SOHEstimator]:
    """Fit several estimators at once; their generators train as stacks (one per configuration).

    ``data[i]`` is a :mod:`battgen.data` table or a tuple ``(X, y, soc, battery_id)``. Each
    estimator with ``calibration_folds`` also fits one copy per fold on the other batteries (in
    the same stacks) and keeps the copies' absolute errors on the held-out batteries' pulses.
    """
    frames = [est._measured(*(d if isinstance(d, tuple) else (d, None, None, None))) for est, d in zip(estimators, data)]
    plan, copies, copy_frames = [], [], []
    for i, (est, df) in enumerate(zip(estimators, frames)):
        groups = _cells(df).to_numpy()
        k = min(int(est.calibration_folds), len(set(groups.tolist())))
        if k < 2:
            continue
        for fold, held_out in enumerate(grouped_folds(groups, k, derive_seed(int(est.random_state), "calibration"))):
            copy = SOHEstimator(**{**est.get_params(), "calibration_folds": 0,
                                   "random_state": derive_seed(int(est.random_state), "calibration", fold)})
            plan.append((i, df[held_out]))
            copies.append(copy)
            copy.generic_ = est.generic_  # the rows were read and checked once, for the estimator itself
            copy_frames.append(df[~held_out].reset_index(drop=True))
    everyone, all_frames = list(estimators) + copies, frames + copy_frames
    splits = [None if est.generic_ or "soc" not in df.columns else est._split(df) for est, df in zip(everyone, all_frames)]
    for est, split in zip(estimators, splits):
        if split is not None and est.generator != "none" and split.levels and len(split.train_levels) < 2:
            raise ValueError(f"training data: one measured SOC level ({split.train_levels[0]} %); generator "
                             f"{est.generator!r} needs at least two to learn how the pulses change with SOC "
                             f"(measure another level, or use generator='none')")
    by_epochs: dict[int, list[int]] = {}
    for i, est in enumerate(everyone):
        by_epochs.setdefault(int(est.epochs), []).append(i)
    for idx in by_epochs.values():
        todo = [i for i in idx if splits[i] is not None]
        names = [[everyone[i].generator] if everyone[i].generator != "none" and splits[i].levels else [] for i in todo]
        rows, models = run_generators([splits[i] for i in todo], names, everyone[idx[0]]._settings(), progress)
        done = {i: (r[n[0]] if n else Rows.empty(), next(iter(m.values()), None)) for i, n, r, m in zip(todo, names, rows, models)}
        for i in idx:
            r, m = done.get(i, (Rows.empty(), None))
            everyone[i]._finish(all_frames[i], splits[i], r, m)
    in_threads(lambda i: everyone[i]._fit_regressor(), len(everyone))  # each seeded alone: the same bits in any order
    for est, df in zip(estimators, frames):
        est._fit_novelty(_cells(df).to_numpy())
    scores: dict[int, list[np.ndarray]] = {}
    for (i, held), copy in zip(plan, copies):
        est, split = estimators[i], splits[i]
        rows = held if split is None else _calibration_rows(held, split.levels if est.generator != "none" else [])
        X = rows[est._features(rows)].to_numpy(float)
        scores.setdefault(i, []).append(np.abs(rows["soh"].to_numpy(float) - copy._predict_array(X)))
    for i, parts in scores.items():
        estimators[i].calibration_scores_ = np.concatenate(parts)
    return list(estimators)

