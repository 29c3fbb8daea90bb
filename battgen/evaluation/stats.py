"""Statistics over result tables: means with intervals, paired differences, skill, verdicts.

The unit of replication is one (seed, fold): its MAPE is the mean over the unseen levels (and
cases, when pooled). Means come with a 95 % interval over the seeds x folds units (Student t, or
a percentile bootstrap). The units share batteries, so the interval describes the spread of the
whole procedure (split, initialisation, sampling), not sampling from a population of batteries.
:func:`verdicts` turns a summary into the sentences chapter 06 prints.
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
                      seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` with a percentile interval that resamples *clusters*.

    Rows that share a cluster (a physical battery: its pulses at every SOC level, its repeated
    seeds and folds) are not independent, so the bootstrap draws whole clusters with replacement
    and recomputes the mean over all their rows. With one cluster the interval has zero width;
    the interval is wider than a row-level one whenever rows of a cluster are alike.
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(clusters)
    if v.shape != c.shape:
        raise ValueError(f"values and clusters differ in shape: {v.shape} vs {c.shape}")
    keep = np.isfinite(v)
    v, c = v[keep], c[keep]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    codes, uniques = pd.factorize(c)
    sums = np.bincount(codes, weights=v)  # (k,)
    counts = np.bincount(codes).astype(float)  # (k,)
    m = float(v.mean())
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


def unit_means(results: pd.DataFrame, by: Iterable[str] = ("battery", "case", "method")) -> pd.DataFrame:
    """Mean MAPE per ``by`` keys and unit (seed, fold), averaged over every other key (levels, cases)."""
    by = list(by)
    return results.groupby(by + ["seed", "fold"], sort=False)["mape"].mean().reset_index()


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
    units = joined.groupby(by + ["seed", "fold"], sort=False)[["diff", "a", "b"]].mean().reset_index()
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
    merged = units.merge(ref, on=by + ["seed", "fold"])
    merged["skill"] = 1.0 - merged["mape"] / merged["ref"]
    return _summarise_units(merged, by + ["method"], "skill", interval)


def best_baseline(summary: pd.DataFrame, by: Iterable[str] = ("battery",), baselines: Sequence[str] = BASELINE_METHODS) -> pd.DataFrame:
    """Per ``by`` keys, the row of ``summary`` (from :func:`summarize_leakfree`) with the lowest MAPE among ``baselines``."""
    by = list(by)
    sub = summary[summary["method"].isin(baselines)]
    return sub.loc[sub.groupby(by, sort=False)["mape"].idxmin()].reset_index(drop=True)


VERDICTS = ("generation helps", "baseline better", "no clear difference")
"""A verdict: the paired difference's interval lies below zero, above zero, or straddles it."""


def verdicts(results: pd.DataFrame, by: Sequence[str] = ("battery", "kind"), baselines: Sequence[str] = BASELINE_METHODS,
             generators: Sequence[str] = GENERATOR_METHODS, interval: str = "t") -> pd.DataFrame:
    """Per ``by`` cell: the best baseline, the best generator, their paired difference and the verdict.

    ``results`` is a tidy leak-free table (with ``phase2_paper`` rows if that generator is to be
    considered, :func:`battgen.evaluation.paper.with_phase2`). The best of each family is the one
    with the lowest mean MAPE in the cell; the verdict (:data:`VERDICTS`) reads the 95 % interval
    of ``best generator - best baseline`` over the seeds x folds units.
    """
    by = list(by)
    summary = summarize_leakfree(results[results["method"].isin(list(baselines) + list(generators))], by=by + ["method"],
                                 interval=interval)
    rows = []
    for key, g in summary.groupby(by, sort=False):
        g = g.set_index("method")["mape"]
        base = g[[m for m in baselines if m in g.index]]
        gen = g[[m for m in generators if m in g.index]]
        cell = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        sub = results.loc[(results[by] == pd.Series(cell)).all(axis=1)]
        d = paired_differences(sub, gen.idxmin(), base.idxmin(), by=by, interval=interval).iloc[0]
        call = VERDICTS[0] if d["ci_high"] < 0 else VERDICTS[1] if d["ci_low"] > 0 else VERDICTS[2]
        rows.append({**cell, "best_baseline": base.idxmin(), "baseline_mape": base.min(), "best_generator": gen.idxmin(),
                     "generator_mape": gen.min(), "paper_cvae_mape": g.get("phase2_paper", np.nan), "diff": d["diff"],
                     "diff_low": d["ci_low"], "diff_high": d["ci_high"], "verdict": call})
    return pd.DataFrame(rows)

