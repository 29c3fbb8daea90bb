"""battgen.benchmark: the leak-free protocol keeps test batteries and labels out of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from battgen.benchmark import (
    LEAKFREE_COLUMNS,
    LeakFreeConfig,
    _splits,
    best_baseline,
    bootstrap_ci,
    grouped_folds,
    paired_differences,
    run_leakfree,
    skill_scores,
    soh_grid,
    summarize_leakfree,
    t_interval,
    unit_means,
)
from battgen.data import load_pulsebat
from battgen.experiments import CASES, soc_percent, test_levels
from battgen.train import TrainConfig


def test_grouped_folds_partition_whole_groups() -> None:
    groups = np.repeat(list("abcdefg"), 3)
    folds = grouped_folds(groups, 3, seed=1)
    assert len(folds) == 3
    assert (np.sum(folds, axis=0) == 1).all()  # every row in exactly one test fold
    for mask in folds:
        assert not set(groups[mask]) & set(groups[~mask])
    assert all((a == b).all() for a, b in zip(folds, grouped_folds(groups, 3, seed=1)))
    assert any((a != b).any() for a, b in zip(folds, grouped_folds(groups, 3, seed=2)))
    with pytest.raises(ValueError, match="n_folds"):
        grouped_folds(groups, 8, seed=0)


def test_soh_grid_spans_training_range() -> None:
    g = soh_grid([0.9, 0.7, 0.8], 5)
    np.testing.assert_allclose(g, [0.7, 0.75, 0.8, 0.85, 0.9])


def test_nmc21ah_splits_by_cell_and_never_sees_test_labels(data_dir: Path) -> None:
    df = load_pulsebat("NMC2.1", data_dir=data_dir)
    for case in (2, 6):
        splits = _splits(df, case, seed=0, n_folds=3, group="cell")
        assert sum(s.test["battery_id"].nunique() for s in splits) == df["battery_id"].nunique()
        for s in splits:
            assert not set(s.train["cell"]) & set(s.test["cell"])  # no ageing checkpoint of a test cell in training
            assert set(soc_percent(s.train)) == set(CASES[case])
            assert set(soc_percent(s.test)) == set(test_levels(case))
            assert s.grid.min() == s.train["soh"].min() and s.grid.max() == s.train["soh"].max()
            assert len(s.grid) == s.train["battery_id"].nunique()
            # generation conditions: the unseen levels x the SOH grid, no test label
            assert set(np.round(s.targets[:, 1], 12)) == set(np.round(s.grid, 12))


@pytest.fixture(scope="module")
def small(data_dir: Path, tmp_path_factory) -> tuple[pd.DataFrame, LeakFreeConfig, Path]:
    cache = tmp_path_factory.mktemp("cache")
    cfg = LeakFreeConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], n_folds=3, train=TrainConfig(epochs=1),
                         data_dir=str(data_dir), progress=False)
    return run_leakfree(cfg, cache_dir=cache), cfg, cache


def test_leakfree_table(small) -> None:
    res, cfg, _ = small
    assert list(res.columns) == LEAKFREE_COLUMNS
    interp, extrap = res[res["case"] == 3], res[res["case"] == 7]
    base = {"baseline_constant", "phase1", "baseline_interpolation", "baseline_soc_input", "phase2_sample",
            "phase2_cvae_plus", "phase2_residual"}
    assert set(interp["method"]) == base
    assert set(extrap["method"]) == base | {"phase2_latent_scaling", "phase2_authors_shift"}
    # every held-out battery is scored exactly once per (seed, level, method)
    per = res.groupby(["seed", "case", "test_soc", "method"])["n_test"].sum()
    assert (per == 52).all()
    assert res["mape"].between(0, 100).all()
    const = res[res["method"] == "baseline_constant"]
    assert (const.groupby(["seed", "case", "fold"])["mape"].nunique() == 1).all()  # same prediction at every level


def test_leakfree_is_repeatable_and_cached(small, data_dir: Path) -> None:
    res, cfg, cache = small
    files = sorted(cache.glob("leakfree_*_seed*.csv"))
    assert len(files) == 1 and cfg.fingerprint() in files[0].name
    again = run_leakfree(cfg, cache_dir=cache)  # read back
    pd.testing.assert_frame_equal(res, again, check_dtype=False)
    # recomputed from scratch, alone: a split's fits do not depend on the other splits in the stack
    fresh = run_leakfree(LeakFreeConfig(**{**cfg.__dict__, "cases": [7]}))
    pd.testing.assert_frame_equal(res[res["case"] == 7].reset_index(drop=True), fresh, check_dtype=False, atol=1e-12, rtol=0)


def test_intervals() -> None:
    v = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    m, lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert m == 3.0 and (lo, hi) == pytest.approx(ref)
    m, lo, hi = bootstrap_ci(v, seed=0)
    assert lo < m < hi and lo >= 1.0 and hi <= 5.0
    assert t_interval([2.0]) == (2.0, 2.0, 2.0)


def test_statistics_on_the_small_run(small) -> None:
    res, _, _ = small
    summary = summarize_leakfree(res, by=("battery", "method"))
    assert (summary["n_units"] == 3).all()  # 1 seed x 3 folds
    assert ((summary["ci_low"] <= summary["mape"]) & (summary["mape"] <= summary["ci_high"])).all()
    units = unit_means(res, ("battery", "method"))
    assert len(units) == 3 * res["method"].nunique()
    skill = skill_scores(res)
    assert skill.loc[skill["method"] == "baseline_constant", "skill"].abs().max() == 0
    diff = paired_differences(res, "baseline_interpolation", "baseline_constant")
    manual = (unit_means(res[res["method"] == "baseline_interpolation"], ("battery",))["mape"].to_numpy()
              - unit_means(res[res["method"] == "baseline_constant"], ("battery",))["mape"].to_numpy()).mean()
    assert diff["diff"].item() == pytest.approx(manual)
    assert 0 <= diff["frac_better"].item() <= 1
    best = best_baseline(summary)
    assert best["method"].item() in {"baseline_constant", "phase1", "baseline_interpolation", "baseline_soc_input"}


def test_improved_training_options(tmp_path: Path) -> None:
    from battgen.model import CVAEConfig
    from battgen.train import FitJob, FittedCVAE, fit_generators

    rng = np.random.default_rng(0)
    cond = np.column_stack([rng.choice([0.05, 0.25, 0.5], 96), rng.uniform(0.7, 1.0, 96)])
    feats = 3.2 + 0.8 * cond[:, :1] + 0.1 * cond[:, 1:] + 0.01 * rng.standard_normal((96, 21))
    job = FitJob(feats, cond, seed=0, feature_bounds=(1.5, 5.0))
    cfg = CVAEConfig(conditioning="concat", output="linear")
    plain = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4))[0]
    fixed, floored, annealed = fit_generators(
        [job, FitJob(feats, cond, seed=0), FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4), progress=False)
    np.testing.assert_array_equal(fixed.feature_scaler.data_min, np.full(21, 1.5))
    np.testing.assert_array_equal(fixed.feature_scaler.data_max, np.full(21, 5.0))
    # a fit does not depend on its neighbours in the stack
    assert floored.history == plain.history
    fb = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4, free_bits=0.5), progress=False)[0]
    an = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4, kl_anneal_epochs=3), progress=False)[0]
    assert fb.history != plain.history and an.history != plain.history
    assert all(np.isfinite(v).all() for v in fb.history.values())
    path = fb.save(tmp_path / "g.pt")
    back = FittedCVAE.load(path)
    assert back.train_config.free_bits == 0.5
    with pytest.raises(ValueError, match="feature_bounds"):
        fit_generators([FitJob(feats, cond, seed=0, feature_bounds=(5.0, 1.5))], cfg, TrainConfig(epochs=1))
