"""Per-battery linear interpolation of the pulse features in SOC.

Between two measured SOC levels of one battery, each of U1..U21 is taken on the straight line
between its two measured values; outside the measured range, on the line through the two nearest
levels (linear extrapolation). It uses exactly the information the paper's CVAE uses (the
training batteries' pulses at the measured levels), needs no training, and is the strongest
simple generator on PulseBat (chapter 06). :func:`loo_interpolation_residuals` gives what a
straight line misses: the target of the residual generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from battgen.data import FEATURES

__all__ = ["interpolation_weights", "interpolate_features", "loo_interpolation_residuals"]


def interpolation_weights(levels: Sequence[float], target: float) -> tuple[int, int, float]:
    """``(i, j, w)`` such that ``x(target) = x[i] + w * (x[j] - x[i])`` for sorted ``levels``.

    Inside the range the two measured levels around ``target`` (``w`` in [0, 1]; an exact match
    gives ``i == j``, ``w = 0``); below or above it the two nearest levels (linear
    extrapolation). With a single level, ``(0, 0, 0)``: the measured value is carried over.
    """
    lv = np.asarray(levels, dtype=float)
    if lv.ndim != 1 or len(lv) == 0:
        raise ValueError("need at least one measured level")
    if np.any(np.diff(lv) <= 0):
        raise ValueError(f"levels must be strictly increasing, got {list(lv)}")
    if len(lv) == 1:
        return 0, 0, 0.0
    hit = np.flatnonzero(np.isclose(lv, target))
    if hit.size:
        return int(hit[0]), int(hit[0]), 0.0
    if target < lv[0]:
        i, j = 0, 1
    elif target > lv[-1]:
        i, j = len(lv) - 2, len(lv) - 1
    else:
        j = int(np.searchsorted(lv, target))
        i = j - 1
    return i, j, float((target - lv[i]) / (lv[j] - lv[i]))


def _battery_blocks(measured: pd.DataFrame, group: str, features: list[str]):
    """Yield ``(first_row_position, levels, X)`` per battery, rows sorted by SOC (numpy only)."""
    soc = measured["soc"].to_numpy(float)
    codes, _ = pd.factorize(measured[group], sort=False)
    order = np.lexsort((soc, codes))
    X_all = measured[features].to_numpy(float)
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    ends = np.r_[starts[1:], len(order)]
    for a, b in zip(starts, ends):
        rows = order[a:b]
        levels = soc[rows]
        if np.any(np.diff(levels) <= 0):
            raise ValueError(f"battery {measured[group].iloc[rows[0]]!r}: SOC levels must be distinct, got {list(levels)}")
        yield rows, levels, X_all[rows]


def interpolate_features(
    measured: pd.DataFrame,
    target_soc: Sequence[float],
    *,
    group: str = "battery_id",
    features: Sequence[str] = FEATURES,
) -> pd.DataFrame:
    """Per battery, U1..U21 at each ``target_soc`` (fraction) from that battery's measured rows.

    ``measured`` holds rows of the :mod:`battgen.data` schema (at least ``group``, ``soc``,
    ``soh`` and the features). Returns one row per (battery, target level), battery-major: the
    battery's other columns (from its lowest-SOC measured row), ``soc`` set to the target and the
    features interpolated (or extrapolated) with :func:`interpolation_weights`.
    """
    features = list(features)
    targets = np.asarray(target_soc, dtype=float)
    if len(measured) == 0:
        return measured.iloc[:0].copy()
    take, feats, weights = [], [], {}
    for rows, levels, X in _battery_blocks(measured, group, features):
        key = levels.tobytes()  # batteries measured at the same levels share their weights
        if key not in weights:
            weights[key] = tuple(np.array(v) for v in zip(*[interpolation_weights(levels, t) for t in targets]))
        i, j, w = weights[key]
        take.append(np.full(len(targets), rows[0]))
        feats.append(X[i] + w[:, None] * (X[j] - X[i]))
    out = measured.iloc[np.concatenate(take)].reset_index(drop=True)
    out["soc"] = np.tile(targets, len(take))
    out[features] = np.vstack(feats)
    return out


def loo_interpolation_residuals(
    measured: pd.DataFrame,
    *,
    group: str = "battery_id",
    features: Sequence[str] = FEATURES,
) -> pd.DataFrame:
    """Leave-one-level-out residuals of :func:`interpolate_features`.

    For every measured row, the features predicted from the battery's *other* measured levels
    (interpolated, or extrapolated at the ends; carried over when only one other level exists)
    are subtracted from the measured features. The result (the rows sorted by battery and SOC,
    features replaced by residuals in volts) is what a residual generator learns: how far real
    pulses stray from straight lines in SOC.
    """
    features = list(features)
    if len(measured) == 0:
        return measured.iloc[:0].copy()
    take, res, weights = [], [], {}
    for rows, levels, X in _battery_blocks(measured, group, features):
        r = np.zeros_like(X)
        if len(levels) > 1:
            key = levels.tobytes()  # batteries measured at the same levels share their weights
            if key not in weights:
                keeps = [np.arange(len(levels)) != k for k in range(len(levels))]  # every level but the k-th
                weights[key] = [(keep, *interpolation_weights(levels[keep], levels[k])) for k, keep in enumerate(keeps)]
            for k, (keep, i, j, w) in enumerate(weights[key]):
                Xk = X[keep]
                r[k] = X[k] - (Xk[i] + w * (Xk[j] - Xk[i]))
        take.append(rows)
        res.append(r)
    out = measured.iloc[np.concatenate(take)].reset_index(drop=True)
    out[features] = np.vstack(res)
    return out
