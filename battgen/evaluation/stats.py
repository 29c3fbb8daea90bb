"""Statistics over result tables: means with intervals, paired differences, skill, verdicts.

The unit of replication is one (seed, fold), or one seed in the paper's protocol, which has no
folds: its MAPE is the mean over the unseen levels (and cases, when pooled). Means come with a
95 % interval over the units (Student t, or a percentile bootstrap). The units share batteries,
so the interval describes the spread of the whole procedure (split, initialisation, sampling),
not sampling from a population of batteries. :func:`verdicts` turns a summary into the
sentences chapter 06 prints.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from battgen.evaluation.leakfree import BASELINE_METHODS, GENERATOR_METHODS

__all__ = [
    "t_interval",
    "bootstrap_ci",
    "cluster_bootstrap",
    "unit_means",
    "summarize_leakfree",
    "paired_differences",
    "skill_scores",
    "best_baseline",
    "battery_summary",
    "battery_differences",
    "crossfit_choice",
    "chosen_rows",
    "VERDICTS",
    "verdicts",
]


def _finite_mean(values: Sequence[float]) -> tuple[np.ndarray, float, tuple[float, float, float] | None]:
    """The finite values, their mean, and the interval itself when there are fewer than two (NaN or zero-width)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return v, np.nan, (np.nan, np.nan, np.nan)
    m = float(v.mean())
    return v, m, (m, m, m) if v.size < 2 else None


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t interval of the mean (a single value gives a zero-width interval)."""
    from scipy import stats

    v, m, degenerate = _finite_mean(values)
    if degenerate is not None:
        return degenerate
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return (m, m - half, m + half)


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_boot: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: percentile bootstrap interval of the mean over the given units."""
    v, m, degenerate = _finite_mean(values)
    if degenerate is not None:
        return degenerate
    boots = np.random.default_rng(seed).choice(v, size=(n_boot, v.size), replace=True).mean(axis=1)
    lo, hi = np.quantile(boots, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return (m, float(lo), float(hi))


def cluster_bootstrap(values: Sequence[float], clusters: Sequence, confidence: float = 0.95, n_boot: int = 5000,
                      seed: int = 0, weights: Sequence[float] | None = None) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` with a percentile interval that resamples *clusters*.

    Rows that share a cluster (a physical battery: its pulses at every SOC level, its repeated
    seeds and folds) are not independent, so the bootstrap draws whole clusters with replacement
    and recomputes the mean over all their rows. With one cluster the interval has zero width;
    the interval is wider than a row-level one whenever rows of a cluster are alike. ``weights``
    (e.g. the number of pulses behind each row's MAPE) make it a weighted mean.
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(clusters)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    if v.shape != c.shape or v.shape != w.shape:
        raise ValueError(f"values, clusters and weights differ in shape: {v.shape}, {c.shape}, {w.shape}")
    keep = np.isfinite(v)
    v, c, w = v[keep], c[keep], w[keep]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    codes, uniques = pd.factorize(c)
    sums = np.bincount(codes, weights=w * v)  # (k,)
    counts = np.bincount(codes, weights=w)  # (k,)
    m = float(sums.sum() / counts.sum())
    if len(uniques) < 2:
        return (m, m, m)
    idx = np.random.default_rng(seed).integers(0, len(uniques), size=(n_boot, len(uniques)))  # (n_boot, k)
    boots = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.quantile(boots, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return (m, float(lo), float(hi))


def _interval(method: str) -> Callable[[Sequence[float]], tuple[float, float, float]]:
    if method == "t":
        return t_interval
    if method == "bootstrap":
        return bootstrap_ci
    raise ValueError(f"interval must be 't' or 'bootstrap', got {method!r}")


def _unit(results: pd.DataFrame) -> list[str]:
    """The columns that name a unit of replication: seed and fold (seed alone without folds)."""
    return ["seed", "fold"] if "fold" in results.columns else ["seed"]


def unit_means(results: pd.DataFrame, by: Iterable[str] = ("battery", "case", "method")) -> pd.DataFrame:
    """Mean MAPE per ``by`` keys and unit (seed, fold), averaged over every other key (levels, cases)."""
    by = list(by)
    return results.groupby(by + _unit(results), sort=False)["mape"].mean().reset_index()


def _summarise_units(units: pd.DataFrame, by: list[str], value: str, interval: str) -> pd.DataFrame:
    f = _interval(interval)
    rows = []
    for key, g in units.groupby(by, sort=False):
        m, lo, hi = f(g[value].to_numpy())
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), value: m, "ci_low": lo, "ci_high": hi,
                     "n_units": len(g)})
    return pd.DataFrame(rows)


def summarize_leakfree(results: pd.DataFrame, by: Iterable[str] = ("battery", "case", "kind", "method"),
                       interval: str = "t") -> pd.DataFrame:
    """Mean MAPE with a 95 % interval over the (seed, fold) units, per ``by`` keys.

    Columns: ``by``, ``mape``, ``ci_low``, ``ci_high``, ``n_units``.
    """
    by = list(by)
    return _summarise_units(unit_means(results, by), by, "mape", interval)


def paired_differences(results: pd.DataFrame, method: str, reference: str, by: Iterable[str] = ("battery",),
                       interval: str = "t") -> pd.DataFrame:
    """``method`` minus ``reference`` MAPE, paired on the same (seed, fold, case, level) rows.

    Negative means ``method`` is better. Columns: ``by``, ``diff`` (percentage points) with
    ``ci_low`` / ``ci_high`` over the (seed, fold) units, ``n_units``, and ``frac_better``
    (share of units in which ``method`` has the lower MAPE).
    """
    by = list(by)
    keys = [k for k in ("battery", "pulse_width_s", "case", "kind", "seed", "fold", "test_soc") if k in results.columns]
    a = results[results["method"] == method].set_index(keys)["mape"]
    b = results[results["method"] == reference].set_index(keys)["mape"]
    joined = pd.concat({"a": a, "b": b}, axis=1, join="inner").reset_index()
    if joined.empty:
        raise ValueError(f"no rows where both {method!r} and {reference!r} were scored")
    joined["diff"] = joined["a"] - joined["b"]
    units = joined.groupby(by + _unit(results), sort=False)[["diff", "a", "b"]].mean().reset_index()
    out = _summarise_units(units, by, "diff", interval)
    better = units.assign(better=units["a"] < units["b"]).groupby(by, sort=False)["better"].mean().reset_index(drop=True)
    out["frac_better"] = better.to_numpy()
    out.insert(0, "reference", reference)
    out.insert(0, "method", method)
    return out


def skill_scores(results: pd.DataFrame, reference: str = "baseline_constant", by: Iterable[str] = ("battery", "method"),
                 interval: str = "t") -> pd.DataFrame:
    """Skill ``1 - MAPE / MAPE_reference`` per (seed, fold) unit, summarised with a 95 % interval.

    1 is perfect, 0 no better than the reference (by default the constant predictor), negative
    worse. Columns: ``by``, ``skill``, ``ci_low``, ``ci_high``, ``n_units``.
    """
    by = [k for k in by if k != "method"]
    units = unit_means(results, by + ["method"])
    ref = units[units["method"] == reference].drop(columns="method").rename(columns={"mape": "ref"})
    merged = units.merge(ref, on=by + _unit(results))
    merged["skill"] = 1.0 - merged["mape"] / merged["ref"]
    return _summarise_units(merged, by + ["method"], "skill", interval)


def best_baseline(summary: pd.DataFrame, by: Iterable[str] = ("battery",), baselines: Sequence[str] = BASELINE_METHODS) -> pd.DataFrame:
    """Per ``by`` keys, the row of ``summary`` (from :func:`summarize_leakfree`) with the lowest MAPE among ``baselines``."""
    by = list(by)
    sub = summary[summary["method"].isin(baselines)]
    return sub.loc[sub.groupby(by, sort=False)["mape"].idxmin()].reset_index(drop=True)


def battery_summary(results: pd.DataFrame, by: Iterable[str] = ("battery", "method"), cluster: str = "cell",
                    value: str = "mape", weight: str = "n_test", confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean ``value`` per ``by`` group with an interval that resamples physical batteries.

    ``results`` has one row per battery (``cluster``), level and method (e.g.
    :func:`battgen.evaluation.leakfree.run_leakfree` with ``by=("cell",)``); each row's ``value``
    is weighted by its ``weight`` (pulses), so the mean is the pulse-level mean, and the interval
    is :func:`cluster_bootstrap` over the batteries (their seeds, folds, cases and levels stay
    together). Columns: ``by``, ``value``, ``ci_low``, ``ci_high``, ``n_batteries``.
    """
    by = list(by)
    rows = []
    for key, g in results.groupby(by, sort=False):
        m, lo, hi = cluster_bootstrap(g[value].to_numpy(), g[cluster].to_numpy(), confidence, seed=seed,
                                      weights=g[weight].to_numpy())
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), value: m, "ci_low": lo, "ci_high": hi,
                     "n_batteries": int(g[cluster].nunique())})
    return pd.DataFrame(rows)


def battery_differences(results: pd.DataFrame, method: str, reference: str, by: Iterable[str] = ("battery",),
                        cluster: str = "cell", confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """``method`` minus ``reference`` MAPE, paired on the same battery rows, with a battery-level interval.

    Pairs rows on every key they share (type, case, seed, fold, battery, level); the difference
    is weighted by the pulses behind it and resampled by battery (:func:`cluster_bootstrap`).
    Negative means ``method`` is better. Columns: ``method``, ``reference``, ``by``, ``diff``,
    ``ci_low``, ``ci_high``, ``n_batteries``, ``frac_better`` (share of batteries whose mean
    MAPE is lower with ``method``).
    """
    by = list(by)
    keys = [k for k in ("battery", "pulse_width_s", "case", "kind", "seed", "fold", cluster, "test_soc") if k in results.columns]
    a = results[results["method"] == method].set_index(keys)[["mape", "n_test"]]
    b = results[results["method"] == reference].set_index(keys)["mape"]
    joined = a.join(b.rename("ref"), how="inner").reset_index()
    if joined.empty:
        raise ValueError(f"no rows where both {method!r} and {reference!r} were scored")
    joined["diff"] = joined["mape"] - joined["ref"]
    rows = []
    for key, g in joined.groupby(by, sort=False):
        d, lo, hi = cluster_bootstrap(g["diff"].to_numpy(), g[cluster].to_numpy(), confidence, seed=seed,
                                      weights=g["n_test"].to_numpy())
        per_battery = g.assign(w=g["n_test"], wa=g["mape"] * g["n_test"], wb=g["ref"] * g["n_test"]).groupby(cluster)[["w", "wa", "wb"]].sum()
        rows.append({"method": method, "reference": reference, **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "diff": d, "ci_low": lo, "ci_high": hi, "n_batteries": len(per_battery),
                     "frac_better": float((per_battery["wa"] < per_battery["wb"]).mean())})
    return pd.DataFrame(rows)


def crossfit_choice(results: pd.DataFrame, candidates: Sequence[str], by: Sequence[str] = ("battery",)) -> pd.DataFrame:
    """Which of ``candidates`` each fold would choose without seeing its own test scores.

    For every (``by``, seed, fold) the candidate with the lowest mean MAPE on the *other* folds of
    the same seed (batteries outside this fold's test set) is chosen: the winner's curse of picking
    the best method on the very numbers that then report it is avoided. Returns ``by``, ``seed``,
    ``fold``, ``chosen``.
    """
    by = list(by)
    sub = results[results["method"].isin(candidates)]
    w = sub.assign(_w=sub["n_test"], _wm=sub["mape"] * sub["n_test"])
    per_fold = w.groupby(by + ["seed", "fold", "method"], sort=False)[["_w", "_wm"]].sum().reset_index()
    rows = []
    for key, g in per_fold.groupby(by + ["seed"], sort=False):
        for fold in sorted(g["fold"].unique()):
            other = g[g["fold"] != fold].groupby("method")[["_w", "_wm"]].sum()
            if other.empty:
                raise ValueError("cross-fitted choice needs at least two folds")
            chosen = (other["_wm"] / other["_w"]).idxmin()
            rows.append({**dict(zip(by + ["seed"], key if isinstance(key, tuple) else (key,))), "fold": fold, "chosen": chosen})
    return pd.DataFrame(rows)


def chosen_rows(results: pd.DataFrame, choice: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of the method each fold chose (:func:`crossfit_choice`), relabelled ``name``."""
    keys = [c for c in choice.columns if c != "chosen"]
    picked = results.merge(choice, on=keys)
    return picked[picked["method"] == picked["chosen"]].drop(columns="chosen").assign(method=name)


VERDICTS = ("generation helps", "baseline better", "no clear difference")
"""A verdict: the battery-level interval of the paired difference lies below zero, above zero, or straddles it."""


def verdicts(results: pd.DataFrame, by: Sequence[str] = ("battery", "kind"), baselines: Sequence[str] = BASELINE_METHODS,
             generators: Sequence[str] = GENERATOR_METHODS, cluster: str = "cell", seed: int = 0) -> pd.DataFrame:
    """Per ``by`` cell: does the best generator beat the best baseline? Battery-level and cross-fitted.

    ``results`` has one row per battery, level and method (``run_leakfree`` with
    ``by=("cell",)``; add ``phase2_paper`` rows with :func:`battgen.evaluation.paper.with_phase2`
    for the paper's rule to be a candidate). In every fold, the best baseline and the best
    generator are the ones with the lowest MAPE on the *other* folds (:func:`crossfit_choice`),
    never on the rows they are then scored on; the verdict (:data:`VERDICTS`) reads the 95 %
    interval of ``chosen generator - chosen baseline`` resampled over physical batteries
    (:func:`battery_differences`). Columns: ``by``; ``baseline`` / ``generator`` (the method most
    folds chose), ``baseline_mape``, ``generator_mape``, ``diff``, ``diff_low``, ``diff_high``,
    ``n_batteries``, ``verdict``.
    """
    by = list(by)
    picked = pd.concat([chosen_rows(results, crossfit_choice(results, baselines, by), "best_baseline"),
                        chosen_rows(results, crossfit_choice(results, generators, by), "best_generator")], ignore_index=True)
    means = battery_summary(picked, by + ["method"], cluster=cluster, seed=seed).set_index(by + ["method"])["mape"]
    diffs = battery_differences(picked, "best_generator", "best_baseline", by, cluster=cluster, seed=seed)
    rows = []
    for _, d in diffs.iterrows():
        cell = {k: d[k] for k in by}
        mask = (results[by] == pd.Series(cell)).all(axis=1)
        modal = {}
        for fam, cands in (("baseline", baselines), ("generator", generators)):
            choice = crossfit_choice(results[mask], cands, by)
            modal[fam] = choice["chosen"].mode().iloc[0]
        call = VERDICTS[0] if d["ci_high"] < 0 else VERDICTS[1] if d["ci_low"] > 0 else VERDICTS[2]
        key = tuple(cell[k] for k in by)
        rows.append({**cell, "baseline": modal["baseline"], "baseline_mape": means[key + ("best_baseline",)],
                     "generator": modal["generator"], "generator_mape": means[key + ("best_generator",)],
                     "diff": d["diff"], "diff_low": d["ci_low"], "diff_high": d["ci_high"],
                     "n_batteries": d["n_batteries"], "verdict": call})
    return pd.DataFrame(rows)
