"""How far to trust an estimate: interval coverage and novelty alarms, measured on held-out batteries.

:func:`run_trust_benchmark` fits :class:`battgen.estimator.SOHEstimator` on the training batteries
of each grouped fold (measured at a few SOC levels) and asks it, for every pulse of the held-out
batteries at all ten levels (SOC not given), for an estimate, a prediction interval and a novelty
score. :func:`coverage_summary` says how often the interval held the true SOH and how wide it was,
per battery type, SOC level or SOH tercile; the share of held-out pulses flagged as novel is the
false-alarm rate. :func:`recalibrated` asks whether an interval whose width depends on the
estimate (a Mondrian split-conformal interval) would cover the weak batteries better.
:func:`run_ood_matrix` trains on one design and scores the pulses of every other design (and the
same design's 3 s pulses): the detection rate.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from battgen.data import BATTERIES, FEATURES, battery_frames
from battgen.evaluation.split import held_out_folds
from battgen.evaluation.stats import cluster_bootstrap
from battgen.protocol import soc_percent
from battgen.uncertainty import conformal_quantile

__all__ = ["TRUST_COLUMNS", "run_trust_benchmark", "soh_terciles", "covered", "coverage_summary", "recalibrated", "run_ood_matrix"]

TRUST_COLUMNS = ["battery", "seed", "fold", "cell", "battery_id", "soc", "soh", "estimate", "lower", "upper",
                 "novelty", "flagged"]


def run_trust_benchmark(
    batteries: Sequence[str] = tuple(BATTERIES),
    measured_soc: Sequence[int] = (5, 25, 50),
    seeds: Sequence[int] = (0,),
    n_folds: int = 3,
    generator: str = "interpolation",
    epochs: int = 50,
    coverage: float = 0.9,
    *,
    group: str = "cell",
    frames: Mapping[str, pd.DataFrame] | None = None,
    data_dir: str | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per held-out pulse (:data:`TRUST_COLUMNS`): estimate, ``coverage`` interval, novelty.

    The folds and the estimators' ``random_state`` are those of
    :func:`battgen.evaluation.leakfree.run_estimator_benchmark`, so the estimates are the same.
    """
    from battgen.estimator import SOHEstimator, fit_estimators

    frames = battery_frames(batteries, 5, frames, data_dir)
    plan, estimators, data = [], [], []
    for seed in seeds:
        for b, df in frames.items():
            for fold, train, test, _, random_state in held_out_folds(b, df, measured_soc, n_folds, seed, group):
                plan.append((b, seed, fold, test))
                estimators.append(SOHEstimator(generator=generator, epochs=epochs, random_state=random_state))
                data.append(train)
    parts = []
    for (b, seed, fold, test), est in zip(plan, fit_estimators(estimators, data, progress=progress)):
        estimate, lower, upper = est.predict(test[FEATURES], interval=coverage)
        novelty = est.novelty_score(test[FEATURES])
        parts.append(pd.DataFrame({
            "battery": b, "seed": seed, "fold": fold, "cell": test[group].to_numpy(), "battery_id": test["battery_id"].to_numpy(),
            "soc": soc_percent(test), "soh": test["soh"].to_numpy(), "estimate": estimate, "lower": lower, "upper": upper,
            "novelty": novelty, "flagged": novelty > est.novelty_threshold_}))
    return pd.concat(parts, ignore_index=True)[TRUST_COLUMNS]


def soh_terciles(pulses: pd.DataFrame) -> pd.Series:
    """``"low"``, ``"middle"`` or ``"high"`` SOH per row: terciles of the batteries' SOH within each type."""
    per_battery = pulses.drop_duplicates(["battery", "battery_id"])[["battery", "battery_id", "soh"]]
    per_battery = per_battery.assign(tercile=per_battery.groupby("battery")["soh"].transform(
        lambda s: pd.qcut(s.rank(method="first"), 3, labels=["low", "middle", "high"]).astype(str)))
    return pulses.merge(per_battery[["battery", "battery_id", "tercile"]], on=["battery", "battery_id"], how="left")["tercile"]


def covered(pulses: pd.DataFrame) -> np.ndarray:
    """Whether each pulse's interval holds its true SOH (``lower <= soh <= upper``), (n,) booleans."""
    return ((pulses["soh"] >= pulses["lower"]) & (pulses["soh"] <= pulses["upper"])).to_numpy()


def coverage_summary(pulses: pd.DataFrame, by: Sequence[str] = ("battery",), confidence: float = 0.95,
                     n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per ``by`` group: the share of pulses whose interval holds the true SOH (``coverage``), with a
    ``confidence`` interval that resamples physical batteries (``coverage_low``, ``coverage_high``:
    a battery's pulses at every level, seed and fold are drawn together), the mean interval width
    in SOH points (``width_pts``, 1 point = 1 % of nominal capacity), the share flagged as novel
    (``flagged``), ``n`` pulses and ``n_batteries``."""
    d = pulses.assign(_in=covered(pulses),
                      _w=100.0 * (pulses["upper"] - pulses["lower"]))
    groups = d.groupby(list(by), sort=False)
    out = groups.agg(coverage=("_in", "mean"), width_pts=("_w", "mean"), flagged=("flagged", "mean"),
                     n=("soh", "size"), n_batteries=("cell", "nunique"))
    bounds = np.array([cluster_bootstrap(g["_in"].to_numpy(float), g["cell"].to_numpy(), confidence, n_boot, seed)[1:]
                       for _, g in groups]).reshape(-1, 2)  # (groups, 2), in the order of ``out``'s rows
    out.insert(1, "coverage_low", bounds[:, 0])
    out.insert(2, "coverage_high", bounds[:, 1])
    return out.reset_index()


def recalibrated(pulses: pd.DataFrame, coverage: float = 0.9, bins: int = 1) -> pd.DataFrame:
    """The held-out pulses of :func:`run_trust_benchmark` with new ``coverage`` intervals, calibrated
    for each fold on the held-out pulses of the *other* folds (same type and seed): their absolute
    errors, made by estimators that never saw those batteries, are the conformal scores.

    With ``bins`` > 1 the interval is Mondrian: the calibration pulses are split at the quantiles of
    their estimates into ``bins`` equal groups, each with its own half-width, and a pulse gets the
    half-width of the group its estimate falls in; ``bins=1`` is one width for every pulse, the
    same calibration. Needs at least two folds. Rows and columns as ``pulses``.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    bins = int(bins)
    parts = []
    for _, g in pulses.groupby(["battery", "seed"], sort=False):
        folds = g["fold"].unique()
        if len(folds) < 2:
            raise ValueError("recalibrating on the other folds needs at least two folds")
        for fold in folds:
            cal, test = g[g["fold"] != fold], g[g["fold"] == fold]
            errors = (cal["soh"] - cal["estimate"]).abs().to_numpy()  # (n_cal,)
            edges = np.quantile(cal["estimate"], np.linspace(0, 1, bins + 1)[1:-1])  # (bins - 1,)
            group = np.searchsorted(edges, cal["estimate"].to_numpy(), side="right")  # (n_cal,) in [0, bins)
            half = np.array([conformal_quantile(errors[group == k], coverage) for k in range(bins)])  # (bins,)
            h = half[np.searchsorted(edges, test["estimate"].to_numpy(), side="right")]  # (n_test,)
            parts.append(test.assign(lower=test["estimate"] - h, upper=test["estimate"] + h))
    return pd.concat(parts).loc[pulses.index]


def run_ood_matrix(
    batteries: Sequence[str] = tuple(BATTERIES),
    measured_soc: Sequence[int] = (5, 25, 50),
    generator: str = "interpolation",
    epochs: int = 50,
    random_state: int = 0,
    *,
    frames: Mapping[str, pd.DataFrame] | None = None,
    frames_3s: Mapping[str, pd.DataFrame] | None = None,
    data_dir: str | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Share of pulses flagged as novel by an estimator trained on one design (all its batteries,
    ``measured_soc`` levels), for the pulses of every other design at all levels and for the same
    design's 3 s pulses. Columns: ``trained_on``, ``scored``, ``flagged``, ``n``."""
    from battgen.estimator import SOHEstimator, fit_estimators

    frames = battery_frames(batteries, 5, frames, data_dir)
    frames_3s = battery_frames(batteries, 3, frames_3s, data_dir)
    estimators = [SOHEstimator(generator=generator, epochs=epochs, random_state=random_state) for _ in frames]
    data = [df[np.isin(soc_percent(df), list(measured_soc))] for df in frames.values()]
    rows = []
    for (a, _), est in zip(frames.items(), fit_estimators(estimators, data, progress=progress)):
        targets = {b: df for b, df in frames.items() if b != a} | {f"{a} (3 s pulses)": frames_3s[a]}
        for name, df in targets.items():
            flagged = est.novelty_score(df[FEATURES]) > est.novelty_threshold_
            rows.append({"trained_on": a, "scored": name, "flagged": float(flagged.mean()), "n": len(df)})
    return pd.DataFrame(rows)
