"""The paper's unseen-SOC experiment: eight cases, Phase 1 vs Phase 2, on every battery type.

For a case, the *training* SOC levels are the ones measured; the rest of 5..50 % are *test*
levels. Phase 1 trains the forest on the measured rows and tests it on each unseen level.
Phase 2 trains a forest per unseen level on rows the CVAE generated there and tests it on the
measured rows at that level. As in the paper (and the authors' code), generation is conditioned
on the test batteries' true SOH and the same physical batteries appear in training and test:
:mod:`battgen.benchmark` asks the leak-free question.

Methods in the results table:

- ``phase1``: forest on the measured rows at the training SOC levels;
- ``phase2_sample``: forest on rows decoded from ``z ~ N(0, I)`` at (test SOC, SOH): the paper's
  Phase 2 for interpolation cases;
- ``phase2_latent_scaling``: the paper's Phase 2 for extrapolation cases (latent-space scaling);
- ``phase2_authors_shift``: what the authors' released code does for extrapolation instead.

With ``baselines=True`` (:func:`evaluate_case`, :class:`ExperimentConfig`) the baselines of
:mod:`battgen.baselines` are scored on the same test rows: ``baseline_constant``,
``baseline_interpolation`` and ``baseline_soc_input``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from battgen.evaluation.split import derive_seed
from battgen.data import BATTERIES, FEATURES, battery_type, load_pulsebat
from battgen.generate import authors_shift, latent_scaling, sample
from battgen.io import write_table
from battgen.model import CVAEConfig
from battgen.protocol import ALL_SOC, CASES, case_kind, soc_percent, test_levels
from battgen.soh import make_forest, mape
from battgen.train import FitJob, FittedCVAE, TrainConfig, fit_generators

__all__ = [
    "ALL_SOC",
    "CASES",
    "METHODS",
    "ExperimentConfig",
    "case_kind",
    "test_levels",
    "soc_percent",
    "make_fit_job",
    "evaluate_case",
    "run_grid",
    "summarize",
    "write_results",
]

METHODS: dict[str, str] = {
    "phase1": "forest on measured rows at the training SOC levels",
    "phase2_sample": "forest on CVAE rows decoded from z ~ N(0, I) at the test SOC",
    "phase2_latent_scaling": "forest on CVAE rows from the paper's latent-space scaling",
    "phase2_authors_shift": "forest on CVAE rows at the 2nd training SOC shifted by the authors' physic_weight",
}
RESULT_COLUMNS = ["battery", "pulse_width_s", "case", "kind", "seed", "test_soc", "method", "mape", "ape_std", "n_train", "n_test"]


@dataclass
class ExperimentConfig:
    """What :func:`run_grid` runs; defaults are the paper's."""

    batteries: Sequence[str] = tuple(BATTERIES)
    pulse_width_s: int = 5
    cases: Sequence[int] = tuple(CASES)
    seeds: Sequence[int] = (0,)
    model: CVAEConfig = field(default_factory=CVAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data_dir: str | None = None
    progress: bool | None = None
    baselines: bool = False  # also score the baselines of battgen.baselines on the same test rows


def make_fit_job(df: pd.DataFrame, case: int, seed: int) -> FitJob:
    """The paper's generator fit for one case: training-SOC rows; the condition scaler also sees
    the conditions that will be generated (all rows' [SOC, SOH], as the authors' code does)."""
    train = df[np.isin(soc_percent(df), CASES[case])]
    return FitJob(
        features=train[FEATURES].to_numpy(float),
        conditions=train[["soc", "soh"]].to_numpy(float),
        seed=derive_seed(str(df["battery"].iloc[0]), case, None, seed, "fit", "paper"),
        extra_conditions=df[["soc", "soh"]].to_numpy(float),
        provenance={"battery": str(df["battery"].iloc[0]), "case": case, "train_soc": list(CASES[case]),
                    "pulse_width_s": float(df["pulse_width_s"].iloc[0])},
    )


def generate_for_case(df: pd.DataFrame, case: int, seed: int, fitted: FittedCVAE) -> dict[str, np.ndarray]:
    """Generated features for every target row (all rows at the unseen levels), per method."""
    socs = soc_percent(df)
    train, targets = df[np.isin(socs, CASES[case])], df[~np.isin(socs, CASES[case])]
    cond = targets[["soc", "soh"]].to_numpy(float)  # true SOH of the test batteries, as the paper
    battery = str(df["battery"].iloc[0])
    out = {"phase2_sample": sample(fitted, cond, 1, seed=derive_seed(battery, case, None, seed, "cvae"))[0]}
    if case_kind(case) == "extrapolation":
        out["phase2_latent_scaling"] = latent_scaling(
            fitted, train[FEATURES].to_numpy(float), train[["soc", "soh"]].to_numpy(float), cond,
            train_groups=train["battery_id"].to_numpy(), target_groups=targets["battery_id"].to_numpy(),
            seed=derive_seed(battery, case, None, seed, "cvae_latent_scaling"))[0]
        out["phase2_authors_shift"] = authors_shift(
            fitted, cond, anchor_soc=CASES[case][1] / 100, battery=battery, seed=derive_seed(battery, case, None, seed, "cvae_authors_shift"))[0]
    return out


def evaluate_case(df: pd.DataFrame, case: int, seed: int, fitted: FittedCVAE, baselines: bool = False) -> list[dict]:
    """Phase 1 and Phase 2 MAPE at every unseen level of one case (one battery type, one seed).

    ``baselines=True`` adds the methods of :data:`battgen.baselines.BASELINES`, scored on the same rows.
    """
    socs = soc_percent(df)
    train_mask = np.isin(socs, CASES[case])
    train, targets = df[train_mask], df[~train_mask]
    target_socs = socs[~train_mask]
    battery, pw = str(df["battery"].iloc[0]), float(df["pulse_width_s"].iloc[0])
    rs = derive_seed(battery, case, None, seed, "forest")
    phase1 = make_forest(rs).fit(train[FEATURES].to_numpy(float), train["soh"].to_numpy(float))
    generated = generate_for_case(df, case, seed, fitted)
    if baselines:
        from battgen.baselines import baseline_predictions, soc_input_forest

        soc_forest = soc_input_forest(train, rs)
    rows = []
    for level in test_levels(case):
        at = target_socs == level
        X_test, y_test = targets.loc[at, FEATURES].to_numpy(float), targets.loc[at, "soh"].to_numpy(float)
        preds = {"phase1": (phase1.predict(X_test), len(train))}
        for method, feats in generated.items():
            forest = make_forest(rs).fit(feats[at], y_test)  # labels: the conditioned SOH
            preds[method] = (forest.predict(X_test), int(at.sum()))
        if baselines:
            preds.update(baseline_predictions(train, targets.loc[at], level / 100, rs, soc_forest=soc_forest))
        for method, (pred, n_train) in preds.items():
            m, s = mape(y_test, pred)
            rows.append(dict(battery=battery, pulse_width_s=pw, case=case, kind=case_kind(case), seed=seed,
                             test_soc=level, method=method, mape=m, ape_std=s, n_train=n_train, n_test=int(at.sum())))
    return rows


def run_grid(config: ExperimentConfig | None = None, frames: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Run every battery x case x seed; return the tidy results table (:data:`RESULT_COLUMNS`).

    The generators of one seed (all batteries and cases) are trained together as one stack.
    """
    cfg = config or ExperimentConfig()
    keys = [battery_type(b).key for b in cfg.batteries]
    frames = frames or {b: load_pulsebat(b, cfg.pulse_width_s, data_dir=cfg.data_dir) for b in keys}
    rows: list[dict] = []
    for seed in cfg.seeds:
        plan = [(b, case) for b in keys for case in cfg.cases]
        fitted = fit_generators([make_fit_job(frames[b], case, seed) for b, case in plan], cfg.model, cfg.train, cfg.progress)
        for (b, case), gen in zip(plan, fitted):
            rows.extend(evaluate_case(frames[b], case, seed, gen, baselines=cfg.baselines))
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def summarize(results: pd.DataFrame, by: Iterable[str] = ("battery", "case", "kind", "method")) -> pd.DataFrame:
    """Mean MAPE over test SOC levels, then mean and spread over seeds.

    Columns: the ``by`` keys, ``mape`` (mean over seeds of the per-seed mean), ``mape_seed_std``
    (standard deviation over seeds; 0 with one seed) and ``n_seeds``.
    """
    by = list(by)
    per_seed = results.groupby(by + ["seed"], sort=False)["mape"].mean().reset_index()
    out = per_seed.groupby(by, sort=False)["mape"].agg(mape="mean", mape_seed_std=lambda s: s.std(ddof=1) if len(s) > 1 else 0.0,
                                                       n_seeds="count")
    return out.reset_index()


def write_results(results: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json`` and ``summary.csv`` into ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    return {
        "csv": write_table(results, out_dir / "results.csv"),
        "json": write_table(results, out_dir / "results.json"),
        "summary": write_table(summarize(results), out_dir / "summary.csv"),
    }
