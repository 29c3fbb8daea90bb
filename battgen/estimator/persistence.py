"""Saving and loading an estimator: one file of tensors, strings and numbers, verified on load.

:func:`save` writes one file with :func:`torch.save` holding only tensors, strings and numbers,
and :func:`load` reads it with ``weights_only=True``, so no pickled object is ever executed. The
forest is not serialised: the file keeps the forest's training rows (measured + generated) and
``random_state``; :func:`load` refits it (the paper's forest is deterministic for a fixed
``random_state``) and checks that its predictions on stored probe rows equal those recorded at
save time, bit for bit. The file is the same bytes for the same training data, parameters and
versions (it is serialised in memory, so no file name leaks into the archive); it records the
versions of battgen, scikit-learn, torch and numpy and a sha256 of its own content, so that a
damaged file is reported as "corrupt or modified" and a forest that refits differently is
blamed on another version only when the versions differ. The interval calibration scores and
the novelty threshold are stored with it (they need the training batteries to recompute).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from battgen.data import FEATURES
from battgen.estimator.inputs import CUSTOM, DECLARED
from battgen.evaluation.split import derive_seed
from battgen.io import sha256_parts, write_bytes
from battgen.model import CVAE, CVAEConfig
from battgen.soh import make_forest
from battgen.train import FittedCVAE, MinMaxScaler, TrainConfig

__all__ = ["FORMAT", "FORMAT_VERSION", "save", "load"]

FORMAT = "battgen.SOHEstimator"
FORMAT_VERSION = 3
_KEYS = {"format", "format_version", "params", "info", "design", "versions", "train_X", "train_y", "probe_X",
         "probe_pred", "calibration", "novelty", "sha256"}
_GENERATOR_KEYS = {"generator_state", "generator_meta"}


def _probe(est) -> np.ndarray:
    """Rows for the reload check: midpoints of consecutive training rows (not training points)."""
    X = est.train_X_
    return 0.5 * (X[:-1] + X[1:]) if len(X) > 1 else X


def save(est, path: str | os.PathLike) -> Path:
    """Write one file readable by :func:`load` with ``torch.load(weights_only=True)``, atomically.

    Identical training data, parameters and versions give identical bytes.
    """
    if not hasattr(est, "forest_"):
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
        "train_X": torch.as_tensor(est.train_X_, dtype=torch.float64),
        "train_y": torch.as_tensor(est.train_y_, dtype=torch.float64),
        "probe_X": torch.as_tensor(probe, dtype=torch.float64),
        "probe_pred": torch.as_tensor(est.forest_.predict(probe), dtype=torch.float64),
        "calibration": torch.as_tensor(est.calibration_scores_, dtype=torch.float64),
        "novelty": json.dumps({"threshold": est.novelty_.threshold_, "n_reference_measured": est.n_measured_}),
    }
    if est.generator_ is not None:
        g = est.generator_
        payload["generator_state"] = {k: v.detach().clone() for k, v in g.model.state_dict().items()}
        payload["generator_meta"] = json.dumps({
            "model_config": g.config.to_dict(), "train_config": asdict(g.train_config),
            "feature_scaler": g.feature_scaler.to_dict(), "condition_scaler": g.condition_scaler.to_dict(),
            "history": g.history, "provenance": g.provenance}, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    payload["sha256"] = _digest(payload)
    buffer = io.BytesIO()  # in memory: torch.save would name the archive's entries after the file
    torch.save(payload, buffer)
    return write_bytes(buffer.getvalue(), path)


def load(cls: type, path: str | os.PathLike):
    """Read what :func:`save` wrote (``weights_only=True``), verify it, refit the forest, check it.

    ``ValueError`` in one line: "not a battgen model file" for anything else, "corrupt or
    modified file" when the bytes are not what :func:`save` wrote (sha256, entries, refit
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


def _restore(cls: type, payload: dict[str, Any]) -> tuple[Any, np.ndarray, np.ndarray, dict[str, str]]:
    """An estimator with its parameters, training rows, design and generator (the forest is refit by the caller)."""
    params = json.loads(payload["params"])
    if isinstance(params.get("soc_levels"), list):
        params["soc_levels"] = tuple(params["soc_levels"])  # JSON has no tuples; the default is one
    est = cls(**params)
    info = json.loads(payload["info"])
    est.n_measured_, est.measured_soc_, est.generated_soc_ = info["n_measured"], info["measured_soc"], info["generated_soc"]
    est.info_ = {k: v for k, v in info.items() if k not in {"n_measured", "measured_soc", "generated_soc"}}
    est.design_ = {c: json.loads(payload["design"])[c] for c in DECLARED}
    est.train_X_, est.train_y_ = payload["train_X"].numpy(), payload["train_y"].numpy()
    est.n_features_in_ = est.train_X_.shape[1] if est.train_X_.ndim == 2 else 0
    est.generic_ = est.n_features_in_ != len(FEATURES)
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
    est.calibration_scores_ = payload["calibration"].numpy()
    est.novelty_ = est._novelty_from(json.loads(payload["novelty"]))
    return est, probe_X, probe_pred, json.loads(payload["versions"])
