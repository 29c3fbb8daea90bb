"""The battgen command line, end to end on the real data (tiny settings)."""

from __future__ import annotations

import gc
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from battgen.cli import RESULT_FILES, main, run


def test_fetch_verifies_every_file(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == 11 and "features_5s/LMO_10Ah_W_5000.xlsx" in out


def test_reproduce_prints_the_summary_and_writes_results(data_dir: Path, tmp_path: Path, capsys) -> None:
    rc = main(["reproduce", "--battery", "LFP35", "--cases", "0", "4", "--seeds", "0", "--epochs", "1",
               "--out", str(tmp_path), "--data-dir", str(data_dir), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Mean MAPE (%)" in out and "phase2_authors_shift" in out and "LFP35" in out
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2 * 4 + 6 * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RESULT_FILES)  # the files checked before the run
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["reproduce", "--battery", "LFP35", "--out", str(tmp_path), "--data-dir", str(data_dir)]) == 2
    assert "results.csv: exists; it is not replaced unless you pass --force" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_bad_battery_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["reproduce", "--battery", "NCA", "--out", str(tmp_path)]) == 2
    assert "unknown battery type 'NCA'" in capsys.readouterr().err


def test_the_program_exits_with_mains_code_and_freezes_only_then(tmp_path: Path, capsys, monkeypatch) -> None:
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"battgen": "battgen.cli:run"}
    frozen = gc.get_freeze_count()
    assert main(["reproduce", "--battery", "NCA", "--out", str(tmp_path)]) == 2
    assert gc.get_freeze_count() == frozen  # main, which tests call in their process, leaves the collector alone
    monkeypatch.setattr(sys, "argv", ["battgen", "reproduce", "--battery", "NCA", "--out", str(tmp_path)])
    try:
        with pytest.raises(SystemExit) as leaving:
            run()
        assert leaving.value.code == 2 and "unknown battery type 'NCA'" in capsys.readouterr().err
        assert gc.get_freeze_count() > frozen  # the heap frozen before the interpreter's shutdown
    finally:
        gc.unfreeze()


def test_extract_features_writes_the_tidy_schema(data_dir: Path, tmp_path: Path, capsys) -> None:
    from battgen.data import SCHEMA

    out = tmp_path / "features.csv"
    rc = main(["extract-features", str(data_dir / "workstep"), "--soc", "5", "25", "50", "--pulse-width", "5",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err.splitlines()  # each report once, one line each
    assert [line for line in err if "SOC 50 % kept, 5 s features include a shortened pulse" in line] == [
        next(line for line in err if line.startswith("battgen extract-features: note: LMO_C_10"))]
    df = pd.read_csv(out)
    assert list(df.columns[: len(SCHEMA)]) == SCHEMA
    assert len(df) == 2 * 3 and set(df["battery"]) == {"LMO10", "NMC21"}
