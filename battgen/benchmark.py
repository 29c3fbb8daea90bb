"""Leak-free evaluation: new batteries, unseen SOC levels, no test label anywhere near training.

The paper's protocol (:mod:`battgen.experiments`) keeps the same physical batteries in training
(at some SOC levels) and test (at others) and conditions generation on the test batteries' true
SOH. Here instead, for each battery type, case and seed:

1. the physical batteries are split into ``n_folds`` groups (grouped cross-validation; NMC 2.1 Ah
   by cell, so no ageing checkpoint of a test cell is ever seen), shuffled by the seed;
2. every generator and every forest sees only the training batteries at the case's training
   SOC levels;
3. generation is conditioned on an SOH grid spanning the training batteries' SOH (as many grid
   points as training batteries), never on a test label;
4. the score is the MAPE on the held-out batteries at each unseen SOC level.

Methods (all scored on the same held-out rows, one forest per unseen level unless noted):

- ``baseline_constant``: the training batteries' mean SOH;
- ``phase1``: one forest on the measured training rows (SOC ignored);
- ``baseline_interpolation``: forest on the training batteries' pulses linearly interpolated or
  extrapolated to the level (:func:`battgen.baselines.interpolate_features`);
- ``baseline_soc_input``: one forest with SOC as a 22nd input;
- ``phase2_sample``, ``phase2_latent_scaling``, ``phase2_authors_shift``: the paper's CVAE and
  both extrapolation variants, as in :mod:`battgen.experiments` but on the SOH grid;
- ``phase2_cvae_plus`` (improved generator): concatenation conditioning, an unbounded (linear)
  output with a feature scaler fixed on the physical voltage range (1.5-5 V, so values outside
  the training range can be produced), KL annealing and a free-bits floor against collapse;
- ``phase2_residual`` (improved generator): the training batteries' interpolated pulses plus a
  residual drawn from a CVAE trained on leave-one-level-out interpolation residuals.

Statistics (:func:`unit_means`, :func:`summarize_leakfree`, :func:`paired_differences`,
:func:`skill_scores`): the unit of replication is one (seed, fold): its MAPE is the mean over the
unseen levels (and cases, when pooled). Means come with a 95 % interval over the seeds x folds
units (Student t, or a percentile bootstrap). The units share batteries, so the interval
describes the spread of the whole procedure (split, initialisation, sampling), not sampling
from a population of battery types.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from battgen.baselines import (
    constant_predictions,
    interpolate_features,
    interpolation_forest,
    loo_interpolation_residuals,
    soc_input_forest,
)
from battgen.data import BATTERIES, FEATURES, VOLTAGE_RANGE_V, battery_type, load_pulsebat
from battgen.evaluation.split import derive_seed
from battgen.experiments import CASES, case_kind, soc_percent, test_levels
from battgen.generate import authors_shift, latent_scaling, sample
from battgen.io import progress_enabled, write_table
from battgen.model import CVAEConfig
from battgen.soh import make_forest, mape
from battgen.train import FitJob, FittedCVAE, TrainConfig, fit_generators

__all__ = [
    "LEAKFREE_COLUMNS",
    "LEAKFREE_METHODS",
    "IMPROVED_MODEL",
    "IMPROVED_TRAIN",
    "LeakFreeConfig",
    "grouped_folds",
    "soh_grid",
    "run_leakfree",
    "t_interval",
    "bootstrap_ci",
    "unit_means",
    "summarize_leakfree",
    "paired_differences",
    "skill_scores",
    "best_baseline",
    "residual_generation",
    "run_estimator_benchmark",
    "with_paper_phase2",
    "outside_training_range",
    "collapse_diagnostics",
    "ESTIMATOR_COLUMNS",
]

LEAKFREE_METHODS: dict[str, str] = {
    "baseline_constant": "training batteries' mean SOH",
    "phase1": "forest on the measured training rows (SOC ignored)",
    "baseline_interpolation": "forest on per-battery linear interpolation / extrapolation in SOC",
    "baseline_soc_input": "forest with SOC as a 22nd input",
    "phase2_sample": "paper CVAE, z ~ N(0, I) at (test SOC, SOH grid)",
    "phase2_latent_scaling": "paper CVAE, latent-space scaling (extrapolation cases)",
    "phase2_authors_shift": "paper CVAE, authors' shift (extrapolation cases)",
    "phase2_cvae_plus": "improved CVAE: linear output, physical scaler, KL annealing, free bits",
    "phase2_residual": "interpolated pulses + CVAE residual (improved generator)",
}
BASELINE_METHODS = ("baseline_constant", "phase1", "baseline_interpolation", "baseline_soc_input")
CVAE_METHODS = ("phase2_sample", "phase2_latent_scaling", "phase2_authors_shift")
IMPROVED_METHODS = ("phase2_cvae_plus", "phase2_residual")
LEAKFREE_COLUMNS = ["battery", "pulse_width_s", "case", "kind", "seed", "fold", "test_soc", "method", "mape",
                    "ape_std", "n_train", "n_test"]

IMPROVED_MODEL = CVAEConfig(conditioning="concat", output="linear")
"""The improved generators' network: no attention (6x cheaper to train), unbounded output."""
IMPROVED_TRAIN = TrainConfig(free_bits=0.1, kl_anneal_epochs=10)
"""The improved generators' training: the paper's optimiser plus free bits and KL annealing."""


@dataclass
class LeakFreeConfig:
    """What :func:`run_leakfree` runs. ``train.epochs`` applies to both generator families."""

    batteries: Sequence[str] = tuple(BATTERIES)
    pulse_width_s: int = 5
    cases: Sequence[int] = tuple(CASES)
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    n_folds: int = 3
    model: CVAEConfig = field(default_factory=CVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    improved: bool = True  # also fit and score phase2_cvae_plus and phase2_residual
    improved_model: CVAEConfig = field(default_factory=lambda: CVAEConfig(**IMPROVED_MODEL.to_dict()))
    improved_train: TrainConfig | None = None  # None: IMPROVED_TRAIN with train.epochs / batch_size / lr
    feature_bounds: tuple[float, float] = VOLTAGE_RANGE_V  # phase2_cvae_plus's fixed feature scaler (V)
    group: str = "cell"  # column that defines a physical battery
    data_dir: str | None = None
    progress: bool | None = None

    def improved_train_config(self) -> TrainConfig:
        if self.improved_train is not None:
            return self.improved_train
        return TrainConfig(**{**asdict(IMPROVED_TRAIN), "epochs": self.train.epochs, "batch_size": self.train.batch_size,
                              "lr": self.train.lr, "threads": self.train.threads})

    def fingerprint(self) -> str:
        """Hash of everything that changes the results of one seed (not seeds, data_dir, progress)."""
        d = {k: v for k, v in asdict(self).items() if k not in {"seeds", "data_dir", "progress"}}
        d["improved_train"] = asdict(self.improved_train_config())
        d["batteries"] = [battery_type(b).key for b in self.batteries]
        d["cases"] = [int(c) for c in self.cases]
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


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


def _grid_conditions(levels_pct: Sequence[int], grid: np.ndarray) -> np.ndarray:
    """(len(levels) * len(grid), 2) rows of [SOC fraction, SOH], level-major."""
    soc = np.repeat(np.asarray(levels_pct, dtype=float) / 100.0, len(grid))
    return np.column_stack([soc, np.tile(grid, len(levels_pct))])


@dataclass
class _Split:
    battery: str
    case: int
    fold: int
    train: pd.DataFrame  # training batteries at the training levels
    test: pd.DataFrame  # held-out batteries at the unseen levels
    grid: np.ndarray  # SOH grid
    targets: np.ndarray  # generation conditions at every unseen level, level-major


def _splits(df: pd.DataFrame, case: int, seed: int, n_folds: int, group: str) -> list[_Split]:
    socs = soc_percent(df)
    train_level = np.isin(socs, CASES[case])
    battery = str(df["battery"].iloc[0])
    out = []
    for fold, test_mask in enumerate(grouped_folds(df[group].to_numpy(), n_folds, derive_seed(battery, seed, "folds"))):
        train = df[~test_mask & train_level]
        test = df[test_mask & ~train_level]
        n_batteries = train["battery_id"].nunique()
        grid = soh_grid(train["soh"].to_numpy(), n_batteries)
        out.append(_Split(battery, case, fold, train, test, grid, _grid_conditions(test_levels(case), grid)))
    return out


def _paper_job(s: _Split, seed: int) -> FitJob:
    return FitJob(s.train[FEATURES].to_numpy(float), s.train[["soc", "soh"]].to_numpy(float), seed,
                  extra_conditions=s.targets, provenance={"battery": s.battery, "case": s.case, "fold": s.fold,
                                                          "generator": "paper"})


def _plus_job(s: _Split, seed: int, bounds: tuple[float, float]) -> FitJob:
    job = _paper_job(s, seed)
    job.feature_bounds = tuple(bounds)
    job.provenance = {**job.provenance, "generator": "cvae_plus"}
    return job


def _residual_job(s: _Split, seed: int) -> FitJob:
    res = loo_interpolation_residuals(s.train)
    return FitJob(res[FEATURES].to_numpy(float), res[["soc", "soh"]].to_numpy(float), seed, extra_conditions=s.targets,
                  provenance={"battery": s.battery, "case": s.case, "fold": s.fold, "generator": "residual"})


def residual_generation(fitted: FittedCVAE, measured: pd.DataFrame, levels: Sequence[float], seed: int) -> pd.DataFrame:
    """Interpolated pulses of the ``measured`` batteries at ``levels`` (fractions) plus a residual
    decoded from ``z ~ N(0, I)`` at each row's (SOC, SOH): the residual generator's rows."""
    rows = interpolate_features(measured, levels)
    noise, _ = sample(fitted, rows[["soc", "soh"]].to_numpy(float), 1, seed=seed)
    rows[FEATURES] = rows[FEATURES].to_numpy(float) + noise
    return rows


def _generated(s: _Split, seed: int, paper: FittedCVAE | None, plus: FittedCVAE | None,
               residual: FittedCVAE | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method: generated features and their SOH labels, for all target conditions."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    labels = s.targets[:, 1]
    key = (s.battery, s.case, s.fold, seed)
    if paper is not None:
        out["phase2_sample"] = (sample(paper, s.targets, 1, seed=derive_seed(*key, "cvae"))[0], labels)
        if case_kind(s.case) == "extrapolation":
            out["phase2_latent_scaling"] = (latent_scaling(
                paper, s.train[FEATURES].to_numpy(float), s.train[["soc", "soh"]].to_numpy(float), s.targets,
                seed=derive_seed(*key, "cvae_latent_scaling"))[0], labels)
            out["phase2_authors_shift"] = (authors_shift(
                paper, s.targets, anchor_soc=CASES[s.case][1] / 100, battery=s.battery,
                seed=derive_seed(*key, "cvae_authors_shift"))[0], labels)
    if plus is not None:
        out["phase2_cvae_plus"] = (sample(plus, s.targets, 1, seed=derive_seed(*key, "cvae_plus"))[0], labels)
    return out


def _evaluate_split(s: _Split, seed: int, pw: float, generated: dict, residual: FittedCVAE | None) -> list[dict]:
    rs = derive_seed(s.battery, s.case, s.fold, seed, "forest")
    X_train, y_train = s.train[FEATURES].to_numpy(float), s.train["soh"].to_numpy(float)
    phase1 = make_forest(rs).fit(X_train, y_train)
    soc_forest = soc_input_forest(s.train, rs)
    test_socs = soc_percent(s.test)
    target_socs = np.rint(s.targets[:, 0] * 100).astype(int)
    res_rows = None
    if residual is not None:
        res_rows = residual_generation(residual, s.train, [lv / 100 for lv in test_levels(s.case)],
                                       derive_seed(s.battery, s.case, s.fold, seed, "residual"))
        res_socs = soc_percent(res_rows)
    rows = []
    for level in test_levels(s.case):
        at = test_socs == level
        test = s.test[at]
        X_test, y_test = test[FEATURES].to_numpy(float), test["soh"].to_numpy(float)
        interp, n_interp = interpolation_forest(s.train, level / 100, rs)
        preds = {
            "baseline_constant": (constant_predictions(y_train, len(test)), len(s.train)),
            "phase1": (phase1.predict(X_test), len(s.train)),
            "baseline_interpolation": (interp.predict(X_test), n_interp),
            "baseline_soc_input": (soc_forest.predict(test[FEATURES + ["soc"]].to_numpy(float)), len(s.train)),
        }
        g_at = target_socs == level
        for method, (feats, labels) in generated.items():
            forest = make_forest(rs).fit(feats[g_at], labels[g_at])
            preds[method] = (forest.predict(X_test), int(g_at.sum()))
        if res_rows is not None:
            r_at = res_socs == level
            forest = make_forest(rs).fit(res_rows.loc[r_at, FEATURES].to_numpy(float), res_rows.loc[r_at, "soh"].to_numpy(float))
            preds["phase2_residual"] = (forest.predict(X_test), int(r_at.sum()))
        for method, (pred, n_train) in preds.items():
            m, sd = mape(y_test, pred)
            rows.append(dict(battery=s.battery, pulse_width_s=pw, case=s.case, kind=case_kind(s.case), seed=seed,
                             fold=s.fold, test_soc=level, method=method, mape=m, ape_std=sd, n_train=n_train,
                             n_test=len(test)))
    return rows


def _run_seed(cfg: LeakFreeConfig, frames: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    splits = [s for b in frames for case in cfg.cases for s in _splits(frames[b], case, seed, cfg.n_folds, cfg.group)]
    fit_seed = lambda s, name: derive_seed(s.battery, s.case, s.fold, seed, "fit", name)  # noqa: E731
    paper = fit_generators([_paper_job(s, fit_seed(s, "paper")) for s in splits], cfg.model, cfg.train, cfg.progress)
    plus = residual = [None] * len(splits)
    if cfg.improved:
        jobs = [_plus_job(s, fit_seed(s, "plus"), cfg.feature_bounds) for s in splits] + [_residual_job(s, fit_seed(s, "residual")) for s in splits]
        fitted = fit_generators(jobs, cfg.improved_model, cfg.improved_train_config(), cfg.progress)
        plus, residual = fitted[: len(splits)], fitted[len(splits):]
    rows: list[dict] = []
    for s, p, q, r in zip(splits, paper, plus, residual):
        pw = float(s.train["pulse_width_s"].iloc[0])
        rows.extend(_evaluate_split(s, seed, pw, _generated(s, seed, p, q, r), r))
    return pd.DataFrame(rows, columns=LEAKFREE_COLUMNS)


def _code_tag() -> str:
    """Short hash of the battgen package's sources: cached tables never outlive the code that made them."""
    from battgen.book import package_fingerprint

    return package_fingerprint()[:8]


def run_leakfree(
    config: LeakFreeConfig | None = None,
    frames: dict[str, pd.DataFrame] | None = None,
    *,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run the leak-free protocol; return the tidy table :data:`LEAKFREE_COLUMNS`.

    All generators of one seed (battery types x cases x folds, paper and improved) are trained
    as two stacks. With ``cache_dir`` each seed's table is written there (named by the config's
    :meth:`~LeakFreeConfig.fingerprint` and a hash of battgen's source) and read back instead of
    recomputed when present: a change of settings or of the package recomputes.
    """
    cfg = config or LeakFreeConfig()
    keys = [battery_type(b).key for b in cfg.batteries]
    frames = {b: frames[b] for b in keys} if frames is not None else {
        b: load_pulsebat(b, cfg.pulse_width_s, data_dir=cfg.data_dir) for b in keys}
    out = []
    for seed in cfg.seeds:
        path = Path(cache_dir) / f"leakfree_{cfg.fingerprint()}_{_code_tag()}_seed{seed}.csv" if cache_dir is not None else None
        if path is not None and path.is_file():
            table = pd.read_csv(path)
        else:
            table = _run_seed(cfg, frames, seed)
            if path is not None:
                write_table(table, path)
        if log is not None:
            log(f"seed {seed}: {len(table)} rows")
        out.append(table)
    return pd.concat(out, ignore_index=True)[LEAKFREE_COLUMNS]


# --------------------------------------------------------------------------- statistics


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
    keys = [k for k in ("battery", "pulse_width_s", "case", "seed", "fold", "test_soc") if k in results.columns]
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


# --------------------------------------------------------------------------- the deployable estimator

ESTIMATOR_COLUMNS = ["battery", "seed", "fold", "generator", "test_soc", "mape", "ape_std", "n_train", "n_test"]


def run_estimator_benchmark(
    batteries: Sequence[str] = tuple(BATTERIES),
    measured_soc: Sequence[int] = (5, 25, 50),
    seeds: Sequence[int] = (0,),
    n_folds: int = 3,
    generators: Sequence[str] | None = None,
    epochs: int = 50,
    *,
    group: str = "cell",
    pulse_width_s: int = 5,
    frames: dict[str, pd.DataFrame] | None = None,
    data_dir: str | None = None,
    progress: bool | None = None,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Score :class:`battgen.estimator.SOHEstimator` on held-out batteries at all ten SOC levels.

    Grouped folds as in :func:`run_leakfree`; each estimator is fitted on the training batteries
    at ``measured_soc`` only and predicts the held-out batteries at 5..50 % without their SOC.
    ``generators`` (default: all of :data:`battgen.estimator.GENERATORS`) are compared side by
    side, with ``"constant"`` (the training batteries' mean SOH) as the floor. Columns:
    :data:`ESTIMATOR_COLUMNS`.
    """
    from battgen.estimator import GENERATORS, SOHEstimator, fit_estimators

    generators = tuple(generators or GENERATORS)
    keys = [battery_type(b).key for b in batteries]
    frames = {b: frames[b] for b in keys} if frames is not None else {
        b: load_pulsebat(b, pulse_width_s, data_dir=data_dir) for b in keys}
    tables = []
    settings = json.dumps([keys, list(measured_soc), n_folds, sorted(generators), epochs, group, pulse_width_s])
    tag = hashlib.sha256(settings.encode()).hexdigest()[:12]
    for seed in seeds:
        path = Path(cache_dir) / f"estimator_{tag}_{_code_tag()}_seed{seed}.csv" if cache_dir is not None else None
        if path is not None and path.is_file():
            tables.append(pd.read_csv(path))
            continue
        rows: list[dict] = []
        plan, ests, data = [], [], []
        for b in keys:
            df = frames[b]
            measured = np.isin(soc_percent(df), list(measured_soc))
            for fold, test_mask in enumerate(grouped_folds(df[group].to_numpy(), n_folds, derive_seed(b, seed, "folds"))):
                train, test = df[~test_mask & measured], df[test_mask]
                for gen in generators:
                    rs = derive_seed(b, fold, seed, "estimator")
                    plan.append((b, fold, gen, train, test))
                    ests.append(SOHEstimator(generator=gen, epochs=epochs, random_state=rs))
                    data.append(train)
        fitted = fit_estimators(ests, data, progress=progress)
        done_constant = set()
        for (b, fold, gen, train, test), est in zip(plan, fitted):
            pred = est.predict(test[FEATURES])
            socs = soc_percent(test)
            variants = [(gen, pred, len(est.train_y_))]
            if (b, fold) not in done_constant:
                done_constant.add((b, fold))
                variants.append(("constant", constant_predictions(train["soh"].to_numpy(), len(test)), len(train)))
            for name, p, n_train in variants:
                for level in sorted(set(socs.tolist())):
                    at = socs == level
                    m, sd = mape(test["soh"].to_numpy()[at], p[at])
                    rows.append(dict(battery=b, seed=seed, fold=fold, generator=name, test_soc=level, mape=m, ape_std=sd,
                                     n_train=n_train, n_test=int(at.sum())))
        table = pd.DataFrame(rows, columns=ESTIMATOR_COLUMNS)
        if path is not None:
            write_table(table, path)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)[ESTIMATOR_COLUMNS]


# --------------------------------------------------------------------------- diagnostics


def with_paper_phase2(results: pd.DataFrame, name: str = "phase2_paper") -> pd.DataFrame:
    """Add rows ``name``: the paper's Phase 2, i.e. ``phase2_sample`` in interpolation cases and
    ``phase2_latent_scaling`` in extrapolation cases (the method the paper describes for each)."""
    pick = ((results["kind"] == "interpolation") & (results["method"] == "phase2_sample")) | (
        (results["kind"] == "extrapolation") & (results["method"] == "phase2_latent_scaling"))
    return pd.concat([results, results[pick].assign(method=name)], ignore_index=True)


def outside_training_range(df: pd.DataFrame, case: int) -> dict[str, float]:
    """Share of the feature values at a case's unseen levels that lie outside the per-feature
    [min, max] of its training levels (all batteries of ``df``): what a sigmoid output mapped
    back through a MinMax scaler fitted on the training rows can never produce."""
    socs = soc_percent(df)
    train = df[np.isin(socs, CASES[case])][FEATURES].to_numpy(float)
    test = df[~np.isin(socs, CASES[case])][FEATURES].to_numpy(float)
    lo, hi = train.min(axis=0), train.max(axis=0)
    outside = (test < lo) | (test > hi)
    return {"share": float(outside.mean()), "rows_with_any": float(outside.any(axis=1).mean())}


def collapse_diagnostics(fitted: FittedCVAE, features: np.ndarray, conditions: np.ndarray) -> dict[str, float]:
    """Signs of latent collapse in a fitted generator: the KL of its last epoch, the spread of the
    posterior means over the training rows, and how much decoding the posterior means instead of
    z = 0 changes the output (RMS, mV): near 0 means the decoder ignores z."""
    mu, logvar = fitted.encode(features, conditions)
    with_z = fitted.decode(mu, conditions)
    without = fitted.decode(np.zeros_like(mu), conditions)
    return {"kl_last_epoch": float(fitted.history["kl"][-1]), "z_mean_abs": float(np.abs(mu).mean()),
            "z_mean_std": float(mu.std(axis=0).mean()), "posterior_var": float(np.exp(logvar).mean()),
            "decoder_uses_z_mv": float(1000 * np.sqrt(np.mean((with_z - without) ** 2)))}
