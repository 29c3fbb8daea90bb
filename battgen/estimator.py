"""A deployable SOH estimator for batteries whose SOC nobody tells you.

:class:`SOHEstimator` is trained on pulses measured at a few SOC levels plus pulses generated at
the other levels of 5-50 % SOC, and predicts SOH from U1..U21 alone. It follows the
scikit-learn conventions (``fit`` returns the estimator, ``predict`` returns an array,
``random_state`` fixes everything). Generators (``generator=``):

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
evaluation core's, so the estimator and its benchmark run the same code. The regressor is the
paper's forest (:func:`battgen.soh.make_forest`).

Saving (:meth:`SOHEstimator.save`) writes one file with :func:`torch.save` holding only tensors,
strings and numbers, and :meth:`SOHEstimator.load` reads it with ``weights_only=True``, so no
pickled object is ever executed. The forest is not serialised: the file keeps the forest's
training rows (measured + generated) and ``random_state``, :meth:`load` refits it (the paper's
forest is deterministic for a fixed ``random_state``) and checks that its predictions on stored
probe rows equal those recorded at save time, bit for bit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from battgen.data import FEATURES, validate_features
from battgen.evaluation.core import run_generators, training_set
from battgen.evaluation.generators import GeneratorSettings, Rows
from battgen.evaluation.split import Split, derive_seed, estimator_split
from battgen.io import atomic_path
from battgen.model import CVAE, CVAEConfig
from battgen.protocol import ALL_SOC
from battgen.soh import make_forest
from battgen.train import FittedCVAE, MinMaxScaler, TrainConfig

__all__ = ["SOHEstimator", "ESTIMATOR_GENERATORS", "fit_estimators", "read_pulses", "check_pulses"]

ESTIMATOR_GENERATORS = ("interpolation", "residual", "cvae", "cvae_plus", "none")
"""The generators of :mod:`battgen.evaluation.generators` an estimator can use."""
FORMAT = "battgen.SOHEstimator"
FORMAT_VERSION = 1


def check_pulses(df: pd.DataFrame, source: str = "input") -> None:
    """Raise ``ValueError`` naming the problem for pulses that cannot be read as U1..U21 in volts.

    Missing columns are all listed at once; a non-number, a missing value (NaN) or a voltage
    outside 1.5-5 V (millivolts?) is reported with its column and row (row 2 is the first data
    row of a CSV file, after the header).
    """
    missing = [c for c in FEATURES if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}; expected the 21 pulse voltages U1..U21 in volts")
    validate_features(df.reset_index(drop=True), source)


def read_pulses(path: str | os.PathLike, id_column: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a CSV (or records JSON) of pulses; return ``(ids, features)``.

    The file may be in the :mod:`battgen.data` schema or hold just U1..U21 (plus any id
    columns). ``ids`` holds ``id_column`` if given, else whichever of ``id``, ``battery_id``,
    ``cell`` exist, else the row number. Checked with :func:`check_pulses`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    df = pd.read_json(path, orient="records") if path.suffix == ".json" else pd.read_csv(path)
    check_pulses(df, str(path))
    if id_column is not None:
        if id_column not in df.columns:
            raise ValueError(f"{path}: id column {id_column!r} not found; columns are {list(df.columns)}")
        ids = df[[id_column]]
    else:
        cols = [c for c in ("id", "battery_id", "cell") if c in df.columns]
        ids = df[cols] if cols else pd.DataFrame({"row": np.arange(2, len(df) + 2)})
    return ids.reset_index(drop=True), df[FEATURES].astype(float).reset_index(drop=True)


class SOHEstimator:
    """SOH from U1..U21 at an unknown SOC, trained on a few measured SOC levels plus generated ones.

    Parameters
    ----------
    generator: one of :data:`ESTIMATOR_GENERATORS` (see the module docstring).
    soc_levels: SOC levels (%) the training set should cover; the unmeasured ones are generated.
    epochs: generator training epochs (the paper's 50).
    n_grid: SOH grid size for the CVAE generators (default: number of training batteries).
    random_state: seeds the generator fit, the sampling and the forest.
    """

    def __init__(self, generator: str = "interpolation", soc_levels: Sequence[int] = ALL_SOC, epochs: int = 50,
                 n_grid: int | None = None, random_state: int = 0):
        self.generator = generator
        self.soc_levels = tuple(int(s) for s in soc_levels)
        self.epochs = int(epochs)
        self.n_grid = n_grid
        self.random_state = int(random_state)

    # ------------------------------------------------------------------ scikit-learn protocol
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"generator": self.generator, "soc_levels": self.soc_levels, "epochs": self.epochs,
                "n_grid": self.n_grid, "random_state": self.random_state}

    def set_params(self, **params: Any) -> "SOHEstimator":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"SOHEstimator({args})"

    # ------------------------------------------------------------------ fitting
    def _settings(self) -> GeneratorSettings:
        return GeneratorSettings(train=TrainConfig(epochs=self.epochs))

    def _split(self, df: pd.DataFrame) -> Split:
        return estimator_split(df, self.soc_levels, (self.random_state,), n_grid=self.n_grid)

    def _measured(self, X, y=None, soc=None, groups=None) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame) and y is None:
            df = X.copy()
            for col in ("soc", "soh"):
                if col not in df.columns:
                    raise ValueError(f"training data: column {col!r} is missing; pass a battgen.data table or fit(X, y, soc=...)")
        else:
            df = pd.DataFrame(np.asarray(X, dtype=float), columns=FEATURES) if not isinstance(X, pd.DataFrame) else X.copy()
            if y is None or soc is None:
                raise ValueError("fit(X, y, soc=...) needs the SOH labels y and the SOC (fraction) of every row")
            df["soh"], df["soc"] = np.asarray(y, dtype=float), np.asarray(soc, dtype=float)
            if groups is not None:
                df["battery_id"] = np.asarray(groups)
        check_pulses(df, "training data")
        if "battery_id" not in df.columns:
            if self.generator in {"residual", "interpolation"}:
                raise ValueError(f"generator {self.generator!r} needs a battery_id column (or groups=) to interpolate per battery")
            df["battery_id"] = np.arange(len(df)).astype(str)
        df = df.reset_index(drop=True)
        if self.generator not in ESTIMATOR_GENERATORS:
            raise ValueError(f"generator must be one of {ESTIMATOR_GENERATORS}, got {self.generator!r}")
        return df

    def _finish(self, split: Split, rows: Rows, fitted: FittedCVAE | None) -> "SOHEstimator":
        self.generator_ = fitted
        self.train_X_, self.train_y_ = training_set(split, rows)
        self.n_measured_ = len(split.train)
        self.measured_soc_ = list(split.train_levels)
        self.generated_soc_ = list(split.levels) if self.generator != "none" else []
        self.forest_ = make_forest(split.seed("forest")).fit(self.train_X_, self.train_y_)
        return self

    def fit(self, X, y=None, *, soc=None, groups=None, progress: bool | None = None) -> "SOHEstimator":
        """Fit on measured rows: a :mod:`battgen.data` table (U1..U21, ``soc``, ``soh``,
        ``battery_id``) or ``fit(X, y, soc=..., groups=...)`` with SOC as a fraction."""
        return fit_estimators([self], [(X, y, soc, groups)], progress=progress)[0]

    # ------------------------------------------------------------------ prediction
    def predict(self, X) -> np.ndarray:
        """SOH (fraction of nominal capacity) for each row of U1..U21 (volts); SOC is not needed."""
        if not hasattr(self, "forest_"):
            raise RuntimeError("this SOHEstimator is not fitted yet; call fit() or SOHEstimator.load()")
        df = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.atleast_2d(np.asarray(X, dtype=float)), columns=FEATURES)
        check_pulses(df, "input")
        return self.forest_.predict(df[FEATURES].to_numpy(float))

    def score(self, X, y) -> float:
        """Negative MAPE (%), so that higher is better as scikit-learn expects."""
        from battgen.soh import mape

        return -mape(np.asarray(y, dtype=float), self.predict(X))[0]

    # ------------------------------------------------------------------ persistence
    def _probe(self) -> np.ndarray:
        """Rows for the reload check: midpoints of consecutive training rows (not training points)."""
        X = self.train_X_
        return 0.5 * (X[:-1] + X[1:]) if len(X) > 1 else X

    def save(self, path: str | os.PathLike) -> Path:
        """Write one file readable by :meth:`load` with ``torch.load(weights_only=True)``."""
        if not hasattr(self, "forest_"):
            raise RuntimeError("fit the estimator before saving it")
        import sklearn

        from battgen._version import __version__

        probe = self._probe()
        payload: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": json.dumps(self.get_params()),
            "info": json.dumps({"n_measured": self.n_measured_, "measured_soc": self.measured_soc_,
                                "generated_soc": self.generated_soc_, "battgen": __version__,
                                "sklearn": sklearn.__version__, **getattr(self, "info_", {})}),
            "train_X": torch.as_tensor(self.train_X_, dtype=torch.float64),
            "train_y": torch.as_tensor(self.train_y_, dtype=torch.float64),
            "probe_X": torch.as_tensor(probe, dtype=torch.float64),
            "probe_pred": torch.as_tensor(self.forest_.predict(probe), dtype=torch.float64),
        }
        if self.generator_ is not None:
            g = self.generator_
            payload["generator_state"] = {k: v.detach().clone() for k, v in g.model.state_dict().items()}
            payload["generator_meta"] = json.dumps({
                "model_config": g.config.to_dict(), "train_config": asdict(g.train_config),
                "feature_scaler": g.feature_scaler.to_dict(), "condition_scaler": g.condition_scaler.to_dict(),
                "history": g.history, "provenance": g.provenance}, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SOHEstimator":
        """Read what :meth:`save` wrote (``weights_only=True``), refit the forest, verify it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a battgen SOHEstimator file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a battgen SOHEstimator file")
        if payload.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {payload.get('format_version')!r}, expected {FORMAT_VERSION}")
        params = json.loads(payload["params"])
        est = cls(**params)
        info = json.loads(payload["info"])
        est.n_measured_, est.measured_soc_, est.generated_soc_ = info["n_measured"], info["measured_soc"], info["generated_soc"]
        est.info_ = {k: v for k, v in info.items() if k not in {"n_measured", "measured_soc", "generated_soc"}}
        est.train_X_ = payload["train_X"].numpy()
        est.train_y_ = payload["train_y"].numpy()
        est.forest_ = make_forest(derive_seed(est.random_state, "forest")).fit(est.train_X_, est.train_y_)
        pred = est.forest_.predict(payload["probe_X"].numpy())
        if not np.array_equal(pred, payload["probe_pred"].numpy()):
            raise ValueError(f"{path}: the refitted forest does not reproduce the saved predictions "
                             f"(saved with scikit-learn {info.get('sklearn')}; refit the model with this version)")
        est.generator_ = None
        if "generator_state" in payload:
            meta = json.loads(payload["generator_meta"])
            model = CVAE(CVAEConfig(**meta["model_config"]))
            model.load_state_dict(payload["generator_state"])
            model.eval()
            est.generator_ = FittedCVAE(model, MinMaxScaler.from_dict(meta["feature_scaler"]),
                                        MinMaxScaler.from_dict(meta["condition_scaler"]), TrainConfig(**meta["train_config"]),
                                        meta["history"], meta["provenance"])
        return est


def fit_estimators(estimators: Sequence[SOHEstimator], data: Sequence, progress: bool | None = None) -> list[SOHEstimator]:
    """Fit several estimators at once; their generators train as stacks (one per configuration).

    ``data[i]`` is a :mod:`battgen.data` table or a tuple ``(X, y, soc, groups)``.
    """
    splits = [est._split(est._measured(*(d if isinstance(d, tuple) else (d, None, None, None))))
              for est, d in zip(estimators, data)]
    by_epochs: dict[int, list[int]] = {}
    for i, est in enumerate(estimators):
        by_epochs.setdefault(est.epochs, []).append(i)
    for idx in by_epochs.values():
        names = [[estimators[i].generator] if estimators[i].generator != "none" and splits[i].levels else [] for i in idx]
        rows, models = run_generators([splits[i] for i in idx], names, estimators[idx[0]]._settings(), progress)
        for i, gen_names, r, m in zip(idx, names, rows, models):
            estimators[i]._finish(splits[i], r[gen_names[0]] if gen_names else Rows.empty(), next(iter(m.values()), None))
    return list(estimators)
