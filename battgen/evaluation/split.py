"""Splits: which rows a method may learn from, which rows score it, and where to generate.

A :class:`Split` is all that distinguishes the protocols of battgen. Every method sees
``split.train`` (measured rows), generators produce rows at ``split.levels`` (SOC, %) and, for
the conditional ones, at ``split.conditions`` (``[SOC fraction, SOH]``); the score is on
``split.test``. The protocols differ only in how they make splits:

- :func:`paper_split` (the paper): one battery type, the case's measured SOC levels for training
  and every other level for test, *the same physical batteries* in both; generation conditioned
  on the test rows' true SOH, one condition per test row.
- :func:`leakfree_splits`: the physical batteries dealt into grouped folds
  (:func:`grouped_folds`); training batteries at the measured levels, held-out batteries at the
  unseen levels; generation conditioned on an SOH grid spanning the training batteries
  (:func:`soh_grid`), never on a test label.
- :func:`estimator_split` (:class:`battgen.estimator.SOHEstimator`): the training rows as given,
  the wanted SOC levels that were not measured, the same SOH grid; the test rows, if any, at every
  level, their SOC not used.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd

from battgen.protocol import CASES, case_kind, soc_percent, test_levels

__all__ = [
    "derive_seed",
    "Split",
    "paper_split",
    "grouped_folds",
    "soh_grid",
    "grid_conditions",
    "leakfree_splits",
    "HeldOut",
    "held_out_folds",
    "estimator_split",
]


def derive_seed(*parts: object) -> int:
    """A stable seed in ``[0, 2**32)`` from ``parts``: the CRC-32 of their ``repr``.

    The seed convention of every protocol in battgen, documented here once:

    - a split is identified by its key ``(battery, case, fold, seed)`` (``fold`` is ``None`` in
      the paper's protocol, which has no folds); each random stream of the split is seeded with
      ``derive_seed(*key, stream)`` (:meth:`Split.seed`): ``"fit", <fit name>`` for a
      generator's training (initialisation, shuffling, reparameterisation noise),
      ``<generator name>`` for its sampling and ``"forest"`` for every forest scored on the split;
    - the grouped folds of a battery type and seed are dealt with ``derive_seed(battery, seed, "folds")``;
    - :class:`battgen.estimator.SOHEstimator` uses the key ``(random_state,)``.

    CRC-32 of the ``repr`` (not :func:`hash`) gives the same seed in every process and on every
    machine; the range fits numpy, torch and scikit-learn alike.
    """
    return zlib.crc32(repr(parts).encode())


@dataclass(frozen=True, eq=False)
class Split:
    """What one evaluation unit may see, where it generates, and what scores it."""

    key: tuple  # identifies the split; every random stream derives from it (derive_seed)
    train: pd.DataFrame  # measured rows (battgen.data schema) the methods may learn from
    test: pd.DataFrame  # rows that score the methods (may be empty)
    levels: tuple[int, ...]  # SOC levels (%) to generate at
    conditions: np.ndarray  # (m, 2) [SOC fraction, SOH] for the conditional generators
    condition_groups: np.ndarray | None = None  # (m,) battery_id per condition (paper protocol), else None
    labels: dict[str, Any] = field(default_factory=dict)  # columns of its rows in result tables

    def seed(self, *stream: object) -> int:
        """The seed of one random stream of this split: ``derive_seed(*key, *stream)``."""
        return derive_seed(*self.key, *stream)

    @property
    def battery(self) -> str | None:
        """The battery type of the training rows (``None`` without a ``battery`` column)."""
        return str(self.train["battery"].iloc[0]) if "battery" in self.train.columns and len(self.train) else None

    @property
    def train_levels(self) -> tuple[int, ...]:
        """The measured SOC levels (%), ascending."""
        return tuple(sorted(set(soc_percent(self.train).tolist())))


def _labels(df: pd.DataFrame, case: int, seed: int, fold: int | None) -> dict[str, Any]:
    return {"battery": str(df["battery"].iloc[0]), "pulse_width_s": float(df["pulse_width_s"].iloc[0]), "case": case,
            "kind": case_kind(case), "seed": seed, "fold": fold}


def paper_split(df: pd.DataFrame, case: int, seed: int) -> Split:
    """The paper's split of one battery type's table for ``case`` (see the module docstring)."""
    measured = np.isin(soc_percent(df), CASES[case])
    train, test = df[measured], df[~measured]
    return Split(key=(str(df["battery"].iloc[0]), case, None, seed), train=train, test=test, levels=test_levels(case),
                 conditions=test[["soc", "soh"]].to_numpy(float), condition_groups=test["battery_id"].to_numpy(),
                 labels=_labels(df, case, seed, None))


def grouped_folds(groups: Sequence, n_folds: int, seed: int) -> list[np.ndarray]:
    """Boolean test masks of ``n_folds`` folds that keep every group (physical battery) whole.

    The sorted unique groups are shuffled with ``numpy.random.default_rng(seed)`` and dealt into
    folds of near-equal size; every group is in exactly one test fold.
    """
    groups = np.asarray(groups)
    unique = np.array(sorted(set(groups.tolist())))
    if n_folds < 2 or n_folds > len(unique):
        raise ValueError(f"n_folds must be between 2 and the number of groups ({len(unique)}), got {n_folds}")
    perm = np.random.default_rng(seed).permutation(len(unique))
    return [np.isin(groups, unique[part]) for part in np.array_split(perm, n_folds)]


def soh_grid(train_soh: np.ndarray, n: int) -> np.ndarray:
    """``n`` SOH values evenly spanning the training batteries' SOH range (never a test label)."""
    train_soh = np.asarray(train_soh, dtype=float)
    return np.linspace(train_soh.min(), train_soh.max(), int(n))


def grid_conditions(levels_pct: Sequence[int], grid: np.ndarray) -> np.ndarray:
    """``(len(levels) * len(grid), 2)`` rows of ``[SOC fraction, SOH]``, level-major."""
    soc = np.repeat(np.asarray(levels_pct, dtype=float) / 100.0, len(grid))
    return np.column_stack([soc, np.tile(grid, len(levels_pct))])


def leakfree_splits(df: pd.DataFrame, case: int, seed: int, n_folds: int, group: str = "cell") -> list[Split]:
    """The leak-free splits of one battery type's table for ``case``: one per grouped fold."""
    measured = np.isin(soc_percent(df), CASES[case])
    battery = str(df["battery"].iloc[0])
    out = []
    for fold, held_out in enumerate(grouped_folds(df[group].to_numpy(), n_folds, derive_seed(battery, seed, "folds"))):
        train = df[~held_out & measured]
        grid = soh_grid(train["soh"].to_numpy(), train["battery_id"].nunique())
        out.append(Split(key=(battery, case, fold, seed), train=train, test=df[held_out & ~measured],
                         levels=test_levels(case), conditions=grid_conditions(test_levels(case), grid),
                         labels=_labels(df, case, seed, fold)))
    return out


class HeldOut(NamedTuple):
    """One grouped fold of the estimator benchmarks (:func:`held_out_folds`)."""

    fold: int
    train: pd.DataFrame  # the other batteries, at the measured levels
    test: pd.DataFrame  # the fold's batteries, at every level
    others: pd.DataFrame  # the other batteries at every level (what measuring everything would give)
    random_state: int  # the estimator's: derive_seed(battery type, fold, seed, "estimator")


def held_out_folds(battery: str, df: pd.DataFrame, measured_soc: Sequence[int], n_folds: int, seed: int,
                   group: str = "cell") -> Iterator[HeldOut]:
    """The folds in which an estimator is scored on batteries it never saw, SOC not given: the physical
    batteries (``group``) of one type dealt into ``n_folds`` grouped folds (:func:`grouped_folds`, as
    :func:`leakfree_splits`), trained on the others at ``measured_soc`` (%), tested at every level."""
    measured = np.isin(soc_percent(df), list(measured_soc))
    for fold, held_out in enumerate(grouped_folds(df[group].to_numpy(), n_folds, derive_seed(battery, seed, "folds"))):
        yield HeldOut(fold, df[~held_out & measured], df[held_out], df[~held_out], derive_seed(battery, fold, seed, "estimator"))


def estimator_split(train: pd.DataFrame, soc_levels: Sequence[int], key: tuple, *, n_grid: int | None = None,
                    test: pd.DataFrame | None = None, labels: dict[str, Any] | None = None) -> Split:
    """An estimator's split: generate at the ``soc_levels`` (%) that ``train`` has no rows at, on
    an SOH grid of ``n_grid`` points (default: one per training battery)."""
    measured = set(soc_percent(train).tolist())
    levels = tuple(int(s) for s in soc_levels if int(s) not in measured)
    grid = soh_grid(train["soh"].to_numpy(), n_grid or train["battery_id"].nunique())
    return Split(key=key, train=train, test=train.iloc[:0] if test is None else test, levels=levels,
                 conditions=grid_conditions(levels, grid), labels=dict(labels or {}))
