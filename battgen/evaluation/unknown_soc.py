"""SOH at an unknown SOC: estimators on SOC-invariant features, SOC inferred first, and a nested choice.

The estimators (:class:`InvariantEstimator`, one per method of :data:`NEW_METHODS`) read only
U1..U21 at prediction time, through the features of :mod:`battgen.invariant` (pulse
resistances in ohm Ah and relaxation differences ``U_k - U1``, in which the OCV and with it most
of the SOC cancels):

- ``invariant_forest``: extremely randomised trees on U1..U21 plus the invariant features, trained
  on the measured rows plus each training battery's pulses linearly interpolated to its
  unmeasured levels (:func:`battgen.interpolation.interpolate_features`);
- ``invariant_ridge``: a ridge regression on the same inputs (standardised), measured rows only,
  its penalty chosen by a grouped (physical battery) cross-validation within the training rows;
- ``invariant_ensemble``: the mean of the two;
- ``soc_then_soh``: SOC inferred from the pulse first (trees on the same inputs, trained on the
  measured and interpolated rows' SOC), then SOH from trees given the same inputs *and SOC*
  (trained with the rows' true SOC, fed the inferred one).

:func:`run_unknown_soc` scores them as :func:`battgen.evaluation.leakfree.run_estimator_benchmark`
scores :class:`battgen.estimator.SOHEstimator` (grouped folds by ``cell`` dealt with
``derive_seed(battery, seed, "folds")``, training batteries at the measured levels, held-out
batteries at all ten levels, SOC not given), beside the constant predictor and the estimator with
the interpolation and the paper-CVAE generators (the same ``random_state`` as that benchmark, so
the same predictions). It returns one row per test pulse, so that intervals can resample physical
batteries (:func:`summarize`, :func:`battgen.evaluation.stats.cluster_bootstrap`). The
``nested_choice`` method picks, in every outer fold, the candidate for the estimator (every scored
method but the constant) with the lowest MAPE in an inner grouped cross-validation on the
training batteries only; its outer score is the honest score
of "choose by cross-validation, then deploy". The inner folds mimic the outer task with the rows a
recycler has: the methods learn from the inner training batteries at the lowest and highest
measured levels and are scored on the inner held-out batteries at the measured levels in between
(25 % for 5/25/50), an unseen level inside the measured range, as every outer test level is. ``ceiling_all_levels`` is a diagnostic, not
a candidate: ``invariant_ensemble`` trained on the training batteries at all ten levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from battgen.data import FEATURES
from battgen.evaluation.core import constant_predictions
from battgen.evaluation.split import derive_seed, grouped_folds, held_out_folds
from battgen.evaluation.stats import cluster_bootstrap
from battgen.invariant_estimator import NEW_METHODS, InvariantEstimator, augmented_rows, grouped_ridge_alpha
from battgen.io import progress_bar
from battgen.protocol import ALL_SOC, soc_percent
from battgen.soh import absolute_percentage_errors

__all__ = [
    "NEW_METHODS",
    "BASELINES",
    "CEILING",
    "NESTED",
    "PREDICTION_COLUMNS",
    "InvariantEstimator",
    "augmented_rows",
    "grouped_ridge_alpha",
    "UnknownSOCRun",
    "run_unknown_soc",
    "battery_errors",
    "paired_difference",
    "summarize",
    "choose",
    "with_nested_choice",
    "nested_verdict",
    "best_per_type",
    "recommended_default",
]

BASELINES: dict[str, str] = {
    "constant": "the training batteries' mean SOH",
    "interpolation": "SOHEstimator(generator='interpolation'), the current default",
    "cvae": "SOHEstimator(generator='cvae'), the paper's CVAE",
}
CEILING = "ceiling_all_levels"
NESTED = "nested_choice"
PREDICTION_COLUMNS = ["battery", "seed", "fold", "cell", "battery_id", "soc", "method", "soh", "prediction", "soc_pred"]
@dataclass
class UnknownSOCRun:
    """What :func:`run_unknown_soc` returns: per-pulse predictions and the nested choices."""

    predictions: pd.DataFrame  # PREDICTION_COLUMNS, one row per (method, test pulse)
    choices: pd.DataFrame = field(default_factory=pd.DataFrame)  # battery, seed, fold, method, inner_mape, chosen


def _rows(test: pd.DataFrame, labels: dict, method: str, pred: np.ndarray, soc_pred: np.ndarray | None = None) -> pd.DataFrame:
    out = test[["cell", "battery_id", "soc", "soh"]].reset_index(drop=True).assign(**labels, method=method)
    out["prediction"] = np.asarray(pred, dtype=float)
    out["soc_pred"] = np.nan if soc_pred is None else np.asarray(soc_pred, dtype=float)
    return out[PREDICTION_COLUMNS]


@dataclass
class _Unit:
    labels: dict
    train: pd.DataFrame
    test: pd.DataFrame
    inner: int | None  # None: an outer fold; else the inner fold's number
    estimator_seed: int
    all_levels: pd.DataFrame | None = None  # the training batteries at every level (ceiling)


def _units(frames: dict[str, pd.DataFrame], measured_soc, seeds, n_folds: int, inner_folds: int, group: str) -> list[_Unit]:
    ends, interior = (min(measured_soc), max(measured_soc)), [s for s in measured_soc if min(measured_soc) < s < max(measured_soc)]
    units = []
    for b, df in frames.items():
        for seed in seeds:
            for fold, train, test, others, random_state in held_out_folds(b, df, measured_soc, n_folds, seed, group):
                labels = {"battery": b, "seed": seed, "fold": fold}
                units.append(_Unit(labels, train, test, None, random_state, others))
                at_end = np.isin(soc_percent(train), ends)
                inner = grouped_folds(train[group].to_numpy(), inner_folds, derive_seed(b, seed, fold, "inner folds"))
                for i, inner_test in enumerate(inner if interior else []):
                    units.append(_Unit(labels, train[~inner_test & at_end], train[inner_test & ~at_end], i,
                                       derive_seed(b, fold, seed, i, "estimator")))
    return units


def run_unknown_soc(
    frames: dict[str, pd.DataFrame],
    methods: Sequence[str] = tuple(BASELINES) + tuple(NEW_METHODS),
    measured_soc: Sequence[int] = (5, 25, 50),
    seeds: Sequence[int] = (0,),
    n_folds: int = 3,
    inner_folds: int = 2,
    epochs: int = 50,
    *,
    ceiling: bool = True,
    group: str = "cell",
    n_trees: int = 100,
    progress: bool | None = None,
) -> UnknownSOCRun:
    """Score ``methods`` (of :data:`BASELINES` and :data:`NEW_METHODS`) at unknown SOC, leak-free,
    plus the nested choice among them (and the all-levels ceiling with ``ceiling=True``).

    ``inner_folds`` grouped folds of the training batteries choose the method (two keep the run
    within minutes; each inner fold is as costly as an outer one); the SOHEstimator generators
    train for ``epochs`` epochs, all fits of the run as stacks.
    """
    from battgen.estimator import SOHEstimator, fit_estimators

    unknown = set(methods) - set(BASELINES) - set(NEW_METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; expected some of {list(BASELINES) + list(NEW_METHODS)}")
    units = _units(frames, measured_soc, seeds, n_folds, inner_folds, group)
    generators = [m for m in methods if m in ("interpolation", "cvae")]
    plan = [(u, g) for u in units for g in generators]
    fitted = fit_estimators([SOHEstimator(generator=g, soc_levels=ALL_SOC, epochs=epochs, calibration_folds=0,
                                          random_state=u.estimator_seed)
                             for u, g in plan], [u.train for u, _ in plan], progress=progress)
    by_unit = {(id(u), g): est for (u, g), est in zip(plan, fitted)}
    outer, inner_scores = [], []
    for u in progress_bar(units, progress=progress, desc="unknown-SOC estimators", unit="fold"):
        preds: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for m in methods:
            if m == "constant":
                preds[m] = (constant_predictions(u.train["soh"].to_numpy(float), len(u.test)), None)
            elif m in generators:
                preds[m] = (by_unit[(id(u), m)].predict(u.test[FEATURES]), None)
        invariant = [m for m in methods if m in NEW_METHODS and m != "soc_then_soh"]
        if invariant:  # one fit gives the forest, the ridge and their mean
            est = InvariantEstimator("invariant_ensemble", n_trees=n_trees, group=group, random_state=u.estimator_seed)
            parts = est.fit(u.train).component_predictions(u.test)
            parts["ensemble"] = np.mean([parts["forest"], parts["ridge"]], axis=0)
            preds.update({m: (parts[m.removeprefix("invariant_")], None) for m in invariant})
        if "soc_then_soh" in methods:
            est = InvariantEstimator("soc_then_soh", n_trees=n_trees, group=group, random_state=u.estimator_seed).fit(u.train)
            preds["soc_then_soh"] = (est.predict(u.test), est.predict_soc(u.test))
        preds = {m: preds[m] for m in methods}
        if u.inner is not None:
            y = u.test["soh"].to_numpy(float)
            inner_scores += [{**u.labels, "inner": u.inner, "method": m, "ape_sum": absolute_percentage_errors(y, p).sum(),
                              "n": len(y)} for m, (p, _) in preds.items()]
            continue
        if ceiling:
            est = InvariantEstimator("invariant_ensemble", n_trees=n_trees, group=group, random_state=u.estimator_seed)
            preds[CEILING] = (est.fit(u.all_levels).predict(u.test), None)
        outer += [_rows(u.test, u.labels, m, p, s) for m, (p, s) in preds.items()]
    predictions = pd.concat(outer, ignore_index=True)
    if not inner_scores:  # no measured level lies between the lowest and the highest: nothing to choose on
        return UnknownSOCRun(predictions)
    choices = _nested_choices(pd.DataFrame(inner_scores), [m for m in methods if m != "constant"])
    return UnknownSOCRun(with_nested_choice(predictions, choices), choices)


def _nested_choices(inner: pd.DataFrame, candidates: Sequence[str]) -> pd.DataFrame:
    """Per outer fold and method, the inner MAPE pooled over the inner folds, and the choice."""
    keys = ["battery", "seed", "fold"]
    pooled = inner.groupby(keys + ["method"], sort=False)[["ape_sum", "n"]].sum().reset_index()
    return choose(pooled.assign(inner_mape=pooled["ape_sum"] / pooled["n"]), candidates)


def choose(choices: pd.DataFrame, candidates: Sequence[str]) -> pd.DataFrame:
    """Mark (``chosen``), per outer fold (battery, seed, fold), the method with the lowest
    ``inner_mape`` among ``candidates`` (ties: the first row). Columns: battery, seed, fold,
    method, inner_mape, chosen."""
    keys = ["battery", "seed", "fold"]
    choices = choices.reset_index(drop=True)
    first = choices[choices["method"].isin(list(candidates))].groupby(keys, sort=False)["inner_mape"].idxmin()
    return choices.assign(chosen=choices.index.isin(first))[keys + ["method", "inner_mape", "chosen"]]


def with_nested_choice(predictions: pd.DataFrame, choices: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` plus, per outer fold, the chosen method's predictions again as :data:`NESTED`."""
    chosen = choices[choices["chosen"]][["battery", "seed", "fold", "method"]]
    nested = predictions.merge(chosen, on=["battery", "seed", "fold", "method"]).assign(method=NESTED)
    return pd.concat([predictions[predictions["method"] != NESTED], nested[PREDICTION_COLUMNS]], ignore_index=True)


# --------------------------------------------------------------------------- statistics over the predictions


def battery_errors(predictions: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute percentage error per (battery type, method, seed, fold, cell, battery_id)."""
    keys = ["battery", "method", "seed", "fold", "cell", "battery_id"]
    return predictions[keys].assign(ape=_ape(predictions)).groupby(keys, sort=False)["ape"].mean().reset_index(name="mape")


def _ape(predictions: pd.DataFrame) -> np.ndarray:
    return absolute_percentage_errors(predictions["soh"].to_numpy(float), predictions["prediction"].to_numpy(float))


def paired_difference(predictions: pd.DataFrame, methods: Sequence[str] | str, reference: str, *, keys: Sequence[str],
                      by: Sequence[str], factor: float = 1.0, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per ``by`` group and method: the mean over paired test pulses (rows equal on ``keys``) of
    ``APE_method - factor x APE_reference`` (percentage points; negative favours the method), with
    a 95 % interval that resamples physical cells (:func:`~battgen.evaluation.stats.cluster_bootstrap`).

    Columns: ``by``, method, reference, diff, diff_low, diff_high, n_cells.
    """
    keys, by = list(keys), list(by)
    df = predictions.assign(ape=_ape(predictions))
    ref = df[df["method"] == reference][keys + ["ape"]].rename(columns={"ape": "ape_ref"})
    rows = []
    wanted = [methods] if isinstance(methods, str) else list(methods)
    for key, g in df[df["method"].isin(wanted)].groupby(by + ["method"], sort=False):
        g = g.merge(ref, on=keys, how="inner")
        if g.empty:  # the reference was not scored on these pulses
            continue
        diff, lo, hi = cluster_bootstrap((g["ape"] - factor * g["ape_ref"]).to_numpy(), g["cell"].to_numpy(),
                                         n_boot=n_boot, seed=seed)
        rows.append({**dict(zip(by + ["method"], key)), "reference": reference, "diff": diff, "diff_low": lo,
                     "diff_high": hi, "n_cells": int(g["cell"].nunique())})
    return pd.DataFrame(rows, columns=by + ["method", "reference", "diff", "diff_low", "diff_high", "n_cells"])


def summarize(predictions: pd.DataFrame, reference: str = "constant", goal: float = 0.6, n_boot: int = 2000,
              seed: int = 0) -> pd.DataFrame:
    """Per battery type and method: MAPE over all test pulses (seeds x folds) with a 95 % interval
    that resamples physical cells (:func:`~battgen.evaluation.stats.cluster_bootstrap`), the ratio
    to ``reference`` on the same pulses, and the paired excess ``APE - goal x APE_reference``
    (:func:`paired_difference`; ``excess_high < 0``: clearly within the goal).

    Columns: battery, method, mape, ci_low, ci_high, ratio, excess, excess_low, excess_high,
    meets_goal (ratio <= goal), n_cells.
    """
    df = predictions.assign(ape=_ape(predictions))
    ref_mape = df[df["method"] == reference].groupby("battery", sort=False)["ape"].mean()
    rows = []
    for (b, m), g in df.groupby(["battery", "method"], sort=False):
        mean, lo, hi = cluster_bootstrap(g["ape"].to_numpy(), g["cell"].to_numpy(), n_boot=n_boot, seed=seed)
        rows.append({"battery": b, "method": m, "mape": mean, "ci_low": lo, "ci_high": hi, "ratio": mean / ref_mape[b],
                     "n_cells": int(g["cell"].nunique())})
    out = pd.DataFrame(rows)
    excess = paired_difference(predictions, list(out["method"].unique()), reference, factor=goal, n_boot=n_boot, seed=seed,
                               keys=["battery", "seed", "fold", "cell", "battery_id", "soc"], by=["battery"])
    excess = excess.rename(columns={"diff": "excess", "diff_low": "excess_low", "diff_high": "excess_high"})
    out = out.merge(excess[["battery", "method", "excess", "excess_low", "excess_high"]], on=["battery", "method"])
    out["meets_goal"] = out["ratio"] <= goal
    return out[["battery", "method", "mape", "ci_low", "ci_high", "ratio", "excess", "excess_low", "excess_high",
                "meets_goal", "n_cells"]]


def nested_verdict(summary: pd.DataFrame, choices: pd.DataFrame, current: str = "interpolation") -> pd.DataFrame:
    """Per battery type: the method(s) the nested choice picks most often (and how often), the nested
    choice's MAPE and ratio to the constant, ``current``'s, and whether the nested choice beats
    ``current`` with a new method (``new_method_wins``). A change of the estimator's default is
    warranted only where ``new_method_wins`` holds in every battery type.

    A tie is no choice: when several methods are picked equally often, ``most_chosen`` names them
    all (``"a = b"``) and the type counts as won by a new method only if every one of them is new.
    (The outer folds are few, 15 in the book, so ties happen; breaking them by the order of the
    methods would let an unrelated change, such as another method's random stream, decide.)"""
    rows = []
    s = summary.set_index(["battery", "method"])
    for b, g in choices[choices["chosen"]].groupby("battery", sort=False):
        counts = g["method"].value_counts()
        tops = sorted(str(m) for m in counts.index[counts == counts.iloc[0]])
        nested, cur = s.loc[(b, NESTED)], s.loc[(b, current)]
        rows.append({"battery": b, "most_chosen": " = ".join(tops), "share_chosen": counts.iloc[0] / len(g),
                     "nested_mape": nested["mape"], "nested_ratio": nested["ratio"], "current_mape": cur["mape"],
                     "current_ratio": cur["ratio"],
                     "new_method_wins": bool(all(t in NEW_METHODS for t in tops) and nested["mape"] < cur["mape"])})
    return pd.DataFrame(rows)


def best_per_type(summary: pd.DataFrame, goal: float = 0.6,
                  candidates: Sequence[str] = ("interpolation", "cvae") + tuple(NEW_METHODS)) -> pd.DataFrame:
    """Per battery type, the candidate with the lowest MAPE (from :func:`summarize`), its ratio to
    the constant, ``gap`` = ratio - goal (how far from the goal; <= 0 reached), ``clearly`` (its
    paired excess over goal x constant has an interval below zero), and for the diagnosis the
    ratios of the interpolation estimator and of the all-levels ceiling (NaN if not run)."""
    rows = []
    for b, g in summary.groupby("battery", sort=False):
        g = g.set_index("method")
        best = g.loc[[m for m in candidates if m in g.index], "mape"].idxmin()
        rows.append({"battery": b, "method": best, "mape": g.loc[best, "mape"], "ci_low": g.loc[best, "ci_low"],
                     "ci_high": g.loc[best, "ci_high"], "ratio": g.loc[best, "ratio"], "gap": g.loc[best, "ratio"] - goal,
                     "reached": bool(g.loc[best, "ratio"] <= goal), "clearly": bool(g.loc[best, "excess_high"] < 0),
                     "interpolation_ratio": g["ratio"].get("interpolation", np.nan), "ceiling_ratio": g["ratio"].get(CEILING, np.nan)})
    return pd.DataFrame(rows)


def recommended_default(verdict: pd.DataFrame, choices: pd.DataFrame, current: str = "interpolation") -> str:
    """The estimator's default after the nested choice: the new method chosen most often over every
    outer fold of every battery type, if the nested choice beats ``current`` with a new method in
    every type (:func:`nested_verdict`) and one new method is chosen more often than any other;
    otherwise ``current``."""
    if verdict.empty or not verdict["new_method_wins"].all():
        return current
    counts = choices[choices["chosen"] & choices["method"].isin(list(NEW_METHODS))]["method"].value_counts()
    if len(counts) == 0 or (len(counts) > 1 and counts.iloc[1] == counts.iloc[0]):
        return current
    return str(counts.index[0])
