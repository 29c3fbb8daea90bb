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
probe rows equal those recorded at save time, bit for bit. The file is the same bytes for the
same training data, parameters and versions (it is serialised in memory, so no file name leaks
into the archive); it records the versions of battgen, scikit-learn, torch and numpy and a
sha256 of its own content, so that a damaged file is reported as "corrupt or modified" and a
forest that refits differently is blamed on another version only when the versions differ.

The model also records the battery design (``battery`` key, e.g. ``"LMO10"``) and the
``pulse_width_s`` of its training rows (``"custom"`` when they declare none or several);
:meth:`SOHEstimator.predict` refuses rows whose own ``battery`` / ``pulse_width_s`` columns
declare something else (:func:`declared_mismatches`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from battgen.data import FEATURES, battery_type, validate_features
from battgen.evaluation.core import run_generators, training_set
from battgen.evaluation.generators import GeneratorSettings, Rows
from battgen.evaluation.split import Split, derive_seed, estimator_split
from battgen.io import read_table, sha256_parts, write_bytes
from battgen.model import CVAE, CVAEConfig
from battgen.protocol import ALL_SOC
from battgen.soh import make_forest
from battgen.train import FittedCVAE, MinMaxScaler, TrainConfig

__all__ = ["SOHEstimator", "ESTIMATOR_GENERATORS", "fit_estimators", "read_pulses", "check_pulses",
           "declared_mismatches", "refuse_declared", "DECLARED", "CUSTOM"]

ESTIMATOR_GENERATORS = ("interpolation", "residual", "cvae", "cvae_plus", "none")
"""The generators of :mod:`battgen.evaluation.generators` an estimator can use."""
FORMAT = "battgen.SOHEstimator"
FORMAT_VERSION = 2
DECLARED = ("battery", "pulse_width_s")
"""Columns by which rows declare their battery design and pulse width; a model records both."""
CUSTOM = "custom"
"""The recorded design or pulse width of training rows that declare none, or several."""
_KEYS = {"format", "format_version", "params", "info", "design", "versions", "train_X", "train_y", "probe_X",
         "probe_pred", "sha256"}
_GENERATOR_KEYS = {"generator_state", "generator_meta"}


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
    ``cell`` exist, else the row number. ``features`` holds U1..U21 (floats) and, when the file
    has them, the declaring columns :data:`DECLARED` that :meth:`SOHEstimator.predict` checks.
    An empty, header-only, semicolon-separated or binary file (e.g. a workbook) is refused in
    one line by :func:`battgen.io.read_table`; the voltages are checked with :func:`check_pulses`.
    """
    path = Path(path)
    df = read_table(path, "the pulse voltages U1..U21 in volts, one row per pulse")
    check_pulses(df, str(path))
    if id_column is not None:
        if id_column not in df.columns:
            raise ValueError(f"{path}: id column {id_column!r} not found; columns are {list(df.columns)}")
        ids = df[[id_column]]
    else:
        cols = [c for c in ("id", "battery_id", "cell") if c in df.columns]
        ids = df[cols] if cols else pd.DataFrame({"row": np.arange(2, len(df) + 2)})
    X = df[FEATURES].astype(float).join(df[[c for c in DECLARED if c in df.columns]])
    return ids.reset_index(drop=True), X.reset_index(drop=True)


def _declared_value(col: str, value: Any) -> Any:
    """A declared battery as its design key (labels like "LMO 10 Ah" too), a pulse width as float seconds."""
    if col == "pulse_width_s":
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        return str(value).strip() if pd.isna(number) else float(number)
    try:
        return battery_type(str(value)).key
    except ValueError:
        return str(value).strip()


def _design(df: pd.DataFrame) -> dict[str, Any]:
    """What training rows declare: one battery design key and one pulse width, else :data:`CUSTOM`."""
    design = {}
    for col in DECLARED:
        values = {_declared_value(col, v) for v in df[col].dropna()} if col in df.columns else set()
        design[col] = values.pop() if len(values) == 1 else CUSTOM
    return design


def declared_mismatches(df: pd.DataFrame, design: dict[str, Any]) -> pd.Series:
    """Per row (by position): ``""``, or why the row's declared battery / pulse width is not the model's.

    Rows that declare nothing (no such column, or an empty cell) and models whose design is
    :data:`CUSTOM` are not checked: only a declaration that contradicts the model counts.
    """
    why = pd.Series("", index=range(len(df)), dtype=object)
    for col in DECLARED:
        want = design.get(col, CUSTOM)
        if want == CUSTOM or col not in df.columns:
            continue
        for i, value in enumerate(df[col]):
            if pd.isna(value) or str(value).strip() == "":
                continue
            got = _declared_value(col, value)
            same = abs(got - want) < 1e-9 if isinstance(got, float) and isinstance(want, float) else got == want
            if not same:
                unit = " s" if col == "pulse_width_s" else ""
                text = f"column {col!r} declares {got:g}{unit}" if isinstance(got, float) else f"column {col!r} declares {got}"
                want_text = f"{want:g}{unit}" if isinstance(want, float) else want
                why.iat[i] = (why.iat[i] + "; " if why.iat[i] else "") + f"{text}, the model was trained on {want_text}"
    return why


def refuse_declared(df: pd.DataFrame, design: dict[str, Any], source: str = "input", hint: str = "") -> None:
    """``ValueError`` in one line (first row, count) if any row declares another battery design or pulse width."""
    why = declared_mismatches(df, design)
    bad = np.flatnonzero(why.to_numpy() != "")
    if len(bad):
        more = f" (and {len(bad) - 1} more row{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise ValueError(f"{source}: row {bad[0] + 2}: {why.iat[bad[0]]}{more}; refusing to estimate SOH of "
                         f"pulses from another battery design or pulse width{hint}")


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
        self.design_ = _design(split.train)
        self.forest_ = make_forest(split.seed("forest")).fit(self.train_X_, self.train_y_)
        return self

    def fit(self, X, y=None, *, soc=None, groups=None, progress: bool | None = None) -> "SOHEstimator":
        """Fit on measured rows: a :mod:`battgen.data` table (U1..U21, ``soc``, ``soh``,
        ``battery_id``) or ``fit(X, y, soc=..., groups=...)`` with SOC as a fraction."""
        return fit_estimators([self], [(X, y, soc, groups)], progress=progress)[0]

    # ------------------------------------------------------------------ prediction
    def predict(self, X) -> np.ndarray:
        """SOH (fraction of nominal capacity) for each row of U1..U21 (volts); SOC is not needed.

        Rows whose ``battery`` or ``pulse_width_s`` column declares another battery design or
        pulse width than the model's (:attr:`design_`) are refused with ``ValueError``.
        """
        if not hasattr(self, "forest_"):
            raise RuntimeError("this SOHEstimator is not fitted yet; call fit() or SOHEstimator.load()")
        df = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.atleast_2d(np.asarray(X, dtype=float)), columns=FEATURES)
        check_pulses(df, "input")
        refuse_declared(df, getattr(self, "design_", {}), "input")
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
        """Write one file readable by :meth:`load` with ``torch.load(weights_only=True)``, atomically.

        Identical training data, parameters and versions give identical bytes.
        """
        if not hasattr(self, "forest_"):
            raise RuntimeError("fit the estimator before saving it")
        probe = self._probe()
        payload: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": json.dumps(self.get_params()),
            "info": json.dumps({"n_measured": self.n_measured_, "measured_soc": self.measured_soc_,
                                "generated_soc": self.generated_soc_, **getattr(self, "info_", {})}),
            "design": json.dumps(getattr(self, "design_", {c: CUSTOM for c in DECLARED})),
            "versions": json.dumps(_versions()),
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
        payload["sha256"] = _digest(payload)
        buffer = io.BytesIO()  # in memory: torch.save would name the archive's entries after the file
        torch.save(payload, buffer)
        return write_bytes(buffer.getvalue(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SOHEstimator":
        """Read what :meth:`save` wrote (``weights_only=True``), verify it, refit the forest, check it.

        ``ValueError`` in one line: "not a battgen model file" for anything else, "corrupt or
        modified file" when the bytes are not what :meth:`save` wrote (sha256, entries, refit
        with the same versions), "other version" only when the recorded versions differ.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        payload = _read_payload(path)

        def corrupt(detail: str) -> ValueError:
            return ValueError(f"{path}: corrupt or modified file ({detail}); train the model again or restore the file")

        expected = _KEYS | (_GENERATOR_KEYS if set(payload) & _GENERATOR_KEYS else set())
        for problem, keys in (("is missing", expected - set(payload)), ("is unknown", set(payload) - expected)):
            if keys:
                raise corrupt(f"entry {sorted(map(str, keys))[0]!r} {problem}")
        try:
            digest = _digest(payload)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise corrupt(f"unexpected content: {exc}") from exc
        if digest != payload["sha256"]:
            raise corrupt("its content does not match the sha256 recorded in it")
        try:
            est, probe_X, probe_pred, versions = _restore(cls, payload)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise corrupt(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc
        est.forest_ = make_forest(derive_seed(est.random_state, "forest")).fit(est.train_X_, est.train_y_)
        if not np.array_equal(est.forest_.predict(probe_X), probe_pred):
            now = _versions()
            differ = [f"{k} {versions.get(k)} (this is {v})" for k, v in now.items() if versions.get(k) != v]
            if differ:
                raise ValueError(f"{path}: the refitted forest does not reproduce the saved predictions: the file was "
                                 f"written with another version: {', '.join(differ)}; train the model again with these versions")
            raise corrupt("the refitted forest does not reproduce the predictions stored in it, with the same versions "
                          + ", ".join(f"{k} {v}" for k, v in now.items()))
        return est


def _versions() -> dict[str, str]:
    """The versions a saved model depends on (a forest refits bit for bit only with the same ones)."""
    import sklearn

    from battgen._version import __version__

    return {"battgen": __version__, "scikit-learn": sklearn.__version__, "torch": torch.__version__, "numpy": np.__version__}


def _canonical(value: Any) -> Iterator[bytes]:
    """A payload entry as byte strings that determine it (dtype, shape and data of tensors; sorted dicts)."""
    if isinstance(value, torch.Tensor):
        yield f"tensor {value.dtype} {tuple(value.shape)}".encode()
        yield value.detach().cpu().contiguous().numpy().tobytes()
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield f"key {key!r}".encode()
            yield from _canonical(value[key])
    elif isinstance(value, (str, int, float, bool)):
        yield f"{type(value).__name__} {value!r}".encode()
    else:
        raise TypeError(f"an entry of type {type(value).__name__}")


def _digest(payload: dict[str, Any]) -> str:
    """sha256 of every payload entry but ``sha256`` itself."""
    return sha256_parts(*_canonical({k: v for k, v in payload.items() if k != "sha256"}))


def _read_payload(path: Path) -> dict[str, Any]:
    """The saved dict, or ``ValueError``: not a torch archive, unreadable, or not a battgen model."""
    raw = path.read_bytes()
    what = "not a battgen model file (written by `battgen train` / SOHEstimator.save)"
    if not raw.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path}: {what}: it is not a torch archive")
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged archive raises anything from RuntimeError to IndexError
        raise ValueError(f"{path}: corrupt or modified file, or {what}: torch cannot read it "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: {what}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model file format {payload.get('format_version')!r} of another version of battgen; "
                         f"this version reads format {FORMAT_VERSION}: train the model again")
    return payload


def _restore(cls: type, payload: dict[str, Any]) -> tuple[SOHEstimator, np.ndarray, np.ndarray, dict[str, str]]:
    """An estimator with its parameters, training rows, design and generator (the forest is refit by the caller)."""
    est = cls(**json.loads(payload["params"]))
    info = json.loads(payload["info"])
    est.n_measured_, est.measured_soc_, est.generated_soc_ = info["n_measured"], info["measured_soc"], info["generated_soc"]
    est.info_ = {k: v for k, v in info.items() if k not in {"n_measured", "measured_soc", "generated_soc"}}
    est.design_ = {c: json.loads(payload["design"])[c] for c in DECLARED}
    est.train_X_, est.train_y_ = payload["train_X"].numpy(), payload["train_y"].numpy()
    probe_X, probe_pred = payload["probe_X"].numpy(), payload["probe_pred"].numpy()
    n = len(est.train_y_)
    if est.train_X_.shape != (n, len(FEATURES)) or probe_X.shape[1:] != (len(FEATURES),) or probe_pred.shape != probe_X.shape[:1]:
        raise ValueError(f"training rows {tuple(est.train_X_.shape)}, labels ({n},), probe rows {tuple(probe_X.shape)}: "
                         "shapes do not fit together")
    est.generator_ = None
    if "generator_state" in payload:
        meta = json.loads(payload["generator_meta"])
        model = CVAE(CVAEConfig(**meta["model_config"]))
        model.load_state_dict(payload["generator_state"])
        model.eval()
        est.generator_ = FittedCVAE(model, MinMaxScaler.from_dict(meta["feature_scaler"]),
                                    MinMaxScaler.from_dict(meta["condition_scaler"]), TrainConfig(**meta["train_config"]),
                                    meta["history"], meta["provenance"])
    return est, probe_X, probe_pred, json.loads(payload["versions"])


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
