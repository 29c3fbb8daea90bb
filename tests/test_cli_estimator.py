"""`battgen train` and `battgen estimate`, in process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from battgen.cli import main
from battgen.data import FEATURES, load_pulsebat
from battgen.estimator import SOHEstimator


@pytest.fixture(scope="module")
def model(data_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model.pt"
    rc = main(["train", "--battery", "NMC21", "--soc", "5", "25", "50", "--epochs", "2", "--seed", "1",
               "--out", str(out), "--data-dir", str(data_dir), "--no-progress"])
    assert rc == 0 and out.is_file()
    return out


def test_train_writes_a_loadable_model(model: Path, capsys) -> None:
    est = SOHEstimator.load(model)
    assert est.measured_soc_ == [5, 25, 50] and est.random_state == 1 and est.generator == SOHEstimator().generator
    assert est.design_ == {"battery": "NMC21", "pulse_width_s": 5.0}


def test_estimate_schema_file_passes_ids_through(model: Path, data_dir: Path, tmp_path: Path) -> None:
    df = load_pulsebat("NMC21", data_dir=data_dir)
    df = df[df["soc"] == 0.35]
    df.to_csv(tmp_path / "pulses.csv", index=False)
    assert main(["estimate", "--model", str(model), str(tmp_path / "pulses.csv"), "--out", str(tmp_path / "soh.csv")]) == 0
    out = pd.read_csv(tmp_path / "soh.csv", dtype={"battery_id": str, "cell": str})
    assert list(out.columns) == ["battery_id", "cell", "soh_estimate", "novelty", "novel"]
    assert out["battery_id"].tolist() == df["battery_id"].tolist()
    np.testing.assert_allclose(out["soh_estimate"], SOHEstimator.load(model).predict(df[FEATURES]), rtol=0, atol=1e-15)


def test_estimate_bare_u_columns_with_a_named_id(model: Path, data_dir: Path, tmp_path: Path) -> None:
    df = load_pulsebat("NMC21", data_dir=data_dir).head(5)
    bare = df[FEATURES].assign(serial=[f"S{i}" for i in range(5)])
    bare.to_csv(tmp_path / "bare.csv", index=False)
    assert main(["estimate", "--model", str(model), str(tmp_path / "bare.csv"), "--id-column", "serial",
                 "--out", str(tmp_path / "soh.csv")]) == 0
    out = pd.read_csv(tmp_path / "soh.csv")
    assert out["serial"].tolist() == [f"S{i}" for i in range(5)] and out["soh_estimate"].between(0.5, 1.1).all()


@pytest.mark.parametrize("breakage, message", [
    ("missing", "missing column(s) U4"),
    ("millivolts", "'U7', row 4"),
    ("nan", "'U1', row 3"),
])
def test_estimate_refuses_bad_input_naming_the_row(model: Path, data_dir: Path, tmp_path: Path, capsys,
                                                   breakage: str, message: str) -> None:
    df = load_pulsebat("NMC21", data_dir=data_dir).head(5)[FEATURES].reset_index(drop=True)
    if breakage == "missing":
        df = df.drop(columns=["U4"])
    elif breakage == "millivolts":
        df.loc[2, "U7"] *= 1000
    else:
        df.loc[1, "U1"] = np.nan
    df.to_csv(tmp_path / "bad.csv", index=False)
    rc = main(["estimate", "--model", str(model), str(tmp_path / "bad.csv"), "--out", str(tmp_path / "soh.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "bad.csv" in err
    assert not (tmp_path / "soh.csv").exists()


def test_estimate_with_a_missing_model_or_pulses_file(data_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["estimate", "--model", str(tmp_path / "nope.pt"), "x.csv", "--out", str(tmp_path / "o.csv")]) == 2
    assert capsys.readouterr().err == "battgen estimate: error: x.csv: no such file\n"  # read before the model
    load_pulsebat("NMC21", data_dir=data_dir).head(2).to_csv(tmp_path / "x.csv", index=False)
    assert main(["estimate", "--model", str(tmp_path / "nope.pt"), str(tmp_path / "x.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "nope.pt: no such model file" in capsys.readouterr().err


def test_estimate_writes_intervals_and_novelty(tmp_path, data_dir) -> None:
    """--interval adds soh_lower / soh_upper around soh_estimate; every row gets a novelty score and flag."""
    import subprocess
    import sys

    import pandas as pd

    from battgen.data import load_pulsebat

    env = {**__import__("os").environ, "BATTGEN_DATA_DIR": str(data_dir), "BATTGEN_PROGRESS": "0"}
    cli = [sys.executable, "-m", "battgen.cli"]
    subprocess.run(cli + ["train", "--battery", "LFP35", "--soc", "5", "25", "50", "--out", str(tmp_path / "m.pt")],
                   check=True, env=env, capture_output=True)
    load_pulsebat("LFP35", data_dir=data_dir).head(30).to_csv(tmp_path / "lfp.csv", index=False)
    load_pulsebat("NMC21", data_dir=data_dir).head(30).drop(columns=["battery"]).to_csv(tmp_path / "nmc.csv", index=False)
    done = subprocess.run(cli + ["estimate", "--model", str(tmp_path / "m.pt"), str(tmp_path / "lfp.csv"), "--out",
                                 str(tmp_path / "a.csv"), "--interval", "0.9"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "a.csv")
    assert (out["soh_lower"] < out["soh_estimate"]).all() and (out["soh_estimate"] < out["soh_upper"]).all()
    assert {"novelty", "novel"} <= set(out.columns)
    other = subprocess.run(cli + ["estimate", "--model", str(tmp_path / "m.pt"), str(tmp_path / "nmc.csv"), "--out",
                                  str(tmp_path / "b.csv")], env=env, capture_output=True, text=True)
    assert other.returncode == 0 and "flagged in column novel" in other.stderr  # NMC pulses on an LFP model
    assert pd.read_csv(tmp_path / "b.csv")["novel"].mean() > 0.9
    bad = subprocess.run(cli + ["estimate", "--model", str(tmp_path / "m.pt"), str(tmp_path / "lfp.csv"), "--out",
                                str(tmp_path / "c.csv"), "--interval", "1.5"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "argument --interval" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "c.csv").exists()


# --------------------------------------------------------------------------- bring your own data (--data)
def _own_csv(data_dir: Path, path: Path, levels=None, battery: str | None = None) -> Path:
    """A recycler's file in the battgen schema: U1..U21 (V), soc, soh (fractions), battery_id; no design column."""
    df = load_pulsebat("NMC21", data_dir=data_dir)
    if levels is not None:
        df = df[np.isin(np.rint(df["soc"] * 100), levels)]
    cols = [*FEATURES, "soc", "soh", "battery_id"]
    out = df[cols].assign(battery=battery) if battery else df[cols]
    out.to_csv(path, index=False)
    return path


def test_data_alone_trains_on_every_level_it_holds_as_a_custom_design(data_dir: Path, tmp_path: Path, capsys) -> None:
    own = _own_csv(data_dir, tmp_path / "mine.csv", levels=[10, 30, 50])
    assert main(["train", "--data", str(own), "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "at 10, 30, 50 % SOC" in report and "design custom" in report
    est = SOHEstimator.load(tmp_path / "m.pt")
    assert est.measured_soc_ == [10, 30, 50] and est.design_["battery"] == "custom"
    assert est.info_["trained_on"] == str(own)


def test_data_with_a_design_name_records_it_and_estimate_holds_rows_to_it(data_dir: Path, tmp_path: Path, capsys) -> None:
    own = _own_csv(data_dir, tmp_path / "mine.csv", levels=[5, 50])
    assert main(["train", "--data", str(own), "--design", "ACME-21", "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 0
    assert "design ACME-21" in capsys.readouterr().out
    assert SOHEstimator.load(tmp_path / "m.pt").design_["battery"] == "ACME-21"
    pulses = load_pulsebat("NMC21", data_dir=data_dir).head(3)  # declares battery NMC21
    pulses.to_csv(tmp_path / "p.csv", index=False)
    rc = main(["estimate", "--model", str(tmp_path / "m.pt"), str(tmp_path / "p.csv"), "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "row 2: column 'battery' declares NMC21, the model was trained on ACME-21" in err
    assert not (tmp_path / "o.csv").exists()


def test_the_battery_column_names_the_design_and_contradictions_are_refused(data_dir: Path, tmp_path: Path, capsys) -> None:
    own = _own_csv(data_dir, tmp_path / "mine.csv", levels=[5, 50], battery="LMO10")
    assert main(["train", "--data", str(own), "--out", str(tmp_path / "m.pt"), "--no-progress"]) == 0
    assert SOHEstimator.load(tmp_path / "m.pt").design_["battery"] == "LMO10"
    capsys.readouterr()
    rc = main(["train", "--data", str(own), "--design", "ACME", "--out", str(tmp_path / "n.pt"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--design ACME: " in err and "declares battery LMO10 in its 'battery' column" in err
    assert not (tmp_path / "n.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--regressor", "invariant_forest", "--generator", "cvae"],
     "--regressor invariant_forest interpolates each battery's pulses in SOC itself; it takes --generator interpolation"),
    (["--soc", "50"], "--soc 50: one measured SOC level; generator 'interpolation' needs at least two"),
])
def test_train_data_option_errors_are_one_line(data_dir: Path, tmp_path: Path, capsys, args, message) -> None:
    own = _own_csv(data_dir, tmp_path / "mine.csv", levels=[5, 50])
    rc = main(["train", "--data", str(own), *args, "--out", str(tmp_path / "m.pt"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "m.pt").exists()


def test_levels_outside_pulsebats_are_named(data_dir: Path, tmp_path: Path, capsys) -> None:
    own = _own_csv(data_dir, tmp_path / "mine.csv", levels=[5, 50])
    df = pd.read_csv(own)
    df.loc[df["soc"] > 0.3, "soc"] = 0.33
    df.to_csv(own, index=False)
    rc = main(["train", "--data", str(own), "--out", str(tmp_path / "m.pt"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "column 'soc', row " in err and "level(s) 33 %" in err and not (tmp_path / "m.pt").exists()


def test_train_with_an_invariant_regressor_reloads_identically(data_dir: Path, tmp_path: Path) -> None:
    own = _own_csv(data_dir, tmp_path / "mine.csv", levels=[5, 25, 50])
    assert main(["train", "--data", str(own), "--regressor", "invariant_ensemble", "--out", str(tmp_path / "m.pt"),
                 "--no-progress"]) == 0
    est = SOHEstimator.load(tmp_path / "m.pt")
    assert est.regressor == "invariant_ensemble" and est.measured_ is not None
    pulses = load_pulsebat("NMC21", data_dir=data_dir)
    pulses = pulses[pulses["soc"] == 0.35][FEATURES]
    assert np.isfinite(est.predict(pulses)).all()


def test_the_command_lines_regressors_are_the_estimators() -> None:
    from battgen.cli import _REGRESSORS
    from battgen.estimator import REGRESSORS

    assert _REGRESSORS == REGRESSORS
