"""How far to trust an estimate (battgen.evaluation.trust): coverage with a battery-resampled
interval, SOH terciles, and the held-out benchmark on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from battgen.data import load_pulsebat
from battgen.evaluation.leakfree import run_estimator_benchmark
from battgen.evaluation.trust import TRUST_COLUMNS, coverage_summary, covered, recalibrated, run_trust_benchmark, soh_terciles


def _pulses(inside_per_cell: dict[str, int], n: int = 10, battery: str = "LMO10") -> pd.DataFrame:
    """``n`` pulses per cell, the first ``inside_per_cell[cell]`` of them inside their interval."""
    rows = []
    for cell, k in inside_per_cell.items():
        for i in range(n):
            soh = 0.9 if i < k else 0.5  # the interval is [0.8, 1.0]
            rows.append({"battery": battery, "cell": cell, "battery_id": cell, "soh": soh, "lower": 0.8, "upper": 1.0,
                         "flagged": False})
    return pd.DataFrame(rows)


def test_coverage_is_the_share_inside_with_an_interval_over_batteries():
    same = coverage_summary(_pulses({"a": 9, "b": 9, "c": 9, "d": 9}))
    row = same.iloc[0]
    assert row["coverage"] == pytest.approx(0.9) and row["n"] == 40 and row["n_batteries"] == 4
    assert row["width_pts"] == pytest.approx(20.0)
    # every battery covers 9 of its 10 pulses: resampling batteries cannot move the share
    assert row["coverage_low"] == pytest.approx(0.9) and row["coverage_high"] == pytest.approx(0.9)

    split = coverage_summary(_pulses({"a": 10, "b": 10, "c": 0, "d": 0})).iloc[0]
    assert split["coverage"] == pytest.approx(0.5)
    # batteries wholly in or out: the interval is wide, far wider than 40 independent pulses'
    assert split["coverage_low"] < 0.3 and split["coverage_high"] > 0.7
    assert list(same.columns[:4]) == ["battery", "coverage", "coverage_low", "coverage_high"]


def test_coverage_summary_by_two_keys_and_repeatable():
    pulses = pd.concat([_pulses({"a": 10, "b": 6}, battery="LMO10"), _pulses({"c": 3, "d": 8, "e": 9}, battery="LFP35")])
    pulses["tercile"] = np.where(pulses["cell"].isin(["a", "c"]), "low", "high")
    out = coverage_summary(pulses, by=("battery", "tercile"))
    assert len(out) == 4
    low_lfp = out[(out.battery == "LFP35") & (out.tercile == "low")].iloc[0]
    assert low_lfp["coverage"] == pytest.approx(0.3) and low_lfp["coverage_low"] == low_lfp["coverage_high"] == pytest.approx(0.3)
    assert (out["coverage_low"] <= out["coverage"]).all() and (out["coverage"] <= out["coverage_high"]).all()
    pd.testing.assert_frame_equal(out, coverage_summary(pulses, by=("battery", "tercile")))


def _held_out(errors: dict[int, list[tuple[float, float]]]) -> pd.DataFrame:
    """Held-out pulses of one type and seed: ``errors[fold]`` lists (estimate, true SOH - estimate)."""
    rows = [{"battery": "X", "seed": 0, "fold": fold, "cell": f"c{fold}_{i}", "battery_id": f"c{fold}_{i}",
             "soh": est + err, "estimate": est, "lower": np.nan, "upper": np.nan, "flagged": False}
            for fold, pairs in errors.items() for i, (est, err) in enumerate(pairs)]
    return pd.DataFrame(rows)


def test_recalibrated_intervals_come_from_the_other_folds():
    bad, good = [(0.8, 0.5)] * 20, [(0.8, 0.01 * (i + 1) / 20) for i in range(20)]  # |error| 0.5 in fold 0, <= 0.01 in 1
    out = recalibrated(_held_out({0: bad, 1: good}))
    width = (out["upper"] - out["lower"]).groupby(out["fold"]).max()
    assert width[0] == pytest.approx(2 * 0.01 * 19 / 20) and width[1] == pytest.approx(1.0)  # from the other fold
    inside = covered(out)
    assert not inside[(out["fold"] == 0).to_numpy()].any() and inside[(out["fold"] == 1).to_numpy()].all()
    with pytest.raises(ValueError, match="at least two folds"):
        recalibrated(_held_out({0: good}))
    with pytest.raises(ValueError, match="positive integer"):
        recalibrated(_held_out({0: bad, 1: good}), bins=0)


def test_mondrian_bins_give_each_estimate_range_its_own_width():
    # weak batteries: estimate 0.6, |error| 0.01..0.1; healthy ones: estimate 0.9, |error| 0.001..0.01
    fold = [(0.6, 0.01 * (k + 1)) for k in range(10)] + [(0.9, -0.001 * (k + 1)) for k in range(10)]
    pulses = _held_out({0: fold, 1: fold})
    pulses["tercile"] = np.where(pulses["estimate"] < 0.75, "low", "high")
    one = coverage_summary(recalibrated(pulses, 0.9, bins=1), by=("tercile",)).set_index("tercile")
    two = coverage_summary(recalibrated(pulses, 0.9, bins=2), by=("tercile",)).set_index("tercile")
    # one width: the 19th smallest of the 20 pooled errors (0.09) misses the weakest battery's 0.1
    assert one.loc["low", "coverage"] == pytest.approx(0.9) and one.loc["high", "coverage"] == 1.0
    assert one.loc["low", "width_pts"] == pytest.approx(18.0) == one.loc["high", "width_pts"]
    # two bins: the 10th smallest of each bin's 10 errors, so every pulse is covered; wide low, narrow high
    assert (two["coverage"] == 1.0).all()
    assert two.loc["low", "width_pts"] == pytest.approx(20.0) and two.loc["high", "width_pts"] == pytest.approx(2.0)
    assert recalibrated(pulses, bins=2).index.equals(pulses.index)


def test_soh_terciles_split_each_type_by_battery():
    pulses = pd.DataFrame({"battery": ["X"] * 12 + ["Y"] * 3,
                           "battery_id": [f"x{i // 2}" for i in range(12)] + ["y0", "y1", "y2"],
                           "soh": [0.7 + 0.01 * (i // 2) for i in range(12)] + [0.9, 0.8, 0.85]})
    t = soh_terciles(pulses)
    assert t[:12].tolist() == ["low"] * 4 + ["middle"] * 4 + ["high"] * 4  # both pulses of a battery alike
    assert t[12:].tolist() == ["high", "low", "middle"]


def test_trust_benchmark_holds_out_every_battery_once_with_the_benchmark_estimates(data_dir):
    frames = {"NMC21": load_pulsebat("NMC21", data_dir=data_dir)}
    pulses = run_trust_benchmark(batteries=("NMC21",), n_folds=3, frames=frames, progress=False)
    assert list(pulses.columns) == TRUST_COLUMNS
    df = frames["NMC21"]
    assert len(pulses) == len(df)  # every pulse held out exactly once per seed
    assert pulses.groupby("cell")["fold"].nunique().eq(1).all()  # a battery's pulses in one fold
    assert (pulses["lower"] <= pulses["estimate"]).all() and (pulses["estimate"] <= pulses["upper"]).all()
    # the same folds and random states as the leak-free estimator benchmark: the same estimates
    bench = run_estimator_benchmark(batteries=("NMC21",), n_folds=3, generators=("interpolation",), frames=frames,
                                    progress=False)
    bench = bench[bench.generator == "interpolation"].set_index(["fold", "test_soc"])["mape"].sort_index()
    ape = 100 * (pulses["estimate"] - pulses["soh"]).abs() / pulses["soh"]
    mine = ape.groupby([pulses["fold"], pulses["soc"].rename("test_soc")]).mean().sort_index()
    np.testing.assert_allclose(mine.to_numpy(), bench.to_numpy(), rtol=1e-12)
