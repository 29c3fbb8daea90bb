"""battgen.evaluation: splits and seeds, the generator registry, the scoring core, the paper's grid,
the leak-free benchmark and the estimator benchmark.

Synthetic tables check the arithmetic where the answer is known; the real PulseBat tables (the
``data_dir`` fixture fails, never skips, when they are missing) check the protocols, with one or
two battery types, one seed and 1-2 epochs.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battgen.data import FEATURES, load_pulsebat
from battgen.estimator import ESTIMATOR_GENERATORS, SOHEstimator
from battgen.evaluation import core, paper
from battgen.evaluation.core import (
    PREDICTORS,
    constant_predictions,
    evaluate_known_soc,
    run_generators,
    score_known_soc,
    training_set,
)
from battgen.evaluation.generators import FITS, GENERATORS, GeneratorSettings, Rows, applies, fit_models, generate, generator
from battgen.evaluation.leakfree import LEAKFREE_COLUMNS, LeakFreeConfig, run_estimator_benchmark, run_leakfree
from battgen.evaluation.paper import (
    AUTHORS_PHASE2,
    PAPER_PHASE2,
    RESULT_COLUMNS,
    ExperimentConfig,
    GridRun,
    claim_cells,
    compare_with_reference,
    generation_errors,
    kind_means,
    load_reference,
    phase2_rule,
    reference_path,
    run_grid,
    run_grid_with_models,
    summarize,
    with_phase2,
    write_results,
)
from battgen.evaluation.split import (
    derive_seed,
    estimator_split,
    grid_conditions,
    grouped_folds,
    leakfree_splits,
    paper_split,
    soh_grid,
)
from battgen.evaluation.stats import best_baseline, paired_differences, skill_scores, summarize_leakfree, unit_means
from battgen.interpolation import interpolate_features
from battgen.protocol import ALL_SOC, CASES, case_kind, soc_percent, test_levels
from battgen.soh import make_forest, mape
from battgen.train import FittedCVAE, TrainConfig, fit_generators

QUICK = dict(train=TrainConfig(epochs=2), progress=False)
BASELINES = ("baseline_constant", "baseline_soc_input", GENERATORS["interpolation"].label)
"""What ``ExperimentConfig(baselines=True)`` adds to the paper's grid."""


def toy_frame(n: int = 6, battery: str = "NMC21", seed: int = 0) -> pd.DataFrame:
    """A PulseBat-like table: ``n`` batteries at the ten SOC levels, voltages smooth in SOC and SOH."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n):
        soh = 0.75 + 0.04 * b
        for level in ALL_SOC:
            soc = level / 100
            rows.append({"battery": battery, "cell": f"c{b // 2}", "battery_id": f"b{b}", "soh": soh, "pulse_width_s": 5.0,
                         "soc": soc, **{f: 3.3 + 0.6 * soc - 0.3 * soc**2 + 0.2 * soh + 0.01 * k + 0.002 * rng.normal()
                                        for k, f in enumerate(FEATURES)}})
    return pd.DataFrame(rows)


# =========================================================================== protocol, seeds and splits


def test_the_eight_cases() -> None:
    assert [case_kind(c) for c in CASES] == ["interpolation"] * 4 + ["extrapolation"] * 4
    assert test_levels(7) == (15, 20, 25, 30, 35, 40, 45, 50)
    assert all(set(CASES[c]) | set(test_levels(c)) == set(range(5, 55, 5)) for c in CASES)
    with pytest.raises(ValueError, match="unknown case 8"):
        case_kind(8)


def test_experiments_keeps_its_import_path() -> None:
    import battgen.evaluation as ev
    from battgen import experiments

    for name in ("ExperimentConfig", "run_grid", "summarize", "write_results", "RESULT_COLUMNS"):
        assert getattr(experiments, name) is getattr(paper, name)
    assert experiments.CASES is CASES and experiments.test_levels is test_levels
    assert ev.derive_seed is derive_seed and ev.GENERATORS is GENERATORS and ev.run_grid is run_grid


def test_derive_seed_is_the_documented_crc32() -> None:
    key = ("NMC21", 3, None, 0, "forest")
    assert derive_seed(*key) == zlib.crc32(repr(key).encode()) == 3622611372  # the same in every process
    assert 0 <= derive_seed("x") < 2**32 and derive_seed(1, "forest") != derive_seed(2, "forest")
    assert derive_seed(3, "forest") != derive_seed("3", "forest")  # repr keeps the types apart


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


def test_soh_grid_and_grid_conditions() -> None:
    g = soh_grid([0.9, 0.7, 0.8], 5)
    np.testing.assert_allclose(g, [0.7, 0.75, 0.8, 0.85, 0.9])
    cond = grid_conditions([10, 20], np.array([0.7, 0.9]))
    np.testing.assert_allclose(cond, [[0.1, 0.7], [0.1, 0.9], [0.2, 0.7], [0.2, 0.9]])  # level-major


def test_paper_split_same_batteries_true_labels() -> None:
    df = toy_frame()
    s = paper_split(df, 6, seed=2)
    assert s.key == ("NMC21", 6, None, 2) and s.battery == "NMC21"
    assert s.train_levels == CASES[6] and s.levels == test_levels(6)
    assert set(soc_percent(s.test)) == set(test_levels(6)) and len(s.train) + len(s.test) == len(df)
    assert set(s.train["battery_id"]) == set(s.test["battery_id"])  # the paper's protocol: the same batteries
    np.testing.assert_array_equal(s.conditions, s.test[["soc", "soh"]].to_numpy(float))  # one per test row, true SOH
    np.testing.assert_array_equal(s.condition_groups, s.test["battery_id"].to_numpy())
    assert s.labels == {"battery": "NMC21", "pulse_width_s": 5.0, "case": 6, "kind": "extrapolation", "seed": 2, "fold": None}
    assert s.seed("forest") == derive_seed("NMC21", 6, None, 2, "forest")
    assert s.seed("fit", "paper") == derive_seed("NMC21", 6, None, 2, "fit", "paper")


def test_estimator_split_generates_only_the_missing_levels() -> None:
    df = toy_frame()
    train = df[np.isin(soc_percent(df), [5, 25, 50])]
    s = estimator_split(train, ALL_SOC, (7,))
    assert s.key == (7,) and s.seed("forest") == derive_seed(7, "forest")
    assert s.levels == (10, 15, 20, 30, 35, 40, 45) and s.train_levels == (5, 25, 50)
    assert s.test.empty and s.condition_groups is None
    np.testing.assert_allclose(s.conditions, grid_conditions(s.levels, soh_grid(train["soh"], 6)))
    assert len(estimator_split(train, ALL_SOC, (7,), n_grid=3).conditions) == 7 * 3


def test_nmc2_1ah_leakfree_splits_by_cell_and_never_sees_test_labels(data_dir: Path) -> None:
    df = load_pulsebat("NMC2.1", data_dir=data_dir)
    for case in (2, 6):
        splits = leakfree_splits(df, case, seed=0, n_folds=3, group="cell")
        assert sum(s.test["battery_id"].nunique() for s in splits) == df["battery_id"].nunique()
        assert [s.key for s in splits] == [("NMC2.1", case, fold, 0) for fold in range(3)]
        for s in splits:
            assert not set(s.train["cell"]) & set(s.test["cell"])  # no ageing checkpoint of a test cell in training
            assert set(soc_percent(s.train)) == set(CASES[case])
            assert set(soc_percent(s.test)) == set(test_levels(case))
            grid = np.unique(s.conditions[:, 1])
            assert grid.min() == s.train["soh"].min() and grid.max() == s.train["soh"].max()
            assert len(grid) == s.train["battery_id"].nunique()
            # generation conditions: the unseen levels x the SOH grid, no test label
            np.testing.assert_allclose(s.conditions, grid_conditions(test_levels(case), grid))
            assert s.condition_groups is None and s.labels["fold"] == s.key[2]


# =========================================================================== the generator registry


def test_registry_names_labels_and_fits() -> None:
    assert list(GENERATORS) == ["none", "interpolation", "cvae", "cvae_latent_scaling", "cvae_authors_shift", "cvae_plus",
                                "residual"]
    assert {n: g.label for n, g in GENERATORS.items()} == {
        "none": "phase1", "interpolation": "baseline_interpolation", "cvae": "phase2_sample",
        "cvae_latent_scaling": "phase2_latent_scaling", "cvae_authors_shift": "phase2_authors_shift",
        "cvae_plus": "phase2_cvae_plus", "residual": "phase2_residual"}
    assert {n: g.fit for n, g in GENERATORS.items()} == {
        "none": None, "interpolation": None, "cvae": "paper", "cvae_latent_scaling": "paper",
        "cvae_authors_shift": "paper", "cvae_plus": "plus", "residual": "residual"}
    assert set(ESTIMATOR_GENERATORS) <= set(GENERATORS) and all(g.description for g in GENERATORS.values())
    assert set(FITS) == {"paper", "plus", "residual"}
    with pytest.raises(ValueError, match="unknown generator 'gan'.*cvae"):
        generator("gan")


def test_extrapolation_only_generators_and_missing_models() -> None:
    df = toy_frame()
    interp, extrap = paper_split(df, 1, 0), paper_split(df, 5, 0)
    for name in ("cvae_latent_scaling", "cvae_authors_shift"):
        assert not applies(GENERATORS[name], interp) and applies(GENERATORS[name], extrap)
    assert applies(GENERATORS["cvae"], interp) and applies(GENERATORS["interpolation"], interp)
    with pytest.raises(ValueError, match="needs a fitted 'paper' model"):
        generate(interp, "cvae")
    assert len(generate(interp, "none").X) == 0


def test_interpolation_generator_rows_and_rows_at() -> None:
    s = paper_split(toy_frame(), 3, 0)
    rows = generate(s, "interpolation")
    ref = interpolate_features(s.train, [lv / 100 for lv in s.levels])
    np.testing.assert_array_equal(rows.X, ref[FEATURES].to_numpy(float))
    np.testing.assert_array_equal(rows.soh, ref["soh"].to_numpy(float))  # each training battery's own label
    at = rows.at(15)
    assert len(at.X) == 6 and np.allclose(at.soc, 0.15)
    assert len(Rows.empty().at(15).X) == 0


def test_fit_models_trains_every_request_with_its_stream() -> None:
    df = toy_frame()
    a, b = paper_split(df, 1, 0), paper_split(df, 6, 0)
    settings = GeneratorSettings(train=TrainConfig(epochs=1, batch_size=16))
    fitted = fit_models([(a, "paper"), (b, "plus"), (b, "paper")], settings, progress=False)
    assert [f.provenance["generator"] for f in fitted] == ["paper", "plus", "paper"]
    assert [f.provenance["case"] for f in fitted] == [1, 6, 6]
    jobs = {(s.key, name): FITS[name].job(s, settings.feature_bounds) for s, name in ((a, "paper"), (b, "plus"), (b, "paper"))}
    assert [j.seed for j in jobs.values()] == [a.seed("fit", "paper"), b.seed("fit", "plus"), b.seed("fit", "paper")]
    # one stack per configuration, in request order: the paper fits are exactly fit_generators of their two jobs
    direct = fit_generators([jobs[(a.key, "paper")], jobs[(b.key, "paper")]], settings.model, settings.train, progress=False)
    for got, want in zip((fitted[0], fitted[2]), direct):
        assert got.history == want.history
        assert all(np.array_equal(v, want.weights[k]) for k, v in got.weights.items())
    assert fitted[1].config == settings.improved_model and fitted[0].config == settings.model
    assert fitted[1].train_config.free_bits > 0 and fitted[1].train_config.epochs == 1  # IMPROVED_TRAIN, the paper's epochs
    np.testing.assert_array_equal(fitted[1].feature_scaler.data_min, np.full(21, settings.feature_bounds[0]))
    # the condition scaler also sees the conditions to generate at (the authors' scaler)
    cond = np.vstack([a.train[["soc", "soh"]].to_numpy(float), a.conditions])
    np.testing.assert_array_equal(fitted[0].condition_scaler.data_max, cond.max(0))


# =========================================================================== the scoring core


def test_a_protocol_fit_records_the_seed_it_was_trained_with() -> None:
    s = paper_split(toy_frame(), 1, 0)
    fitted = fit_models([(s, "paper")], GeneratorSettings(train=TrainConfig(epochs=1)), progress=False)[0]
    assert fitted.provenance["seed"] == s.seed("fit", "paper")
    assert fitted.provenance["split_seed"] == 0  # the protocol's seed, kept under its own name


def test_constant_predictions() -> None:
    np.testing.assert_allclose(constant_predictions([0.8, 0.9], 3), [0.85, 0.85, 0.85], rtol=1e-15)
    assert constant_predictions([0.8], 0).shape == (0,)


def test_score_known_soc_matches_hand_built_forests() -> None:
    s = paper_split(toy_frame(8), 2, 1)
    rows = generate(s, "interpolation")
    table = pd.DataFrame(score_known_soc(s, {"interpolation": rows}))
    assert list(table["test_soc"].unique()) == list(s.levels)
    assert set(table["method"]) == {"baseline_constant", "phase1", "baseline_soc_input", "baseline_interpolation"}
    rs = s.seed("forest")
    X, y = s.train[FEATURES].to_numpy(float), s.train["soh"].to_numpy(float)
    level = s.levels[0]
    test = s.test[soc_percent(s.test) == level]
    got = table[table["test_soc"] == level].set_index("method")
    soc_forest = make_forest(rs).fit(s.train[FEATURES + ["soc"]].to_numpy(float), y)  # SOC as a 22nd input
    assert soc_forest.n_features_in_ == len(FEATURES) + 1
    at = rows.at(level)
    assert len(at.soh) == 8  # one interpolated row per training battery
    expected = {
        "baseline_constant": (np.full(len(test), y.mean()), len(y)),
        "phase1": (make_forest(rs).fit(X, y).predict(test[FEATURES].to_numpy(float)), len(y)),
        "baseline_soc_input": (soc_forest.predict(test[FEATURES + ["soc"]].to_numpy(float)), len(y)),
        "baseline_interpolation": (make_forest(rs).fit(at.X, at.soh).predict(test[FEATURES].to_numpy(float)), len(at.soh)),
    }
    for method, (pred, n_train) in expected.items():
        assert got.loc[method, "mape"] == mape(test["soh"].to_numpy(), pred)[0], method
        assert got.loc[method, "n_train"] == n_train and got.loc[method, "n_test"] == len(test) == 8
    with pytest.raises(ValueError, match="unknown predictor"):
        score_known_soc(s, {}, predictors=("oracle",))
    with pytest.raises(ValueError, match="'none' generates nothing"):
        evaluate_known_soc([s], ["none"])


def test_threads_change_nothing_but_the_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splits are generated and scored in threads over the cores: the table equals the one-thread table byte for byte."""
    import battgen.evaluation.core

    splits = [paper_split(toy_frame(8, seed=k), case, 1) for k in range(2) for case in (2, 5)]
    threaded, _ = evaluate_known_soc(splits, ["interpolation"])
    monkeypatch.setattr(battgen.evaluation.core, "usable_cores", lambda: 1)
    alone, _ = evaluate_known_soc(splits, ["interpolation"])
    assert threaded.to_csv().encode() == alone.to_csv().encode()
    assert len(threaded) == sum(len(s.levels) for s in splits) * 4


def test_training_set_is_measured_plus_generated() -> None:
    df = toy_frame()
    s = estimator_split(df[np.isin(soc_percent(df), [5, 50])], ALL_SOC, (0,))
    rows = generate(s, "interpolation")
    X, y = training_set(s, rows)
    assert X.shape == (len(s.train) + 8 * 6, 21) and y.shape == (len(X),)
    np.testing.assert_array_equal(X[: len(s.train)], s.train[FEATURES].to_numpy(float))
    np.testing.assert_array_equal(X[len(s.train):], rows.X)
    X0, _ = training_set(s, Rows.empty())
    assert len(X0) == len(s.train)


def test_result_columns_of_the_core_and_the_paper() -> None:
    assert core.RESULT_COLUMNS == RESULT_COLUMNS[:5] + ["fold"] + RESULT_COLUMNS[5:]
    assert LEAKFREE_COLUMNS == core.RESULT_COLUMNS
    assert set(PREDICTORS) == {"baseline_constant", "phase1", "baseline_soc_input"}


# =========================================================================== the paper's grid: aggregation (synthetic)


def _results() -> pd.DataFrame:
    """Two seeds, one battery, case 0 (2 test levels) and case 4 (1 test level), all methods."""
    rows = []
    for seed in (0, 1):
        for case, kind, levels in ((0, "interpolation", (10, 20)), (4, "extrapolation", (5,))):
            for level in levels:
                methods = {"phase1": 10.0 + seed, "phase2_sample": 4.0 + level / 10}
                if kind == "extrapolation":
                    methods |= {"phase2_latent_scaling": 7.0 + seed, "phase2_authors_shift": 3.0}
                for method, value in methods.items():
                    rows.append(dict(battery="NMC21", pulse_width_s=3.0, case=case, kind=kind, seed=seed,
                                     test_soc=level, method=method, mape=value, ape_std=1.0, n_train=1, n_test=1))
    return pd.DataFrame(rows)


def test_phase2_rule_summaries_and_kind_means() -> None:
    res = _results()
    p2 = phase2_rule(res)
    assert set(p2["method"]) == {"phase2"}
    assert set(zip(p2["case"], res.loc[p2.index, "method"])) == {(0, "phase2_sample"), (4, "phase2_latent_scaling")}
    cells = summarize(p2, by=("pulse_width_s", "battery", "case", "kind", "method"))  # was analysis.case_means
    c0 = cells.set_index("case").loc[0]
    assert c0["mape"] == pytest.approx(5.5) and c0["mape_seed_std"] == 0 and c0["n_seeds"] == 2
    c4 = cells.set_index("case").loc[4]
    assert c4["mape"] == pytest.approx(7.5) and c4["mape_seed_std"] == pytest.approx(math.sqrt(0.5))
    assert (c4["mape_seed_min"], c4["mape_seed_max"]) == (7.0, 8.0)
    kinds = kind_means(res[res.method == "phase1"]).set_index("kind")
    assert kinds.loc["interpolation", "mape"] == pytest.approx(10.5)


def test_with_phase2_appends_the_rule_rows() -> None:
    res = _results()
    out = with_phase2(res)
    assert len(out) == len(res) + len(phase2_rule(res))
    added = out[out["method"] == "phase2_paper"]
    np.testing.assert_array_equal(added["mape"].to_numpy(), phase2_rule(res)["mape"].to_numpy())
    shift = with_phase2(res, AUTHORS_PHASE2, name="phase2_code")
    assert shift.loc[(shift.method == "phase2_code") & (shift.case == 4), "mape"].eq(3.0).all()


def test_claim_cells() -> None:
    cells = claim_cells(_results()).set_index("case")
    assert bool(cells.loc[0, "below"]) and bool(cells.loc[0, "all_seeds_below"])
    assert not cells.loc[4, "below"]
    shift = claim_cells(_results(), AUTHORS_PHASE2).set_index("case")
    assert bool(shift.loc[4, "below"])
    assert PAPER_PHASE2 == {"interpolation": "phase2_sample", "extrapolation": "phase2_latent_scaling"}


def _reference_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reference" / "official_code_mape.csv"
    path.parent.mkdir()
    pd.DataFrame({
        "battery": ["NMC21", "NMC21", "NMC21"], "case": [0, 0, 4], "train_soc": ["x", "x", "y"],
        "test_soc": [10, 20, 5], "phase1_mape": [10.0, 12.0, 20.0], "phase2_mape": [4.0, 6.0, 9.0],
    }).to_csv(path, index=False)
    return path


def test_load_reference_and_compare(tmp_path: Path) -> None:
    ref = load_reference(_reference_csv(tmp_path))
    assert list(ref.columns) == ["battery", "case", "kind", "seed", "test_soc", "method", "mape"]
    assert len(ref) == 6 and set(ref["method"]) == {"phase1", "phase2"}
    table = compare_with_reference(_results(), ref).set_index("kind")
    assert list(table.index) == ["interpolation", "extrapolation"]
    assert table.loc["interpolation", "ref_phase1"] == pytest.approx(11.0)
    assert table.loc["extrapolation", "ref_phase2"] == pytest.approx(9.0)
    assert table.loc["extrapolation", "phase2_authors"] == pytest.approx(3.0)
    assert table.loc["extrapolation", "phase2_paper"] == pytest.approx(7.5)
    assert table.loc["interpolation", "phase2_paper"] == table.loc["interpolation", "phase2_authors"]


def test_reference_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="released-code numbers"):
        load_reference(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"battery": ["NMC21"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="expected columns"):
        load_reference(bad)


def test_the_shipped_reference_is_found_and_checked(repo_root: Path, monkeypatch) -> None:
    assert reference_path() == repo_root / "data" / "reference" / "official_code_mape.csv"
    ref = load_reference()
    assert set(ref["method"]) == {"phase1", "phase2"} and set(ref["case"]) == set(CASES) and ref["mape"].gt(0).all()
    monkeypatch.setattr(paper, "REFERENCE_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        load_reference()


# =========================================================================== the paper's grid on the real data


@pytest.fixture(scope="module")
def nmc21(data_dir: Path) -> pd.DataFrame:
    return load_pulsebat("NMC21", data_dir=data_dir)


@pytest.fixture(scope="module")
def run(data_dir: Path) -> GridRun:
    return run_grid_with_models(ExperimentConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], data_dir=str(data_dir), **QUICK))


@pytest.fixture(scope="module")
def grid(run: GridRun) -> pd.DataFrame:
    return run.results


@pytest.fixture(scope="module")
def grid_base(nmc21: pd.DataFrame) -> pd.DataFrame:
    return run_grid(ExperimentConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], baselines=True, **QUICK),
                    frames={"NMC21": nmc21})


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


def test_run_grid_is_repeatable_and_equals_run_grid_with_models(run: GridRun, nmc21: pd.DataFrame) -> None:
    cfg = ExperimentConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], **QUICK)
    again = run_grid(cfg, frames={(5, "NMC21"): nmc21})  # frames keyed by (pulse width, battery), nothing loaded
    pd.testing.assert_frame_equal(run.results, again, check_exact=True)
    labels = [(s.labels["pulse_width_s"], s.labels["battery"], s.labels["case"], s.labels["seed"]) for s in run.splits]
    assert labels == [(5.0, "NMC21", 3, 0), (5.0, "NMC21", 7, 0)]
    assert len(run.models) == 2 and all(isinstance(m, FittedCVAE) for m in run.models)
    for split, model in zip(run.splits, run.models):  # run.models[i] is split i's paper CVAE
        assert model.provenance["case"] == split.labels["case"] and model.provenance["generator"] == "paper"
    # each is the split's paper CVAE, trained on the split's ("fit", "paper") stream
    again = fit_models([(s, "paper") for s in run.splits], GeneratorSettings(cfg.model, cfg.train), progress=False)
    for model, want in zip(run.models, again):
        assert model.history == want.history
        assert all(np.array_equal(v, want.weights[k]) for k, v in model.weights.items())


def test_another_seed_changes_phase2_not_the_data(nmc21: pd.DataFrame, grid: pd.DataFrame) -> None:
    other = run_grid(ExperimentConfig(batteries=["NMC21"], cases=[3], seeds=[1], **QUICK), frames={"NMC21": nmc21})
    a = grid[(grid["case"] == 3) & (grid["method"] == "phase2_sample")]["mape"].to_numpy()
    b = other[other["method"] == "phase2_sample"]["mape"].to_numpy()
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(other["n_test"], grid.loc[grid["case"] == 3, "n_test"])


def test_phase1_matches_a_hand_built_forest(grid: pd.DataFrame, nmc21: pd.DataFrame) -> None:
    soc = np.rint(nmc21["soc"] * 100).astype(int)
    train, test = nmc21[np.isin(soc, CASES[3])], nmc21[soc == 10]
    rs = derive_seed("NMC21", 3, None, 0, "forest")  # the split's forest stream (one seed convention)
    pred = make_forest(rs).fit(train[FEATURES], train["soh"]).predict(test[FEATURES])
    got = grid.query("case == 3 and method == 'phase1' and test_soc == 10")["mape"].item()
    assert got == pytest.approx(mape(test["soh"].to_numpy(), pred)[0])


def test_summary_and_atomic_files(grid: pd.DataFrame, tmp_path: Path) -> None:
    s = summarize(grid)
    assert set(s.columns) == {"battery", "case", "kind", "method", "mape", "mape_seed_std", "mape_seed_min",
                              "mape_seed_max", "n_seeds"}
    row = s.query("case == 3 and method == 'phase1'")
    assert row["mape"].item() == pytest.approx(grid.query("case == 3 and method == 'phase1'")["mape"].mean())
    assert row["mape_seed_min"].item() == row["mape_seed_max"].item() == row["mape"].item()  # one seed
    paths = write_results(grid, tmp_path / "out")
    assert pd.read_csv(paths["csv"]).shape == grid.shape
    assert len(json.loads(paths["json"].read_text())) == len(grid)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.csv", "results.json", "summary.csv"]


def test_baselines_join_the_paper_protocol_on_the_same_rows(grid_base: pd.DataFrame) -> None:
    for case in (3, 7):
        sub = grid_base[grid_base["case"] == case]
        assert set(BASELINES) <= set(sub["method"])
        assert sorted(sub["test_soc"].unique()) == list(test_levels(case))
        n_test = sub.groupby("test_soc")["n_test"].nunique()
        assert (n_test == 1).all()  # every method scored on the same rows at a level
    # the constant predictor of the issue: 3.3 % on NMC 21 Ah, whatever the case
    const = grid_base[grid_base["method"] == "baseline_constant"].groupby("case")["mape"].mean()
    assert const.round(1).tolist() == [3.3, 3.3]
    interp = grid_base[grid_base["method"] == "baseline_interpolation"]
    assert (interp["n_train"] == 52).all()  # one interpolated row per battery


def test_without_baselines_the_table_is_unchanged(grid_base: pd.DataFrame, grid: pd.DataFrame) -> None:
    kept = grid_base[~grid_base["method"].isin(BASELINES)].reset_index(drop=True)
    pd.testing.assert_frame_equal(grid, kept, check_exact=True)


def test_interpolation_baseline_matches_a_hand_computation(grid_base: pd.DataFrame, nmc21: pd.DataFrame) -> None:
    soc = np.rint(nmc21["soc"] * 100).astype(int)
    train, test = nmc21[np.isin(soc, CASES[3])], nmc21[soc == 10]
    # hand-made: 10 % lies between 5 % and 25 %, a quarter of the way
    lo = train[train["soc"] == 0.05].set_index("battery_id")
    hi = train[train["soc"] == 0.25].set_index("battery_id").loc[lo.index]
    X = lo[FEATURES].to_numpy() + 0.25 * (hi[FEATURES].to_numpy() - lo[FEATURES].to_numpy())
    rs = derive_seed("NMC21", 3, None, 0, "forest")  # the split's forest stream (one seed convention)
    pred = make_forest(rs).fit(X, lo["soh"].to_numpy()).predict(test[FEATURES].to_numpy())
    got = grid_base.query("case == 3 and method == 'baseline_interpolation' and test_soc == 10")["mape"].item()
    assert got == pytest.approx(mape(test["soh"].to_numpy(), pred)[0], rel=1e-9)


def test_generation_errors_cover_every_unseen_level(run: GridRun) -> None:
    err = generation_errors(run)
    case3 = err[err.case == 3]
    assert set(case3["method"]) == {"phase2_sample"}
    assert sorted(case3["test_soc"].unique()) == [10, 15, 20, 30, 35, 40, 45]
    assert set(err.loc[err.case == 7, "method"]) == {"phase2_sample", "phase2_latent_scaling", "phase2_authors_shift"}
    assert (err["mape"] >= 0).all() and (err["n"] == 52).all()
    assert len(generation_errors(run, methods=["phase2_sample"])) == 21 * (7 + 8)


# =========================================================================== the leak-free benchmark


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


def test_leakfree_is_repeatable_and_cached(small) -> None:
    res, cfg, cache = small
    files = sorted(cache.glob("leakfree_*_seed*.csv"))
    assert len(files) == 1 and cfg.fingerprint() in files[0].name
    again = run_leakfree(cfg, cache_dir=cache)  # read back
    pd.testing.assert_frame_equal(res, again, check_dtype=False)
    # recomputed from scratch, alone: a split's fits do not depend on the other splits in the stack
    fresh = run_leakfree(LeakFreeConfig(**{**cfg.__dict__, "cases": [7]}))
    pd.testing.assert_frame_equal(res[res["case"] == 7].reset_index(drop=True), fresh, check_dtype=False, atol=1e-12, rtol=0)


def test_leakfree_fingerprint_follows_the_settings_not_the_seeds(small) -> None:
    _, cfg, _ = small
    assert LeakFreeConfig(**{**cfg.__dict__, "seeds": [3], "progress": True}).fingerprint() == cfg.fingerprint()
    assert LeakFreeConfig(**{**cfg.__dict__, "n_folds": 2}).fingerprint() != cfg.fingerprint()
    assert LeakFreeConfig(**{**cfg.__dict__, "batteries": ["NMC 21 Ah"]}).fingerprint() == cfg.fingerprint()
    settings = cfg.settings()
    assert settings.train == cfg.train and settings.improved_train_config().epochs == cfg.train.epochs


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


# =========================================================================== the estimator and its benchmark


def test_estimator_and_its_benchmark_run_the_core(nmc21: pd.DataFrame) -> None:
    """SOHEstimator(random_state=r).fit(train) is the core's path for that split, bit for bit:
    estimator_split, run_generators, training_set, the forest on the split's "forest" stream."""
    battery, seed, fold = "NMC21", 0, 1
    measured = np.isin(soc_percent(nmc21), [5, 25, 50])
    held_out = grouped_folds(nmc21["cell"].to_numpy(), 3, derive_seed(battery, seed, "folds"))[fold]
    train, test = nmc21[~held_out & measured], nmc21[held_out]
    r = derive_seed(battery, fold, seed, "estimator")  # the benchmark's random_state for this fold
    settings = GeneratorSettings(train=TrainConfig(epochs=1))
    preds = {}
    for gen in ("interpolation", "cvae", "residual"):
        split = estimator_split(train, ALL_SOC, (r,))
        rows, models = run_generators([split], [[gen]], settings, progress=False)
        X, y = training_set(split, rows[0][gen])
        forest = make_forest(derive_seed(r, "forest")).fit(X, y)
        preds[gen] = forest.predict(test[FEATURES].to_numpy(float))
        est = SOHEstimator(generator=gen, epochs=1, random_state=r).fit(train)
        np.testing.assert_array_equal(est.train_X_, X)
        np.testing.assert_array_equal(est.train_y_, y)
        np.testing.assert_array_equal(est.predict(test[FEATURES]), preds[gen])
        if GENERATORS[gen].fit is not None:
            assert est.generator_.provenance["seed"] == derive_seed(r, "fit", GENERATORS[gen].fit)
            assert est.generator_.history == models[0][GENERATORS[gen].fit].history
    bench = run_estimator_benchmark(batteries=[battery], seeds=[seed], n_folds=3, generators=["interpolation"], epochs=1,
                                    frames={battery: nmc21}, progress=False)
    mine = bench[(bench["fold"] == fold)]
    socs, soh = soc_percent(test), test["soh"].to_numpy()
    for level in ALL_SOC:
        at = socs == level
        row = mine[(mine["generator"] == "interpolation") & (mine["test_soc"] == level)].iloc[0]
        assert row["mape"] == mape(soh[at], preds["interpolation"][at])[0]
        assert row["n_train"] == len(train) + 7 * train["battery_id"].nunique() and row["n_test"] == at.sum()
        const = mine[(mine["generator"] == "constant") & (mine["test_soc"] == level)].iloc[0]
        assert const["mape"] == mape(soh[at], constant_predictions(train["soh"], at.sum()))[0]


def test_per_battery_scores_add_up_to_the_level_scores(data_dir) -> None:
    """Scores per physical battery (``by=("cell",)``), weighted by their pulses, give the level's MAPE."""
    from battgen.data import load_pulsebat
    from battgen.evaluation.leakfree import LeakFreeConfig, run_estimator_benchmark, run_leakfree

    frames = {"LFP35": load_pulsebat("LFP35", data_dir=data_dir)}
    cfg = dict(batteries=["LFP35"], cases=[6], seeds=[0], n_folds=2, improved=False, progress=False,
               train=TrainConfig(epochs=1, threads=1))
    level = run_leakfree(LeakFreeConfig(**cfg), frames)
    cells = run_leakfree(LeakFreeConfig(**cfg, by=("cell",)), frames)
    assert "cell" in cells.columns and cells.groupby(["fold", "test_soc", "method"])["cell"].nunique().min() > 1
    keys = ["fold", "test_soc", "method"]
    pooled = cells.assign(w=cells["mape"] * cells["n_test"]).groupby(keys)[["w", "n_test"]].sum()
    pooled = (pooled["w"] / pooled["n_test"]).rename("pooled")
    both = level.set_index(keys)["mape"].to_frame().join(pooled)
    np.testing.assert_allclose(both["mape"], both["pooled"], rtol=1e-12)
    est = run_estimator_benchmark(batteries=["LFP35"], seeds=[0], n_folds=2, generators=["interpolation"], frames=frames,
                                  progress=False, by=("cell",))
    assert {"cell", "generator", "test_soc"} <= set(est.columns) and est["n_test"].min() >= 1


def test_group_masks_in_order_of_appearance() -> None:
    """One column or several: the groups in order of first appearance, their values as given."""
    from battgen.evaluation.core import group_masks

    frame = pd.DataFrame({"cell": ["b", "a", "b", "c", "a"], "n": [1, 2, 1, 3, 2]})
    one = group_masks(frame, ["cell"])
    assert [k for k, _ in one] == [("b",), ("a",), ("c",)]
    assert [m.tolist() for _, m in one] == [[True, False, True, False, False], [False, True, False, False, True],
                                            [False, False, False, True, False]]
    two = group_masks(frame, ["cell", "n"])
    assert [m.tolist() for _, m in two] == [m.tolist() for _, m in one] and two[0][0] == ("b", 1)
    (key, mask), = group_masks(frame, [])
    assert key == () and mask.all()
    missing = group_masks(pd.DataFrame({"cell": ["b", None, "b"]}), ["cell"])  # a missing value is a group too
    assert len(missing) == 2 and missing[1][1].tolist() == [False, True, False]
