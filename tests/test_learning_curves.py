"""New-design learning curves: the splitter (no test battery in training, same seed same draws,
different seeds different draws, nested draws), the relative representation, the runner's rules
and the crossing points, on synthetic designs (fast: no real data, no generator training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.data import FEATURES
from battgen.evaluation.learning_curves import (
    PREDICTION_COLUMNS,
    V_REF,
    LearningCurveConfig,
    best_generator,
    crossing_points,
    draw_split,
    generator_savings,
    new_design_draws,
    relative_pulses,
    run_learning_curves,
)
from battgen.interpolation import interpolate_features
from battgen.invariant import synthetic_pulses
from battgen.protocol import ALL_SOC, soc_percent


def design(name: str, n_cells: int, ocv0: float, r_scale: float, seed: int) -> pd.DataFrame:
    """One synthetic design: resistance grows as SOH falls, OCV rises with SOC; two checkpoints per cell."""
    rng = np.random.default_rng(seed)
    soc = np.asarray(ALL_SOC) / 100
    rows = []
    for c in range(n_cells):
        for checkpoint in range(2):
            soh = rng.uniform(0.7, 1.0)
            pulses = synthetic_pulses(ocv0 + 0.8 * soc, r_scale * (2.2 - soh) + 2 * soc, 0.5 * r_scale * (2 - soh), 5.0)
            rows.append(pulses.assign(battery=name, cell=f"{name}-{c}", battery_id=f"{name}-{c}-{checkpoint}", qn_ah=5.0,
                                      soh=soh, soc=soc))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def frames():
    return {"A": design("A", 6, 3.2, 20.0, 0), "B": design("B", 5, 3.5, 12.0, 1), "C": design("C", 4, 3.6, 30.0, 2)}


def test_relative_pulses_drop_the_ocv_and_commute_with_interpolation(frames):
    df = frames["A"]
    rel = relative_pulses(df)
    assert np.allclose(rel["U1"], V_REF) and np.allclose(rel["U7"] - V_REF, df["U7"] - df["U1"])
    shifted = df.assign(**{c: df[c] + 0.3 for c in FEATURES})
    np.testing.assert_allclose(relative_pulses(shifted)[FEATURES], rel[FEATURES], atol=1e-12)
    measured = df[np.isin(soc_percent(df), [10, 40])]
    targets = [0.05, 0.25, 0.5]
    np.testing.assert_allclose(interpolate_features(relative_pulses(measured), targets)[FEATURES],
                               relative_pulses(interpolate_features(measured, targets))[FEATURES], atol=1e-12)


def test_a_test_battery_is_never_in_training(frames):
    for d in new_design_draws(frames, "A", ks=(0, 1, 2, 4), ms=(1, 2, 3), draws=3, seed=7, max_other_cells=3):
        assert not set(d.train_cells) & set(d.test_cells)
        assert set(d.train_cells) | set(d.test_cells) == set(frames["A"]["cell"])
        split = draw_split(frames, d)
        train_cells = set(zip(split.train["battery"], split.train["cell"]))
        assert not train_cells & set(zip(split.test["battery"], split.test["cell"]))
        assert set(split.test["battery"]) == {"A"} and set(split.test["cell"]) == set(d.test_cells)
        new = split.train[split.train["battery"] == "A"]
        assert set(new["cell"]) == set(d.train_cells) and set(soc_percent(new)) <= set(d.levels)
        assert len(d.levels) == d.m and (d.k > 0 or d.m == 0)
        assert split.levels == (tuple(lv for lv in ALL_SOC if lv not in d.levels) if d.k else ())
        for other, cells in d.other_cells:  # other designs: their drawn cells, every level
            rows = split.train[split.train["battery"] == other]
            assert set(rows["cell"]) == set(cells) and len(cells) == 3
            assert (rows.groupby("battery_id")["soc"].nunique() == len(ALL_SOC)).all()


def test_the_same_seed_draws_the_same_splits_and_other_seeds_differ(frames):
    kw = dict(ks=(1, 2, 4), ms=(1, 2), draws=3, max_other_cells=3)
    a, b = new_design_draws(frames, "A", seed=0, **kw), new_design_draws(frames, "A", seed=0, **kw)
    assert a == b
    c = new_design_draws(frames, "A", seed=1, **kw)
    assert [(d.train_cells, d.levels, d.other_cells) for d in a] != [(d.train_cells, d.levels, d.other_cells) for d in c]
    assert len({d.train_cells for d in a if d.k == 1}) > 1  # draws of one seed differ too


def test_draws_are_nested_and_keep_a_test_cell(frames):
    draws = new_design_draws(frames, "C", ks=(0, 1, 2, 4, 8), ms=(1, 2, 3), draws=2, seed=0)
    assert {d.k for d in draws} == {0, 1, 2}  # C has 4 cells: k = 4 and 8 would leave none to test
    assert [(d.k, d.m, d.draw) for d in draws if d.k == 0] == [(0, 0, 0)]
    for draw in (0, 1):
        mine = [d for d in draws if d.draw == draw and d.k]
        for small in mine:
            for big in mine:
                if small.k <= big.k and small.m <= big.m:
                    assert big.train_cells[: small.k] == small.train_cells
                    assert set(small.levels) <= set(big.levels)
    with pytest.raises(ValueError, match="unknown design"):
        new_design_draws(frames, "Z", ks=(1,), ms=(1,), draws=1)


@pytest.fixture(scope="module")
def curves(frames):
    cfg = LearningCurveConfig(ks=(0, 1, 3), ms=(1, 2), seeds=(0,), draws=2, n_trees=10, max_other_cells=None,
                              methods=("constant", "none", "interpolation", "invariant"), progress=False)
    return run_learning_curves(frames, cfg)


def test_runner_applies_each_method_where_it_can_and_scores_only_test_cells(frames, curves):
    assert list(curves.columns) == PREDICTION_COLUMNS
    points = curves.groupby(["design", "k", "m", "method"]).size().reset_index()
    assert not ((points.method == "interpolation") & (points.m < 2)).any()  # needs two measured levels
    assert set(points[points.k == 0].method) == {"constant", "none", "invariant"}
    for (dsg, k, m, draw), g in curves.groupby(["design", "k", "m", "draw"]):
        d = next(x for x in new_design_draws(frames, dsg, (k,), (m,) if k else (1,), 2, 0) if x.draw == draw)
        assert set(g.cell) == set(d.test_cells) and not set(g.cell) & set(d.train_cells)
    const = curves[(curves.method == "constant") & (curves.k == 0) & (curves.design == "A")]
    others = pd.concat([frames["B"], frames["C"]])
    assert np.allclose(const.prediction, others.soh.mean())  # k = 0: the other designs' mean SOH


def test_the_runner_is_repeatable(frames, curves):
    cfg = LearningCurveConfig(ks=(0, 1, 3), ms=(1, 2), seeds=(0,), draws=2, n_trees=10, max_other_cells=None,
                              methods=("constant", "none", "interpolation", "invariant"), progress=False)
    pd.testing.assert_frame_equal(run_learning_curves(frames, cfg), curves)
    with pytest.raises(ValueError, match="unknown method"):
        run_learning_curves(frames, LearningCurveConfig(methods=("bogus",)))


def _synthetic_predictions() -> pd.DataFrame:
    """'good' beats the constant from (k, m) = (2, 2) on, 'gen' beats interpolation at (2, 2) only."""
    rows = []
    for k, m in [(1, 1), (1, 2), (2, 1), (2, 2), (4, 2)]:
        for c in range(8):
            for lv in ALL_SOC:
                key = {"design": "A", "k": k, "m": m, "draw": 0, "seed": 0, "cell": f"c{c}", "battery_id": f"c{c}",
                       "soc": lv / 100, "soh": 0.8}
                good = 0.02 if (k >= 2 and m >= 2) else 0.12
                rows += [{**key, "method": "constant", "prediction": 0.88}, {**key, "method": "good", "prediction": 0.8 + good}]
                if m >= 2:
                    rows += [{**key, "method": "interpolation", "prediction": 0.86},
                             {**key, "method": "gen", "prediction": {1: 0.87, 2: 0.84}.get(k, 0.89)}]
    return pd.DataFrame(rows)[PREDICTION_COLUMNS]


def test_crossing_points_and_savings():
    cross = crossing_points(_synthetic_predictions()).set_index("method")
    assert (cross.loc["good", "k"], cross.loc["good", "m"]) == (2, 2)
    assert cross.loc["good", "diff"] == pytest.approx(-7.5)
    assert (cross.loc["interpolation", "k"], cross.loc["interpolation", "m"]) == (1, 2)  # fewest pulses first
    assert (cross.loc["good", "k_stable"], cross.loc["good", "m_stable"]) == (2, 2)
    flaky = _synthetic_predictions()
    flaky.loc[(flaky.method == "good") & (flaky.k == 1) & (flaky.m == 1), "prediction"] = 0.81  # wins once at (1, 1)
    cross = crossing_points(flaky).set_index("method")
    assert (cross.loc["good", "k"], cross.loc["good", "m"]) == (1, 1)
    assert (cross.loc["good", "k_stable"], cross.loc["good", "m_stable"]) == (2, 2)  # it loses at (1, 2) and (2, 1)
    savings = generator_savings(_synthetic_predictions(), generators=("gen",)).set_index(["k", "m"])
    assert list(savings.index) == [(1, 2), (2, 2), (4, 2)]  # only where interpolation runs
    assert savings["saves"].tolist() == [False, True, False]
    assert savings["beats_constant"].tolist() == [True, True, False]  # 0.87, 0.84 and 0.89 against the constant's 0.88


def test_generators_train_on_every_design_and_generate_for_the_new_one(frames):
    from dataclasses import replace

    from battgen.evaluation.generators import generate

    d = new_design_draws(frames, "B", ks=(2,), ms=(2,), draws=1, seed=0)[0]
    split = draw_split(frames, d)
    rows = generate(replace(split, train=split.train[split.train["battery"] == "B"]), "interpolation")
    n_batteries = frames["B"][frames["B"]["cell"].isin(d.train_cells)]["battery_id"].nunique()
    assert len(rows.soh) == n_batteries * (len(ALL_SOC) - 2)  # the new design's batteries at its 8 unmeasured levels
    assert len(split.conditions) == n_batteries * (len(ALL_SOC) - 2)  # SOH grid: one point per new-design battery
    cfg = LearningCurveConfig(ks=(0, 2), ms=(1,), seeds=(0,), epochs=1, methods=("constant", "cvae_plus"), progress=False)
    pred = run_learning_curves(frames, cfg)
    assert set(pred[pred.method == "cvae_plus"].k) == {2} and np.isfinite(pred.prediction).all()


def test_best_generator_compares_where_every_candidate_runs():
    summary = pd.DataFrame({"design": "A", "method": ["cvae_plus", "residual", "cvae_plus", "residual", "cvae_plus"],
                            "k": [1, 1, 2, 2, 4], "m": [2, 2, 2, 2, 1], "mape": [5.0, 4.0, 5.0, 4.5, 0.1]})
    assert best_generator(summary)["A"] == "residual"  # the (4, 1) point has cvae_plus only and does not count
