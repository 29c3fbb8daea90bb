"""The one evaluation loop: fit the generators of many splits, generate, train forests, score.

Two ways to score a split, both with the paper's forest (:func:`battgen.soh.make_forest`; scored here
through :func:`battgen.soh.fit_forest`, the same trees and predictions bit for bit without
scikit-learn's per-tree overhead) seeded by the split's ``"forest"`` stream:

- **SOC known** (:func:`score_known_soc`; the paper's Phase 2 and the leak-free benchmark): at
  each of the split's levels, a forest trained on the rows generated *at that level*, scored on
  the test rows at that level. Predictors that generate nothing are scored on the same rows:
  ``baseline_constant`` (the training rows' mean SOH), ``phase1`` (one forest on the measured
  rows, SOC ignored) and ``baseline_soc_input`` (one forest with SOC as a 22nd input).
- **SOC unknown** (:func:`training_set`; :class:`battgen.estimator.SOHEstimator`): one forest on
  the measured rows plus the rows generated at every level; a pulse is scored without its SOC.

:func:`evaluate_known_soc` runs the first for many splits at once, training all their
generators as stacks and scoring the splits in threads over the usable cores (the tree builder
releases the GIL; every split is scored alone, so the threads change nothing but the wall time);
:func:`run_generators` is the part both ways share.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from battgen.config import paused_collector, usable_cores
from battgen.data import FEATURES
from battgen.evaluation.generators import FITS, GENERATORS, GeneratorSettings, Rows, applies, fit_models, generate, generator
from battgen.evaluation.split import Split
from battgen.protocol import soc_percent
from battgen.train import FittedCVAE

__all__ = [
    "PREDICTORS",
    "RESULT_COLUMNS",
    "constant_predictions",
    "group_masks",
    "run_generators",
    "training_set",
    "score_known_soc",
    "evaluate_known_soc",
]

PREDICTORS: dict[str, str] = {
    "baseline_constant": "the training batteries' mean SOH, whatever the pulse",
    "phase1": "one forest on the measured rows at the training SOC levels (SOC ignored)",
    "baseline_soc_input": "one forest on the measured rows with SOC as a 22nd input",
}
"""Methods scored beside the generators that generate nothing."""

RESULT_COLUMNS = ["battery", "pulse_width_s", "case", "kind", "seed", "fold", "test_soc", "method", "mape", "ape_std",
                  "n_train", "n_test"]
"""Columns of :func:`evaluate_known_soc` (the paper's protocol leaves ``fold`` out)."""


def constant_predictions(train_soh: np.ndarray, n: int) -> np.ndarray:
    """``n`` copies of the mean of ``train_soh`` (every PulseBat battery has the same number of
    rows in a split, so the mean over rows is the mean over batteries)."""
    return np.full(int(n), float(np.mean(np.asarray(train_soh, dtype=float))))


def run_generators(splits: Sequence[Split], names: Sequence[Sequence[str]], settings: GeneratorSettings | None = None,
                   progress: bool | None = None) -> tuple[list[dict[str, Rows]], list[dict[str, FittedCVAE]]]:
    """Generate, for split ``i``, the rows of every generator in ``names[i]``.

    The models the generators need are trained first, all splits at once: per fit (in the order
    of :data:`battgen.evaluation.generators.FITS`), per split. Returns the generated rows and the
    fitted models, per split (``{generator name: Rows}``, ``{fit name: FittedCVAE}``).
    """
    models = _fit_for(splits, names, settings, progress)
    rows = in_threads(lambda i: _generated(splits[i], names[i], models[i]), len(splits), _costs(splits))
    return rows, models


def _fit_for(splits: Sequence[Split], names: Sequence[Sequence[str]], settings: GeneratorSettings | None,
             progress: bool | None) -> list[dict[str, FittedCVAE]]:
    """The fitted models the generators ``names[i]`` of split ``i`` need, trained as one stack of fits."""
    requests = [(i, fit) for fit in FITS for i, split_names in enumerate(names)
                if any(GENERATORS[n].fit == fit for n in split_names)]
    fitted = fit_models([(splits[i], fit) for i, fit in requests], settings, progress)
    models: list[dict[str, FittedCVAE]] = [{} for _ in splits]
    for (i, fit), model in zip(requests, fitted):
        models[i][fit] = model
    return models


def _generated(split: Split, names: Sequence[str], models: dict[str, FittedCVAE]) -> dict[str, Rows]:
    """Every generator's rows for one split (each draws from its own seeded stream: threads change nothing)."""
    return {n: generate(split, n, models.get(GENERATORS[n].fit)) for n in names}


def _costs(splits: Sequence[Split]) -> list[int]:
    """A split's rows, training and test: what its generation and forests roughly cost (the threads take the largest first)."""
    return [len(s.train) + len(s.test) for s in splits]


def training_set(split: Split, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """SOC unknown: the measured rows plus the generated ones, ``(X (n, 21), soh (n,))``."""
    return (np.vstack([split.train[FEATURES].to_numpy(float), rows.X]),
            np.concatenate([split.train["soh"].to_numpy(float), rows.soh]))


def group_masks(frame: pd.DataFrame, by: Sequence[str]) -> list[tuple[tuple, np.ndarray]]:
    """``(values of the by columns, boolean row mask)`` per group of ``frame``, in order of appearance
    (one group of every row when ``by`` is empty)."""
    if not by:
        return [((), np.ones(len(frame), dtype=bool))]
    values = frame[list(by)].to_numpy()
    if len(by) == 1:  # one column (a battery's cell, say): its values are the groups
        codes, uniques = pd.factorize(frame[by[0]], use_na_sentinel=False)
    else:
        codes, uniques = pd.factorize(frame[list(by)].astype(str).agg("\x1f".join, axis=1))
    return [(tuple(values[np.argmax(codes == k)]), codes == k) for k in range(len(uniques))]


def score_known_soc(split: Split, generated: dict[str, Rows], predictors: Sequence[str] = tuple(PREDICTORS),
                    by: Sequence[str] = ()) -> list[dict[str, Any]]:
    """SOC known: per level of the split, every predictor and every generator's forest (see the module docstring).

    One row per level and method; with ``by`` (columns of the test rows, e.g. ``("cell",)``) one
    row per level, method and value of ``by``: the scores of each physical battery, which is what
    battery-level statistics resample (:func:`battgen.evaluation.stats.battery_summary`).
    """
    from battgen.soh import absolute_percentage_errors, fit_forest  # scikit-learn, on first use

    unknown = set(predictors) - set(PREDICTORS)
    if unknown:
        raise ValueError(f"unknown predictor(s) {sorted(unknown)}; expected some of {list(PREDICTORS)}")
    rs = split.seed("forest")
    X_train, y_train = split.train[FEATURES].to_numpy(float), split.train["soh"].to_numpy(float)
    phase1 = fit_forest(X_train, y_train, rs, threads=1) if "phase1" in predictors else None
    soc_forest = (fit_forest(split.train[FEATURES + ["soc"]].to_numpy(float), y_train, rs, threads=1)
                  if "baseline_soc_input" in predictors else None)
    test_socs = soc_percent(split.test)
    rows = []
    for level in split.levels:
        test = split.test[test_socs == level]
        X_test, y_test = test[FEATURES].to_numpy(float), test["soh"].to_numpy(float)
        preds: dict[str, tuple[np.ndarray, int]] = {}
        if "baseline_constant" in predictors:
            preds["baseline_constant"] = (constant_predictions(y_train, len(test)), len(X_train))
        if phase1 is not None:
            preds["phase1"] = (phase1.predict(X_test), len(X_train))
        if soc_forest is not None:
            preds["baseline_soc_input"] = (soc_forest.predict(test[FEATURES + ["soc"]].to_numpy(float)), len(X_train))
        for name, generated_rows in generated.items():
            at = generated_rows.at(level)
            forest = fit_forest(at.X, at.soh, rs, threads=1)  # labels: the SOH each row was generated for
            preds[GENERATORS[name].label] = (forest.predict(X_test), len(at.soh))
        groups = group_masks(test, by)
        for method, (pred, n_train) in preds.items():
            ape = absolute_percentage_errors(y_test, pred)  # per row: a group's rows give its MAPE and spread
            for key, at in groups:
                rows.append({**split.labels, **dict(zip(by, key)), "test_soc": level, "method": method,
                             "mape": float(ape[at].mean()), "ape_std": float(ape[at].std()), "n_train": n_train,
                             "n_test": int(at.sum())})
    return rows


def in_threads(task: Callable[[int], Any], n: int, costs: Sequence[float] | None = None) -> list[Any]:
    """``[task(0), ..., task(n - 1)]``, computed in threads over the usable cores (for independent,
    GIL-releasing work such as tree building: the results do not depend on the threads). With
    ``costs``, the threads start with the costliest tasks, so that no core idles at the end behind a
    long last task; the results keep the order of the tasks."""
    workers = min(n, usable_cores())
    if workers <= 1:
        return [task(i) for i in range(n)]
    order = list(range(n)) if costs is None else sorted(range(n), key=lambda i: -costs[i])
    out: list[Any] = [None] * n
    with ThreadPoolExecutor(workers) as pool:
        for i, result in zip(order, pool.map(task, order)):
            out[i] = result
    return out


def evaluate_known_soc(splits: Sequence[Split], generators: Sequence[str], predictors: Sequence[str] = tuple(PREDICTORS),
                       settings: GeneratorSettings | None = None, progress: bool | None = None, by: Sequence[str] = (),
                       ) -> tuple[pd.DataFrame, list[dict[str, FittedCVAE]]]:
    """Score ``predictors`` and ``generators`` (those that apply to each split) on every split.

    Returns the tidy table (:data:`RESULT_COLUMNS`, plus the ``by`` columns: see
    :func:`score_known_soc`) and the fitted models per split.
    """
    if "none" in generators:
        raise ValueError("'none' generates nothing; with SOC known its forest is the predictor 'phase1'")
    names = [[n for n in generators if applies(generator(n), s)] for s in splits]
    with paused_collector():  # fits and forests make no reference cycles; collections only cost time
        models = _fit_for(splits, names, settings, progress)
        parts = in_threads(lambda i: score_known_soc(splits[i], _generated(splits[i], names[i], models[i]), predictors, by),
                           len(splits), _costs(splits))  # a split's rows generated and scored by one thread
    rows = [r for part in parts for r in part]
    columns = RESULT_COLUMNS[:RESULT_COLUMNS.index("test_soc")] + list(by) + RESULT_COLUMNS[RESULT_COLUMNS.index("test_soc"):]
    return pd.DataFrame(rows, columns=columns), models
