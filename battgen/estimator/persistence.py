"""Saving and loading an estimator: one archive of arrays and JSON, verified on load.

:func:`save` writes one zip archive: ``battgen.json`` (the strings and numbers: format, parameters,
design, versions, the novelty threshold, the generator's settings) and one ``.npy`` file per array
(training rows, probe rows, interval scores, the generator's weights). :func:`load` reads the arrays
with ``numpy.load(allow_pickle=False)``, so no pickled object is ever executed, and never imports
torch (a CVAE generator's weights are arrays, :mod:`battgen.weights`). The regressor is not serialised: the file keeps its training
rows (measured + generated; for the invariant-feature regressors also the measured table they
interpolate themselves) and ``random_state``; :func:`load` refits it (the paper's forest and the
invariant estimators are deterministic for a fixed ``random_state``) and checks that its predictions
on stored probe rows equal those recorded at save time, bit for bit. The file is the same bytes for
the same training data, parameters and versions (entries in a fixed order with a fixed date, built in
memory, so no file name leaks into the archive); it records the versions of battgen, scikit-learn
and numpy and a sha256 of its own content, so that a damaged file is reported as "corrupt or
modified" and a regressor that refits differently is blamed on another version only when the
versions differ. The interval calibration scores and the novelty threshold are stored with it (they
need the training batteries to recompute).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from battgen.data import FEATURES
from battgen.estimator.inputs import CUSTOM, DECLARED
from battgen.io import npy_bytes, sha256_parts, write_bytes, zip_bytes

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load", "read_payload", "write_payload"]

FORMAT = "battgen.SOHEstimator"
FORMAT_VERSION = 4
_KEYS = {"format", "format_version", "params", "info", "design", "versions", "train_X", "train_y", "probe_X",
         "probe_pred", "calibration", "novelty", "sha256"}
_GENERATOR_KEYS = {"generator_state", "generator_meta"}
_MEASURED_KEYS = {"measured", "measured_groups"}
"""The measured table an invariant-feature regressor refits from: U1..U21, soc, soh (floats) and battery_id, cell."""
_MEASURED_COLUMNS = [*FEATURES, "soc", "soh"]
_JSON = "battgen.json"


def _probe(est) -> np.ndarray:
    """Rows for the reload check: midpoints of consecutive training rows (not training points)."""
    X = est.train_X_
    return 0.5 * (X[:-1] + X[1:]) if len(X) > 1 else X


def save(est, path: str | os.PathLike) -> Path:
    """Write one archive readable by :func:`load`, atomically; the same model gives the same bytes."""
    if not hasattr(est, "regressor_"):
        raise RuntimeError("fit the estimator before saving it")
    probe = _probe(est)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "params": json.dumps(est.get_params()),
        "info": json.dumps({"n_measured": est.n_measured_, "measured_soc": est.measured_soc_,
                            "generated_soc": est.generated_soc_, **getattr(est, "info_", {})}),
        "design": json.dumps(getattr(est, "design_", {c: CUSTOM for c in DECLARED})),
        "versions": json.dumps(_versions()),
        "train_X": np.asarray(est.train_X_, dtype=np.float64),
        "train_y": np.asarray(est.train_y_, dtype=np.float64),
        "probe_X": np.asarray(probe, dtype=np.float64),
        "probe_pred": np.asarray(est._predict_array(probe), dtype=np.float64),
        "calibration": np.asarray(est.calibration_scores_, dtype=np.float64),
        "novelty": json.dumps({"threshold": est.novelty_.threshold_, "n_reference_measured": est.n_measured_}),
    }
    if est.measured_ is not None:
        payload["measured"] = est.measured_[_MEASURED_COLUMNS].to_numpy(np.float64)
        payload["measured_groups"] = json.dumps({c: est.measured_[c].astype(str).tolist() for c in ("battery_id", "cell")})
    if est.generator_ is not None:
        g = est.generator_
        payload["generator_state"] = {k: np.array(v, dtype=np.float32) for k, v in g.weights.items()}
        payload["generator_meta"] = json.dumps({
            "model_config": g.config.to_dict(), "train_config": asdict(g.train_config),
            "feature_scaler": g.feature_scaler.to_dict(), "condition_scaler": g.condition_scaler.to_dict(),
            "history": g.history, "provenance": g.provenance}, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    payload["sha256"] = _digest(payload)
    return write_payload(payload, path)


def load(cls: type, path: str | os.PathLike):
    """Read what :func:`save` wrote, verify it, refit the regressor, check it.

    ``ValueError`` in one line: "not a battgen model file" for anything else, "corrupt or
    modified file" when the bytes are not what :func:`save` wrote (sha256, entries, refit
    with the same versions), "other version" only when the recorded versions differ.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    payload = read_payload(path)

    def corrupt(detail: str) -> ValueError:
        return ValueError(f"{path}: corrupt or modified file ({detail}); train the model again or restore the file")

    expected = _KEYS | {k for group in (_GENERATOR_KEYS, _MEASURED_KEYS) if set(payload) & group for k in group}
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
        est._fit_regressor()
        refit = est._predict_array(probe_X)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise corrupt(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    if not np.array_equal(refit, probe_pred):
        now = _versions()
        differ = [f"{k} {versions.get(k)} (this is {v})" for k, v in now.items() if versions.get(k) != v]
        if differ:
            raise ValueError(f"{path}: the refitted regressor does not reproduce the saved predictions: the file was "
                             f"written with another version: {', '.join(differ)}; train the model again with these versions")
        raise corrupt("the refitted regressor does not reproduce the predictions stored in it, with the same versions "
                      + ", ".join(f"{k} {v}" for k, v in now.items()))
    return est


def _versions() -> dict[str, str]:
    """The versions a saved model depends on (a regressor refits bit for bit only with the same ones);
    read from the installed packages' metadata, so that saving does not import scikit-learn. (A CVAE
    generator is stored as its weights and never runs at load: torch's version does not matter.)"""
    from importlib.metadata import version

    from battgen._version import __version__

    return {"battgen": __version__, "scikit-learn": version("scikit-learn"), "numpy": np.__version__}


def _canonical(value: Any) -> Iterator[bytes]:
    """A payload entry as byte strings that determine it (dtype, shape and data of arrays; sorted dicts)."""
    if isinstance(value, np.ndarray):
        yield f"array {value.dtype.str} {value.shape}".encode()
        yield np.ascontiguousarray(value).tobytes()
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


def _entries(payload: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    """The archive's files, in a fixed order: the JSON of the plain entries, then one ``.npy`` per array."""
    plain = {k: v for k, v in payload.items() if not isinstance(v, (np.ndarray, dict))}
    yield _JSON, json.dumps(plain, sort_keys=True).encode()
    for key in sorted(payload):
        if not isinstance(payload[key], (np.ndarray, dict)):
            continue
        arrays = payload[key] if isinstance(payload[key], dict) else {None: payload[key]}
        for name in sorted(arrays, key=str):
            yield (f"{key}.npy" if name is None else f"{key}/{name}.npy"), npy_bytes(arrays[name])


def write_payload(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a payload (plain strings and numbers, arrays, dicts of arrays) as the archive :func:`read_payload`
    reads, atomically; used by :func:`save` (and by tests that craft files)."""
    return write_bytes(zip_bytes(_entries(payload)), path)


def read_payload(path: str | os.PathLike) -> dict[str, Any]:
    """The saved entries, or ``ValueError``: not an archive, unreadable, or not a battgen model."""
    path = Path(path)
    raw = path.read_bytes()
    what = "not a battgen model file (written by `battgen train` / SOHEstimator.save)"
    if not raw.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path}: {what}: it is not a zip archive")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
            if _JSON not in names:
                raise ValueError(f"{path}: {what}")
            payload: dict[str, Any] = json.loads(archive.read(_JSON))
            for name in names:
                if name == _JSON:
                    continue
                array = np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
                key, _, member = name.removesuffix(".npy").partition("/")
                if member:
                    payload.setdefault(key, {})[member] = array
                else:
                    payload[key] = array
    except zipfile.BadZipFile as exc:
        if "CRC" not in str(exc):
            raise ValueError(f"{path}: corrupt or modified file, or {what}: it cannot be read ({exc})") from exc
        raise ValueError(f"{path}: corrupt or modified file (its content does not match the checksum recorded in it: "
                         f"{exc}); train the model again or restore the file") from exc
    except ValueError as exc:
        if str(exc).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: corrupt or modified file, or {what}: it cannot be read "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
    except Exception as exc:  # a damaged archive raises anything from BadZipFile to EOFError
        raise ValueError(f"{path}: corrupt or modified file, or {what}: it cannot be read "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: {what}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model file format {payload.get('format_version')!r} of another version of battgen; "
                         f"this version reads format {FORMAT_VERSION}: train the model again")
    return payload


def _restore(cls: type, payload: dict[str, Any]) -> tuple[Any, np.ndarray, np.ndarray, dict[str, str]]:
    """An estimator with its parameters, training rows, design and generator (the regressor is refit by the caller)."""
    import pandas as pd

    params = json.loads(payload["params"])
    if isinstance(params.get("soc_levels"), list):
        params["soc_levels"] = tuple(params["soc_levels"])  # JSON has no tuples; the default is one
    est = cls(**params)
    info = json.loads(payload["info"])
    est.n_measured_, est.measured_soc_, est.generated_soc_ = info["n_measured"], info["measured_soc"], info["generated_soc"]
    est.info_ = {k: v for k, v in info.items() if k not in {"n_measured", "measured_soc", "generated_soc"}}
    est.design_ = {c: json.loads(payload["design"])[c] for c in DECLARED}
    est.train_X_, est.train_y_ = payload["train_X"], payload["train_y"]
    est.n_features_in_ = est.train_X_.shape[1] if est.train_X_.ndim == 2 else 0
    est.generic_ = est.n_features_in_ != len(FEATURES)
    probe_X, probe_pred = payload["probe_X"], payload["probe_pred"]
    n = len(est.train_y_)
    if est.train_X_.shape != (n, len(FEATURES)) or probe_X.shape[1:] != (len(FEATURES),) or probe_pred.shape != probe_X.shape[:1]:
        raise ValueError(f"training rows {tuple(est.train_X_.shape)}, labels ({n},), probe rows {tuple(probe_X.shape)}: "
                         "shapes do not fit together")
    est.measured_ = None
    if "measured" in payload:
        groups = json.loads(payload["measured_groups"])
        est.measured_ = pd.DataFrame(payload["measured"], columns=_MEASURED_COLUMNS).assign(**groups)
    est.generator_ = None
    if "generator_state" in payload:
        from battgen.train import FittedCVAE

        est.generator_ = FittedCVAE.from_state(json.loads(payload["generator_meta"]), payload["generator_state"])
    est.calibration_scores_ = payload["calibration"]
    est.novelty_ = est._novelty_from(json.loads(payload["novelty"]))
    return est, probe_X, probe_pred, json.loads(payload["versions"])
