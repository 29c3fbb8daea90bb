"""Estimators at unknown SOC: augmentation, the grouped ridge penalty, SOC invariance on synthetic
pulses, the benchmark's protocol (the same folds and predictions as run_estimator_benchmark, no
held-out battery in training, the nested choice) and the statistics over per-pulse predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.data import FEATURES, load_pulsebat
from battgen.evaluation.leakfree import run_estimator_benchmark
from battgen.evaluation.split import derive_seed, grouped_folds
from battgen.evaluation.unknown_soc import (
    NESTED,
    PREDICTION_COLUMNS,
    InvariantEstimator,
    augmented_rows,
    battery_errors,
    grouped_ridge_alpha,
    nested_verdict,
    paired_difference,
    run_unknown_soc,
    summarize,
)
from battgen.invariant import synthetic_pulses
from battgen.protocol import ALL_SOC, soc_percent


def synthetic_type(n: int = 24, seed: int = 0, levels=ALL_SOC) -> pd.DataFrame:
    """A battery type whose resistance grows as SOH falls and whose OCV rises with SOC."""
    rng = np.random.default_rng(seed)
    soh = rng.uniform(0.7, 1.0, n)
    rows = []
    for i, s in enumerate(soh):
        soc = np.asarray(levels) / 100
        ocv = 3.2 + 1.2 * soc + rng.normal(0, 0.01)
        pulses = synthetic_pulses(ocv, 20 * (2.2 - s) + 0.3 * soc, 10 * (2.0 - s), 10.0)
        rows.append(pulses.assign(battery="SYN", cell=f"c{i}", battery_id=f"c{i}", qn_ah=10.0, soh=s, soc=soc))
    return pd.concat(rows, ignore_index=True)


def test_augmented_rows_fill_each_batterys_unmeasured_levels_only():
    df = synthetic_type(4)
    train = pd.concat([df[(df.cell == "c0") & df.soc.isin([0.05, 0.5])], df[(df.cell == "c1") & (df.soc == 0.25)],
                       df[df.cell.isin(["c2", "c3"])]])
    aug = augmented_rows(train)
    got = aug.assign(pct=soc_percent(aug)).groupby("battery_id")["pct"].apply(lambda s: sorted(s.tolist()))
    assert got["c0"] == list(ALL_SOC)  # two levels: interpolated to the eight others
    assert got["c1"] == [25]  # one level: nothing to interpolate from
    assert got["c2"] == list(ALL_SOC) and len(aug) == 10 + 1 + 20  # complete batteries are not duplicated
    mid = aug[(aug.battery_id == "c0") & np.isclose(aug.soc, 0.25)][FEATURES].to_numpy()
    ends = train[train.battery_id == "c0"].sort_values("soc")[FEATURES].to_numpy()
    np.testing.assert_allclose(mid[0], ends[0] + (20 / 45) * (ends[1] - ends[0]))


def test_grouped_ridge_alpha_equals_a_grid_search_with_grouped_folds():
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    X = rng.normal(size=(240, 12))
    y = 1.0 + 0.05 * X[:, 0] - 0.03 * X[:, 3] + 0.05 * rng.normal(size=240)
    groups = np.repeat(np.arange(24), 10)
    alphas = np.logspace(-2, 4, 13)
    search = GridSearchCV(make_pipeline(StandardScaler(), Ridge()), {"ridge__alpha": alphas}, cv=GroupKFold(3),
                          scoring="neg_mean_absolute_percentage_error").fit(X, y, groups=groups)
    assert grouped_ridge_alpha(X, y, groups, alphas) == search.best_params_["ridge__alpha"]
    assert grouped_ridge_alpha(X, y, np.zeros(240)) == 1.0


@pytest.mark.parametrize("method", ["invariant_forest", "invariant_ridge", "invariant_ensemble", "soc_then_soh"])
def test_invariant_estimators_learn_soh_at_unseen_soc(method):
    df = synthetic_type(30)
    train = df[df.cell.isin([f"c{i}" for i in range(20)]) & np.isin(soc_percent(df), [5, 25, 50])]
    test = df[~df.cell.isin(train.cell)]
    est = InvariantEstimator(method, n_trees=20, random_state=0).fit(train)
    pred = est.predict(test[FEATURES])
    assert np.mean(np.abs(pred - test.soh) / test.soh) < 0.5 * np.mean(np.abs(train.soh.mean() - test.soh) / test.soh)
    assert np.array_equal(pred, InvariantEstimator(method, n_trees=20, random_state=0).fit(train).predict(test))


def test_without_voltages_the_prediction_ignores_the_ocv():
    df = synthetic_type(20)
    train = df[np.isin(soc_percent(df), [5, 25, 50])]
    est = InvariantEstimator("invariant_ensemble", voltages=False, n_trees=10).fit(train)
    shifted = df.assign(**{c: df[c] + 0.15 for c in FEATURES})
    np.testing.assert_allclose(est.predict(shifted), est.predict(df), atol=1e-12)
    with pytest.raises(RuntimeError, match="not fitted"):
        InvariantEstimator().predict(df)
    with pytest.raises(ValueError, match="method must be one of"):
        InvariantEstimator("bogus").fit(train)


@pytest.fixture(scope="module")
def nmc21_run(data_dir):
    frames = {"NMC21": load_pulsebat("NMC21", data_dir=data_dir)}
    methods = ("constant", "interpolation", "invariant_forest", "invariant_ridge", "invariant_ensemble")
    run = run_unknown_soc(frames, methods, n_folds=2, inner_folds=2, n_trees=5, progress=False)
    return frames, run


def test_constant_and_interpolation_reproduce_the_estimator_benchmark(nmc21_run):
    frames, run = nmc21_run
    bench = run_estimator_benchmark(["NMC21"], n_folds=2, generators=("interpolation",), frames=frames, progress=False)
    pred = run.predictions.assign(ape=lambda d: (d.soh - d.prediction).abs() / d.soh * 100, test_soc=lambda d: soc_percent(d))
    mine = pred.groupby(["method", "fold", "test_soc"])["ape"].mean()
    for _, row in bench.iterrows():
        assert mine[(row["generator"], row["fold"], row["test_soc"])] == pytest.approx(row["mape"], rel=1e-12)


def test_held_out_batteries_are_never_trained_on_and_scored_at_every_level(nmc21_run):
    frames, run = nmc21_run
    df = frames["NMC21"]
    pred = run.predictions
    assert list(pred.columns) == PREDICTION_COLUMNS
    folds = grouped_folds(df["cell"].to_numpy(), 2, derive_seed("NMC21", 0, "folds"))
    for fold, held_out in enumerate(folds):
        scored = pred[(pred.fold == fold) & (pred.method == "constant")]
        assert set(scored.cell) == set(df.loc[held_out, "cell"])
        assert (scored.groupby("battery_id")["soc"].nunique() == len(ALL_SOC)).all()
    assert pred.groupby("cell")["fold"].nunique().max() == 1  # each cell is held out in exactly one fold


def test_the_nested_choice_is_the_inner_winner_scored_outside(nmc21_run):
    _, run = nmc21_run
    chosen = run.choices[run.choices.chosen]
    assert len(chosen) == 2 and (chosen.groupby(["fold"]).size() == 1).all()
    for _, c in chosen.iterrows():
        fold = run.choices[run.choices.fold == c.fold]
        assert c.method != "constant" and c.inner_mape == fold.loc[fold.method != "constant", "inner_mape"].min()
        mine = run.predictions[(run.predictions.method == NESTED) & (run.predictions.fold == c.fold)]
        theirs = run.predictions[(run.predictions.method == c.method) & (run.predictions.fold == c.fold)]
        assert np.array_equal(mine.prediction.to_numpy(), theirs.prediction.to_numpy())


def test_choose_picks_the_lowest_inner_mape_among_the_candidates():
    from battgen.evaluation.unknown_soc import choose

    inner = pd.DataFrame({"battery": "T", "seed": 0, "fold": [0, 0, 0, 1, 1, 1], "method": ["constant", "a", "b"] * 2,
                          "inner_mape": [1.0, 3.0, 2.0, 1.0, 2.0, 2.0]})
    picked = choose(inner, ["a", "b"])
    assert picked[picked.chosen].method.tolist() == ["b", "a"]  # the constant is not a candidate; ties: the first
    assert choose(inner, ["constant", "a"])[lambda d: d.chosen].method.tolist() == ["constant", "constant"]


def _predictions(scale: float) -> pd.DataFrame:
    """Constant off by 10 % everywhere; 'half' off by scale x that; 6 cells x 10 levels."""
    base = pd.DataFrame([{"battery": "T", "seed": 0, "fold": c % 2, "cell": f"c{c}", "battery_id": f"c{c}",
                          "soc": lv / 100, "soh": 0.8, "soc_pred": np.nan} for c in range(6) for lv in ALL_SOC])
    return pd.concat([base.assign(method="constant", prediction=0.88),
                      base.assign(method="half", prediction=0.8 * (1 + 0.1 * scale))], ignore_index=True)[PREDICTION_COLUMNS]


def test_summary_ratio_goal_and_intervals():
    s = summarize(_predictions(0.5), goal=0.6).set_index("method")
    assert s.loc["constant", "mape"] == pytest.approx(10.0) and s.loc["constant", "ratio"] == pytest.approx(1.0)
    assert s.loc["half", "ratio"] == pytest.approx(0.5) and bool(s.loc["half", "meets_goal"])
    assert s.loc["half", "excess"] == pytest.approx(5.0 - 6.0)
    assert s.loc["half", "ci_low"] == pytest.approx(5.0) and s.loc["half", "ci_high"] == pytest.approx(5.0)  # identical cells
    assert not summarize(_predictions(0.7), goal=0.6).set_index("method").loc["half", "meets_goal"]


def test_paired_difference_and_battery_errors():
    d = paired_difference(_predictions(0.5), ["half"], "constant", keys=["cell", "soc"], by=["battery"]).iloc[0]
    assert d["diff"] == pytest.approx(-5.0) and d["n_cells"] == 6
    errors = battery_errors(_predictions(0.5))
    assert len(errors) == 12 and np.allclose(errors[errors.method == "half"].mape, 5.0)


def test_nested_verdict_reads_the_choice():
    summary = pd.DataFrame({"battery": ["T"] * 3, "method": [NESTED, "interpolation", "constant"],
                            "mape": [2.0, 3.0, 5.0], "ratio": [0.4, 0.6, 1.0]})
    choices = pd.DataFrame({"battery": ["T"] * 3, "seed": 0, "fold": [0, 1, 2],
                            "method": ["invariant_forest", "invariant_forest", "interpolation"], "inner_mape": 1.0,
                            "chosen": True})
    v = nested_verdict(summary, choices).iloc[0]
    assert v["most_chosen"] == "invariant_forest" and v["share_chosen"] == pytest.approx(2 / 3)
    assert bool(v["new_method_wins"])
    assert not nested_verdict(summary.assign(mape=[3.5, 3.0, 5.0]), choices).iloc[0]["new_method_wins"]


def test_a_tie_is_no_choice():
    """Methods picked equally often are all named; with the current method among them a new method has not won."""
    summary = pd.DataFrame({"battery": ["T"] * 3, "method": [NESTED, "interpolation", "constant"],
                            "mape": [2.0, 3.0, 5.0], "ratio": [0.4, 0.6, 1.0]})
    choices = pd.DataFrame({"battery": "T", "seed": 0, "fold": [0, 1, 2, 3],
                            "method": ["soc_then_soh", "interpolation", "interpolation", "soc_then_soh"],
                            "inner_mape": 1.0, "chosen": True})
    v = nested_verdict(summary, choices).iloc[0]
    assert v["most_chosen"] == "interpolation = soc_then_soh" and v["share_chosen"] == pytest.approx(0.5)
    assert not v["new_method_wins"]
    both_new = choices.assign(method=["soc_then_soh", "invariant_forest", "invariant_forest", "soc_then_soh"])
    v = nested_verdict(summary, both_new).iloc[0]
    assert v["most_chosen"] == "invariant_forest = soc_then_soh" and v["new_method_wins"]


def test_best_per_type_and_the_recommended_default():
    from battgen.evaluation.unknown_soc import CEILING, best_per_type, recommended_default

    summary = pd.DataFrame({"battery": "T", "method": ["constant", "interpolation", "invariant_forest", CEILING],
                            "mape": [10.0, 7.0, 5.0, 4.0], "ci_low": 0.0, "ci_high": 0.0, "ratio": [1.0, 0.7, 0.5, 0.4],
                            "excess_high": [4.0, 1.0, -0.5, -2.0]})
    best = best_per_type(summary, goal=0.6).iloc[0]
    assert best["method"] == "invariant_forest" and best["gap"] == pytest.approx(-0.1) and best["reached"] and best["clearly"]
    assert best["ceiling_ratio"] == pytest.approx(0.4) and best["interpolation_ratio"] == pytest.approx(0.7)
    choices = pd.DataFrame({"battery": "T", "seed": 0, "fold": [0, 1], "method": "invariant_forest", "inner_mape": 1.0,
                            "chosen": True})
    verdict = pd.DataFrame({"battery": ["T"], "new_method_wins": [True]})
    assert recommended_default(verdict, choices) == "invariant_forest"
    assert recommended_default(verdict.assign(new_method_wins=False), choices) == "interpolation"
    tied = choices.assign(method=["invariant_forest", "soc_then_soh"])  # no single method to adopt
    assert recommended_default(verdict, tied) == "interpolation"
