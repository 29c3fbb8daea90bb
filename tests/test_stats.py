"""battgen.evaluation.stats on synthetic tables whose answers are known: intervals, unit means,
paired differences, skill, the best baseline and the verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from battgen.evaluation.leakfree import BASELINE_METHODS, GENERATOR_METHODS
from battgen.evaluation.stats import (
    VERDICTS,
    best_baseline,
    bootstrap_ci,
    paired_differences,
    skill_scores,
    summarize_leakfree,
    t_interval,
    unit_means,
    verdicts,
)

UNITS = [(seed, fold) for seed in range(3) for fold in range(3)]  # 9 (seed, fold) units
UNIT_EFFECT = 0.1 * np.arange(9)  # shared by every method of a unit (the split): mean 0.4
JITTER = np.array([1.0, -1.0, 0.5, -0.5, 0.2, -0.2, 0.0, 0.3, -0.3])  # mean exactly 0
LEVELS = {10: -0.5, 20: 0.5}  # two unseen levels per unit, effects of mean 0


def table(cells: dict[tuple[str, str, int], dict[str, tuple[float, float]]]) -> pd.DataFrame:
    """A tidy leak-free table. ``cells[(battery, kind, case)][method] = (mean, jitter scale)``:
    the MAPE of a method in unit u at a level is mean + UNIT_EFFECT[u] + level effect + scale * JITTER[u]."""
    rows = []
    for (battery, kind, case), methods in cells.items():
        for u, (seed, fold) in enumerate(UNITS):
            for level, effect in LEVELS.items():
                for method, (mean, scale) in methods.items():
                    rows.append({"battery": battery, "kind": kind, "case": case, "seed": seed, "fold": fold, "test_soc": level,
                                 "method": method, "mape": mean + UNIT_EFFECT[u] + effect + scale * JITTER[u]})
    return pd.DataFrame(rows)


BASE = {"baseline_constant": (10.0, 0.0), "phase1": (8.0, 0.0), "baseline_soc_input": (9.0, 0.0)}
CELLS = {
    # generation clearly better: the paper's CVAE at 2 % against interpolation at 5 %
    ("A", "interpolation", 1): {**BASE, "baseline_interpolation": (5.0, 0.0), "phase2_paper": (2.0, 0.1),
                                "phase2_authors_shift": (6.0, 0.0), "phase2_cvae_plus": (3.0, 0.0),
                                "phase2_residual": (4.0, 0.0)},
    # generation clearly worse: the best generator at 6 %, interpolation at 3 %
    ("B", "interpolation", 1): {**BASE, "baseline_interpolation": (3.0, 0.0), "phase2_paper": (7.0, 0.0),
                                "phase2_cvae_plus": (6.0, 0.1), "phase2_residual": (8.0, 0.0)},
    # indistinguishable: the residual generator equals interpolation on average, +-1 point per unit; no phase2_paper
    ("A", "extrapolation", 5): {**BASE, "baseline_interpolation": (5.0, 0.0), "phase2_residual": (5.0, 1.0),
                                "phase2_cvae_plus": (7.0, 0.0)},
}


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return table(CELLS)


# --------------------------------------------------------------------------- intervals


def test_intervals() -> None:
    v = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    m, lo, hi = t_interval(v)
    ref = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert m == 3.0 and (lo, hi) == pytest.approx(ref)
    m, lo, hi = bootstrap_ci(v, seed=0)
    assert lo < m < hi and lo >= 1.0 and hi <= 5.0
    assert bootstrap_ci(v, seed=0) == (m, lo, hi)  # seeded
    assert t_interval([2.0]) == (2.0, 2.0, 2.0) == bootstrap_ci([2.0])


def test_intervals_ignore_missing_values() -> None:
    v = [1.0, np.nan, 2.0, 4.0, np.inf, 3.0, 5.0]
    assert t_interval(v) == t_interval([1.0, 2.0, 4.0, 3.0, 5.0])
    assert all(np.isnan(x) for x in t_interval([np.nan])) and all(np.isnan(x) for x in bootstrap_ci([]))
    m, lo, hi = t_interval([1.0, 2.0, 3.0], confidence=0.5)
    assert (lo, hi) == pytest.approx(stats.t.interval(0.5, 2, loc=2.0, scale=stats.sem([1.0, 2.0, 3.0])))


# --------------------------------------------------------------------------- unit means and summaries


def test_unit_means_average_levels_and_cases(results: pd.DataFrame) -> None:
    units = unit_means(results, ("battery", "method"))
    assert set(units.columns) == {"battery", "method", "seed", "fold", "mape"}
    a = units[(units["battery"] == "A") & (units["method"] == "baseline_interpolation")]
    assert len(a) == 9  # the two cases of battery A pooled per unit
    np.testing.assert_allclose(a["mape"].to_numpy(), 5.0 + UNIT_EFFECT)  # level effects cancel


def test_summaries_with_both_intervals(results: pd.DataFrame) -> None:
    t = summarize_leakfree(results, by=("battery", "kind", "method"))
    assert (t["n_units"] == 9).all() and ((t["ci_low"] <= t["mape"]) & (t["mape"] <= t["ci_high"])).all()
    row = t[(t["battery"] == "B") & (t["method"] == "phase1")].iloc[0]
    assert row["mape"] == pytest.approx(8.4)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(t_interval(8.0 + UNIT_EFFECT)[1:])
    boot = summarize_leakfree(results, by=("battery", "kind", "method"), interval="bootstrap")
    np.testing.assert_allclose(boot["mape"], t["mape"])
    with pytest.raises(ValueError, match="'t' or 'bootstrap'"):
        summarize_leakfree(results, interval="normal")


# --------------------------------------------------------------------------- paired differences, skill, best baseline


def test_paired_differences_are_paired_per_unit(results: pd.DataFrame) -> None:
    a = results[results["battery"] == "A"]
    d = paired_differences(a[a["kind"] == "interpolation"], "phase2_paper", "baseline_interpolation").iloc[0]
    assert (d["method"], d["reference"], d["battery"]) == ("phase2_paper", "baseline_interpolation", "A")
    # the unit effect is shared, so it cancels: the differences are -3 + 0.1 * JITTER
    assert d["diff"] == pytest.approx(-3.0)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx(t_interval(-3.0 + 0.1 * JITTER)[1:])
    assert d["frac_better"] == 1.0 and d["n_units"] == 9
    worse = paired_differences(results, "baseline_constant", "phase1", by=("battery", "kind"))
    assert np.allclose(worse["diff"], 2.0) and (worse["frac_better"] == 0).all() and len(worse) == 3
    tie = paired_differences(results[results["kind"] == "extrapolation"], "phase2_residual", "baseline_interpolation").iloc[0]
    assert tie["diff"] == pytest.approx(0.0, abs=1e-12) and tie["frac_better"] == pytest.approx(4 / 9)  # JITTER < 0 in 4 units
    with pytest.raises(ValueError, match="no rows where both"):
        paired_differences(results[results["battery"] == "B"], "phase2_authors_shift", "phase1")


def test_without_folds_a_seed_is_the_unit(results: pd.DataFrame) -> None:
    # the paper's protocol has no folds: keep fold 0 and drop the column; each seed is one unit
    paper = results[results["fold"] == 0].drop(columns="fold")
    assert set(unit_means(paper, ("battery", "method")).columns) == {"battery", "method", "seed", "mape"}
    d = paired_differences(paper[paper["battery"] == "A"], "phase2_paper", "baseline_interpolation").iloc[0]
    seeds = [u for u, (seed, fold) in enumerate(UNITS) if fold == 0]  # units 0, 3, 6
    assert d["n_units"] == 3 and d["diff"] == pytest.approx(-3.0 + 0.1 * JITTER[seeds].mean())
    assert (d["ci_low"], d["ci_high"]) == pytest.approx(t_interval(-3.0 + 0.1 * JITTER[seeds])[1:])
    skill = skill_scores(paper[paper["battery"] == "B"]).set_index("method")
    assert skill.loc["baseline_constant", "skill"] == 0 and skill.loc["phase1", "n_units"] == 3


def test_skill_against_the_constant(results: pd.DataFrame) -> None:
    b = results[(results["battery"] == "B") & (results["method"].isin(["baseline_constant", "baseline_interpolation"]))]
    skill = skill_scores(b).set_index("method")
    assert skill.loc["baseline_constant", "skill"] == 0
    expected = 1 - (3.0 + UNIT_EFFECT) / (10.0 + UNIT_EFFECT)  # per unit, then the mean
    assert skill.loc["baseline_interpolation", "skill"] == pytest.approx(expected.mean())
    assert skill.loc["baseline_interpolation", "ci_low"] == pytest.approx(t_interval(expected)[1])
    vs_phase1 = skill_scores(b.assign(method=b["method"].replace({"baseline_constant": "phase1"})), reference="phase1")
    assert vs_phase1.set_index("method").loc["phase1", "skill"] == 0


def test_best_baseline_ignores_generators(results: pd.DataFrame) -> None:
    summary = summarize_leakfree(results, by=("battery", "method"))
    best = best_baseline(summary).set_index("battery")
    assert best.loc["A", "method"] == best.loc["B", "method"] == "baseline_interpolation"  # phase2_paper is lower on A
    assert best.loc["B", "mape"] == pytest.approx(3.4)
    only = best_baseline(summary, baselines=("phase1", "baseline_constant")).set_index("battery")
    assert (only["method"] == "phase1").all()


# --------------------------------------------------------------------------- verdicts (battery level, cross-fitted)

CELL_EFFECT = np.linspace(-1.0, 1.0, 12)  # 12 physical batteries per type, an effect shared by every method
CELL_NOISE = np.array([0.8, -0.8, 0.4, -0.4, 0.6, -0.6, 0.2, -0.2, 0.1, -0.1, 0.3, -0.3])  # mean 0


def cell_table(cells: dict[tuple[str, str, int], dict[str, tuple[float, float]]]) -> pd.DataFrame:
    """Battery-level rows: ``cells[(battery, kind, case)][method] = (mean, noise scale)``; battery i is
    tested in fold i % 3 of every seed, at two levels, with MAPE mean + CELL_EFFECT[i] + scale * CELL_NOISE[i]."""
    rows = []
    for (battery, kind, case), methods in cells.items():
        for seed in range(2):
            for i in range(12):
                for level in (10, 20):
                    for method, (mean, scale) in methods.items():
                        rows.append({"battery": battery, "kind": kind, "case": case, "seed": seed, "fold": i % 3,
                                     "cell": f"{battery}{i}", "test_soc": level, "method": method, "n_test": 1,
                                     "mape": mean + CELL_EFFECT[i] + scale * CELL_NOISE[i]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def cell_results() -> pd.DataFrame:
    return cell_table(CELLS)


def test_verdicts_on_known_cells(cell_results: pd.DataFrame) -> None:
    v = verdicts(cell_results)
    assert list(v.columns) == ["battery", "kind", "baseline", "baseline_mape", "generator", "generator_mape", "diff",
                               "diff_low", "diff_high", "n_batteries", "verdict"]
    v = v.set_index(["battery", "kind"])
    assert len(v) == 3 and set(v["verdict"]) <= set(VERDICTS) and (v["n_batteries"] == 12).all()

    better = v.loc[("A", "interpolation")]
    assert (better["baseline"], better["generator"], better["verdict"]) == (
        "baseline_interpolation", "phase2_paper", "generation helps")
    assert better["baseline_mape"] == pytest.approx(5.0) and better["generator_mape"] == pytest.approx(2.0)
    assert better["diff"] == pytest.approx(-3.0) and better["diff_high"] < 0

    worse = v.loc[("B", "interpolation")]
    assert (worse["baseline"], worse["generator"], worse["verdict"]) == (
        "baseline_interpolation", "phase2_cvae_plus", "baseline better")
    assert worse["diff"] == pytest.approx(3.0) and worse["diff_low"] > 0

    tie = v.loc[("A", "extrapolation")]
    assert (tie["baseline"], tie["generator"], tie["verdict"]) == (
        "baseline_interpolation", "phase2_residual", "no clear difference")
    assert tie["diff_low"] < 0 < tie["diff_high"] and tie["diff"] == pytest.approx(0.0, abs=1e-12)


def test_verdicts_honour_the_families_and_the_grouping(cell_results: pd.DataFrame) -> None:
    assert VERDICTS == ("generation helps", "baseline better", "no clear difference")
    assert set(BASELINE_METHODS) == {"baseline_constant", "phase1", "baseline_interpolation", "baseline_soc_input"}
    assert "phase2_paper" in GENERATOR_METHODS
    # without interpolation among the baselines, phase1 (8 %) is the one to beat: every cell's generator wins
    v = verdicts(cell_results, baselines=("baseline_constant", "phase1")).set_index(["battery", "kind"])
    assert (v["baseline"] == "phase1").all() and (v["verdict"] == "generation helps").all()
    # only the residual generator: 4 % against 5 % on battery A's interpolation cell
    r = verdicts(cell_results, generators=("phase2_residual",)).set_index(["battery", "kind"])
    assert r.loc[("A", "interpolation"), "diff"] == pytest.approx(-1.0)
    assert r.loc[("A", "interpolation"), "verdict"] == "generation helps"
    assert r.loc[("B", "interpolation"), "verdict"] == "baseline better"
    pooled = verdicts(cell_results, by=("battery",)).set_index("battery")
    assert list(pooled.index) == ["A", "B"] and pooled.loc["B", "verdict"] == "baseline better"


def test_crossfit_choice_never_uses_the_fold_it_scores() -> None:
    from battgen.evaluation.stats import chosen_rows, crossfit_choice

    # method "lucky" is best only on fold 0's own rows; "steady" is best elsewhere
    rows = []
    for fold in range(3):
        for method, m in (("lucky", 1.0 if fold == 0 else 9.0), ("steady", 4.0)):
            rows.append({"battery": "A", "seed": 0, "fold": fold, "cell": f"c{fold}", "test_soc": 10, "method": method,
                         "mape": m, "n_test": 1})
    res = pd.DataFrame(rows)
    choice = crossfit_choice(res, ["lucky", "steady"]).set_index("fold")["chosen"]
    assert choice[0] == "steady"  # fold 0 cannot choose on its own lucky score
    assert (choice == "steady").all()
    picked = chosen_rows(res, crossfit_choice(res, ["lucky", "steady"]), "best")
    assert set(picked["method"]) == {"best"} and picked["mape"].tolist() == [4.0, 4.0, 4.0]


def test_battery_summary_and_differences_resample_batteries(cell_results: pd.DataFrame) -> None:
    from battgen.evaluation.stats import battery_differences, battery_summary

    a = cell_results[(cell_results["battery"] == "A") & (cell_results["kind"] == "interpolation")]
    s = battery_summary(a, by=("method",)).set_index("method")
    assert s.loc["phase1", "mape"] == pytest.approx(8.0) and s.loc["phase1", "n_batteries"] == 12
    assert s.loc["phase1", "ci_low"] < 8.0 < s.loc["phase1", "ci_high"]  # the battery effect is resampled
    d = battery_differences(a, "phase1", "baseline_constant").iloc[0]
    assert d["diff"] == pytest.approx(-2.0) and d["ci_low"] == pytest.approx(-2.0) and d["frac_better"] == 1.0


# --------------------------------------------------------------------------- cluster bootstrap


def test_cluster_bootstrap_is_wider_than_a_row_bootstrap_when_batteries_share_an_effect() -> None:
    from battgen.evaluation.stats import cluster_bootstrap

    rng = np.random.default_rng(0)
    battery_effect = rng.normal(0, 2.0, size=12)  # 12 batteries, a strong shared effect
    clusters = np.repeat(np.arange(12), 10)  # 10 pulses each
    values = 5.0 + battery_effect[clusters] + rng.normal(0, 0.3, size=clusters.size)
    m, lo, hi = cluster_bootstrap(values, clusters, seed=1)
    m_row, lo_row, hi_row = bootstrap_ci(values, seed=1)
    assert m == pytest.approx(values.mean()) == pytest.approx(m_row)
    assert (hi - lo) > 2.5 * (hi_row - lo_row)  # ~sqrt(10): ten alike rows count as one battery


def test_cluster_bootstrap_matches_a_row_bootstrap_when_every_row_is_its_own_cluster() -> None:
    from battgen.evaluation.stats import cluster_bootstrap

    values = np.random.default_rng(3).normal(size=40)
    a = cluster_bootstrap(values, np.arange(40), seed=5)
    b = bootstrap_ci(values, seed=5, n_boot=5000)
    assert a[0] == pytest.approx(b[0])
    assert abs((a[2] - a[1]) - (b[2] - b[1])) < 0.15 * (b[2] - b[1])


def test_cluster_bootstrap_edge_cases() -> None:
    from battgen.evaluation.stats import cluster_bootstrap

    assert cluster_bootstrap([1.0, 3.0], ["a", "a"]) == (2.0, 2.0, 2.0)  # one battery: no spread to resample
    assert np.isnan(cluster_bootstrap([np.nan], ["a"])[0])
    with pytest.raises(ValueError, match="shape"):
        cluster_bootstrap([1.0, 2.0], ["a"])
