"""The three protocols on a small fixed configuration reproduce their stored tables exactly.

The tables (tests/regression/, see its README) were written by the code before the evaluation
core existed, after the one seed convention was introduced; the paper grid, the leak-free
benchmark and the estimator benchmark now all run through battgen.evaluation.core and must give
the same numbers, to the last bit.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from battgen.data import load_pulsebat
from battgen.evaluation import ExperimentConfig, LeakFreeConfig, run_estimator_benchmark, run_grid, run_leakfree
from battgen.train import TrainConfig

HERE = Path(__file__).resolve().parent / "regression"
BATTERIES = ["LMO10", "LFP35"]
KEYS = {
    "paper_grid": ["battery", "case", "test_soc", "method"],
    "leakfree": ["battery", "case", "fold", "test_soc", "method"],
    "estimator": ["battery", "fold", "generator", "test_soc"],
}


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> dict[str, pd.DataFrame]:
    return {b: load_pulsebat(b, data_dir=data_dir) for b in BATTERIES}


def _same(name: str, got: pd.DataFrame) -> None:
    want = pd.read_csv(HERE / f"{name}.csv")
    got = pd.read_csv(pd.io.common.StringIO(got.to_csv(index=False)))  # the same dtypes as a round trip through CSV
    assert list(got.columns) == list(want.columns)
    order = KEYS[name]
    pd.testing.assert_frame_equal(got.sort_values(order).reset_index(drop=True),
                                  want.sort_values(order).reset_index(drop=True), check_exact=True)


def test_paper_grid_reproduces_its_table(frames: dict[str, pd.DataFrame]) -> None:
    _same("paper_grid", run_grid(ExperimentConfig(batteries=BATTERIES, cases=[1, 6], seeds=[0], progress=False,
                                                  train=TrainConfig(epochs=3, threads=1), baselines=True), frames=frames))


def test_leakfree_reproduces_its_table(frames: dict[str, pd.DataFrame]) -> None:
    _same("leakfree", run_leakfree(LeakFreeConfig(batteries=BATTERIES, cases=[1, 6], seeds=[0], n_folds=2, progress=False,
                                                  train=TrainConfig(epochs=3, threads=1)), frames))


def test_estimator_benchmark_reproduces_its_table(frames: dict[str, pd.DataFrame]) -> None:
    _same("estimator", run_estimator_benchmark(batteries=BATTERIES, seeds=[0], n_folds=2, epochs=3, frames=frames,
                                               progress=False))
