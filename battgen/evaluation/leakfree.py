"""Leak-free evaluation: new batteries, unseen SOC levels, no test label anywhere near training.

The paper's protocol (:mod:`battgen.evaluation.paper`) keeps the same physical batteries in
training (at some SOC levels) and test (at others) and conditions generation on the test
batteries' true SOH. Here (:func:`battgen.evaluation.split.leakfree_splits`), for each battery
type, case and seed:

1. the physical batteries are split into ``n_folds`` groups (grouped cross-validation; NMC 2.1 Ah
   by cell, so no ageing checkpoint of a test cell is ever seen), shuffled by the seed;
2. every generator and every forest sees only the training batteries at the case's training
   SOC levels;
3. generation is conditioned on an SOH grid spanning the training batteries' SOH (as many grid
   points as training batteries), never on a test label;
4. the score is the MAPE on the held-out batteries at each unseen SOC level.

The methods (:data:`LEAKFREE_METHODS`) are the predictors and generators of
:mod:`battgen.evaluation.core` and :mod:`battgen.evaluation.generators`, scored with SOC known
exactly as the paper's grid is. :func:`run_estimator_benchmark` scores
:class:`battgen.estimator.SOHEstimator` the way a recycler uses it: SOC unknown, held-out
batteries at all ten levels. Statistics over the results: :mod:`battgen.evaluation.stats`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from battgen.data import BATTERIES, FEATURES, VOLTAGE_RANGE_V, battery_frames, battery_type
from battgen.evaluation.core import PREDICTORS, RESULT_COLUMNS, constant_predictions, evaluate_known_soc, group_masks
from battgen.evaluation.generators import GENERATORS, IMPROVED_MODEL, GeneratorSettings
from battgen.evaluation.split import held_out_folds, leakfree_splits
from battgen.io import write_table
from battgen.config import CVAEConfig
from battgen.protocol import ALL_SOC, CASES, soc_percent
from battgen.soh import mape
from battgen.train import TrainConfig

__all__ = [
    "LEAKFREE_COLUMNS",
    "LEAKFREE_METHODS",
    "BASELINE_METHODS",
    "GENERATOR_METHODS",
    "LeakFreeConfig",
    "run_leakfree",
    "ESTIMATOR_COLUMNS",
    "run_estimator_benchmark",
]

PAPER_CVAE = ("cvae", "cvae_latent_scaling", "cvae_authors_shift")
IMPROVED = ("cvae_plus", "residual")
LEAKFREE_METHODS: dict[str, str] = {
    "baseline_constant": PREDICTORS["baseline_constant"],
    "phase1": PREDICTORS["phase1"],
    "baseline_interpolation": GENERATORS["interpolation"].description,
    "baseline_soc_input": PREDICTORS["baseline_soc_input"],
    **{GENERATORS[g].label: GENERATORS[g].description for g in PAPER_CVAE + IMPROVED},
}
BASELINE_METHODS = ("baseline_constant", "phase1", "baseline_interpolation", "baseline_soc_input")
"""The methods without a generative model."""
GENERATOR_METHODS = ("phase2_paper", "phase2_authors_shift", "phase2_cvae_plus", "phase2_residual")
"""The generative methods a verdict compares with the best baseline (``phase2_paper``: the paper's rule)."""
LEAKFREE_COLUMNS = list(RESULT_COLUMNS)


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
    by: tuple[str, ...] = ()  # score per value of these test columns too, e.g. ("cell",) for battery-level statistics
    data_dir: str | None = None
    progress: bool | None = None

    def settings(self) -> GeneratorSettings:
        """How the generators are trained."""
        return GeneratorSettings(self.model, self.train, self.improved_model, self.improved_train, self.feature_bounds)

    def fingerprint(self) -> str:
        """Hash of everything that changes the results of one seed (not seeds, data_dir, progress)."""
        d = {k: v for k, v in asdict(self).items() if k not in {"seeds", "data_dir", "progress"}}
        d["improved_train"] = asdict(self.settings().improved_train_config())
        d["batteries"] = [battery_type(b).key for b in self.batteries]
        d["cases"] = [int(c) for c in self.cases]
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cached(path: Path | None, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The table at ``path`` if it exists, else ``compute()`` (written to ``path`` when given)."""
    if path is not None and path.is_file():
        return pd.read_csv(path)
    table = compute()
    if path is not None:
        write_table(table, path)
    return table


def _code_tag() -> str:
    """Short hash of the battgen package's sources: cached tables never outlive the code that made them."""
    from battgen.io import package_fingerprint

    return package_fingerprint()[:8]


def _run_seed(cfg: LeakFreeConfig, frames: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    splits = [s for b in frames for case in cfg.cases for s in leakfree_splits(frames[b], case, seed, cfg.n_folds, cfg.group)]
    generators = ("interpolation",) + PAPER_CVAE + (IMPROVED if cfg.improved else ())
    table, _ = evaluate_known_soc(splits, generators, tuple(PREDICTORS), cfg.settings(), cfg.progress, by=cfg.by)
    return table


def run_leakfree(
    config: LeakFreeConfig | None = None,
    frames: dict[str, pd.DataFrame] | None = None,
    *,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run the leak-free protocol; return the tidy table :data:`LEAKFREE_COLUMNS` (plus ``config.by``).

    All generators of one seed (battery types x cases x folds) train as one stack per network.
    With ``cache_dir`` each seed's table is written there (named by the config's
    :meth:`~LeakFreeConfig.fingerprint` and a hash of battgen's source) and read back instead of
    recomputed when present: a change of settings or of the package recomputes.
    """
    cfg = config or LeakFreeConfig()
    frames = battery_frames(cfg.batteries, cfg.pulse_width_s, frames, cfg.data_dir)
    out = []
    for seed in cfg.seeds:
        path = Path(cache_dir) / f"leakfree_{cfg.fingerprint()}_{_code_tag()}_seed{seed}.csv" if cache_dir is not None else None
        table = _cached(path, lambda: _run_seed(cfg, frames, seed))
        if log is not None:
            log(f"seed {seed}: {len(table)} rows")
        out.append(table)
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------- the deployable estimator

ESTIMATOR_COLUMNS = ["battery", "seed", "fold", "generator", "test_soc", "mape", "ape_std", "n_train", "n_test"]


def _score_levels(labels: dict, test: pd.DataFrame, pred: np.ndarray, n_train: int, by: Sequence[str]) -> list[dict]:
    """One row per SOC level of ``test`` (and per value of the ``by`` columns)."""
    soh, socs = test["soh"].to_numpy(), soc_percent(test)
    rows = []
    for level in sorted(set(socs.tolist())):
        at_level = socs == level
        for key, at in group_masks(test[at_level], by):
            m, sd = mape(soh[at_level][at], pred[at_level][at])
            rows.append({**labels, **dict(zip(by, key)), "test_soc": level, "mape": m, "ape_std": sd, "n_train": n_train,
                         "n_test": int(at.sum())})
    return rows


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
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Score :class:`battgen.estimator.SOHEstimator` on held-out batteries at all ten SOC levels.

    Grouped folds as in :func:`run_leakfree`; each estimator (``random_state`` derived from the
    battery type, fold and seed) is fitted on the training batteries at ``measured_soc`` only and
    predicts the held-out batteries at 5..50 % without their SOC. ``generators`` (default: all
    of :data:`battgen.estimator.ESTIMATOR_GENERATORS`) are compared side by side, with
    ``"constant"`` (the training batteries' mean SOH) as the floor. Columns: :data:`ESTIMATOR_COLUMNS`
    (plus ``by``, e.g. ``("cell",)`` for one row per physical battery and level).
    """
    from battgen.estimator import ESTIMATOR_GENERATORS, SOHEstimator, fit_estimators

    generators = tuple(generators or ESTIMATOR_GENERATORS)
    frames = battery_frames(batteries, pulse_width_s, frames, data_dir)
    settings = json.dumps([list(frames), list(measured_soc), n_folds, sorted(generators), epochs, group, pulse_width_s]
                          + ([list(by)] if by else []))
    tag = hashlib.sha256(settings.encode()).hexdigest()[:12]

    def one_seed(seed: int) -> pd.DataFrame:
        plan, estimators, data = [], [], []
        for b, df in frames.items():
            for fold, train, test, _, random_state in held_out_folds(b, df, measured_soc, n_folds, seed, group):
                for gen in generators:
                    plan.append((b, fold, gen, train, test))
                    estimators.append(SOHEstimator(generator=gen, soc_levels=ALL_SOC, epochs=epochs, calibration_folds=0,
                                                   random_state=random_state))
                    data.append(train)
        rows: list[dict] = []
        done_constant = set()
        for (b, fold, gen, train, test), est in zip(plan, fit_estimators(estimators, data, progress=progress)):
            labels = {"battery": b, "seed": seed, "fold": fold}
            rows += _score_levels({**labels, "generator": gen}, test, est.predict(test[FEATURES]), len(est.train_y_), by)
            if (b, fold) not in done_constant:
                done_constant.add((b, fold))
                rows += _score_levels({**labels, "generator": "constant"}, test,
                                      constant_predictions(train["soh"].to_numpy(), len(test)), len(train), by)
        columns = ESTIMATOR_COLUMNS[:4] + list(by) + ESTIMATOR_COLUMNS[4:]
        return pd.DataFrame(rows, columns=columns)

    tables = []
    for seed in seeds:
        path = Path(cache_dir) / f"estimator_{tag}_{_code_tag()}_seed{seed}.csv" if cache_dir is not None else None
        tables.append(_cached(path, lambda: one_seed(seed)))
    return pd.concat(tables, ignore_index=True)
