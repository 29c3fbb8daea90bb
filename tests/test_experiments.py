"""battgen.experiments on the real data: the cases, the results table, repeatability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battgen.data import load_pulsebat
from battgen.experiments import (
    CASES,
    RESULT_COLUMNS,
    ExperimentConfig,
    case_kind,
    run_grid,
    summarize,
    test_levels,
    write_results,
)
from battgen.train import TrainConfig

QUICK = dict(train=TrainConfig(epochs=2), progress=False)


def test_the_eight_cases() -> None:
    assert [case_kind(c) for c in CASES] == ["interpolation"] * 4 + ["extrapolation"] * 4
    assert test_levels(7) == (15, 20, 25, 30, 35, 40, 45, 50)
    assert all(set(CASES[c]) | set(test_levels(c)) == set(range(5, 55, 5)) for c in CASES)
    with pytest.raises(ValueError, match="unknown case 8"):
        case_kind(8)


@pytest.fixture(scope="module")
def grid(data_dir: Path) -> pd.DataFrame:
    cfg = ExperimentConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], data_dir=str(data_dir), **QUICK)
    return run_grid(cfg)


def test_results_table_is_tidy_and_complete(grid: pd.DataFrame) -> None:
    assert list(grid.columns) == RESULT_COLUMNS
    interp = grid[grid["case"] == 3]
    assert set(interp["method"]) == {"phase1", "phase2_sample"}
    assert sorted(interp["test_soc"].unique()) == list(test_levels(3))
    extrap = grid[grid["case"] == 7]
    assert set(extrap["method"]) == {"phase1", "phase2_sample", "phase2_latent_scaling", "phase2_authors_shift"}
    assert (grid["n_test"] == 52).all()
    assert (grid.loc[grid["method"] == "phase1", "n_train"] == 52 * len(CASES[3])).sum() == len(test_levels(3))
    assert grid["mape"].between(0, 100).all() and grid["ape_std"].ge(0).all()


def test_same_seed_twice_gives_identical_mape(grid: pd.DataFrame, data_dir: Path) -> None:
    again = run_grid(ExperimentConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], data_dir=str(data_dir), **QUICK))
    pd.testing.assert_frame_equal(grid, again, check_exact=True)


def test_another_seed_changes_phase2_not_the_data(data_dir: Path, grid: pd.DataFrame) -> None:
    other = run_grid(ExperimentConfig(batteries=["NMC21"], cases=[3], seeds=[1], data_dir=str(data_dir), **QUICK))
    a = grid[(grid["case"] == 3) & (grid["method"] == "phase2_sample")]["mape"].to_numpy()
    b = other[other["method"] == "phase2_sample"]["mape"].to_numpy()
    assert not np.array_equal(a, b)


def test_phase1_matches_a_hand_built_forest(grid: pd.DataFrame, data_dir: Path) -> None:
    from battgen.data import FEATURES
    from battgen.soh import make_forest, mape

    df = load_pulsebat("NMC21", data_dir=data_dir)
    soc = np.rint(df["soc"] * 100).astype(int)
    train, test = df[np.isin(soc, CASES[3])], df[soc == 10]
    from battgen.evaluation.split import derive_seed

    rs = derive_seed("NMC21", 3, None, 0, "forest")  # the split's forest stream (one seed convention)
    pred = make_forest(rs).fit(train[FEATURES], train["soh"]).predict(test[FEATURES])
    got = grid.query("case == 3 and method == 'phase1' and test_soc == 10")["mape"].item()
    assert got == pytest.approx(mape(test["soh"].to_numpy(), pred)[0])


def test_summary_and_atomic_files(grid: pd.DataFrame, tmp_path: Path) -> None:
    s = summarize(grid)
    assert set(s.columns) == {"battery", "case", "kind", "method", "mape", "mape_seed_std", "n_seeds"}
    row = s.query("case == 3 and method == 'phase1'")
    assert row["mape"].item() == pytest.approx(grid.query("case == 3 and method == 'phase1'")["mape"].mean())
    paths = write_results(grid, tmp_path / "out")
    assert pd.read_csv(paths["csv"]).shape == grid.shape
    assert len(json.loads(paths["json"].read_text())) == len(grid)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.csv", "results.json", "summary.csv"]
