"""battgen.data: the registry, verified fetching, and the tidy loader on the real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from battgen import data
from battgen.data import BATTERIES, FEATURES, SCHEMA, DataIntegrityError, fetch, load_pulsebat

EXPECTED_ROWS = {"NMC2.1": 670, "LMO10": 950, "NMC21": 520, "LFP35": 560}


def test_registry_matches_sources_md(data_dir: Path) -> None:
    """Every file in SOURCES.md is registered with the same sha256 and upstream path."""
    text = (data_dir / "SOURCES.md").read_text()
    for key, entry in data.REGISTRY.items():
        assert entry.sha256 in text, key
        assert f"| {key} |" in text, key
        assert entry.url.startswith("https://raw.githubusercontent.com/terencetaothucb/")
        assert entry.commit in text
        assert " " not in entry.url


@pytest.mark.parametrize("battery", list(BATTERIES))
def test_real_5s_files_load_to_the_documented_rows(battery: str, data_dir: Path) -> None:
    df = load_pulsebat(battery, 5, data_dir=data_dir)
    assert list(df.columns) == SCHEMA
    assert len(df) == EXPECTED_ROWS[battery]
    assert sorted(np.unique(np.rint(df["soc"] * 100).astype(int))) == list(range(5, 55, 5))
    assert df.groupby("battery_id").size().eq(10).all()
    np.testing.assert_allclose(df["soh"], df["q_ah"] / df["qn_ah"], rtol=1e-6)
    assert df[FEATURES].to_numpy().min() > 1.5 and df[FEATURES].to_numpy().max() < 5


def test_all_5s_rows_total_2700(data_dir: Path) -> None:
    assert sum(len(load_pulsebat(b, 5, data_dir=data_dir)) for b in BATTERIES) == 2700


def test_nmc21_cells_group_ageing_checkpoints(data_dir: Path) -> None:
    df = load_pulsebat("NMC2.1", data_dir=data_dir)
    assert df["battery_id"].nunique() == 67
    assert df["cell"].nunique() == 12
    assert (df.loc[df["battery_id"] == "D3-100", "cell"] == "D3").all()


@pytest.mark.parametrize("battery", list(BATTERIES))
def test_3s_files_normalise_their_quirks(battery: str, data_dir: Path) -> None:
    """3 s files: 'W'/'Idx' columns, NMO/NCM typos, 'Sheet1', SOC up to 90 %: same schema, 5-50 %."""
    df3 = load_pulsebat(battery, 3, data_dir=data_dir)
    df5 = load_pulsebat(battery, 5, data_dir=data_dir)
    assert list(df3.columns) == SCHEMA
    assert len(df3) == len(df5)
    assert df3["soc"].max() == pytest.approx(0.5)
    assert (df3["pulse_width_s"] == 3).all()
    assert set(df3["battery_id"]) == set(df5["battery_id"])


def test_battery_names_are_forgiving() -> None:
    assert data.battery_type("LMO 10 Ah").key == "LMO10"
    assert data.battery_type("nmc2.1").key == "NMC2.1"
    assert data.battery_type("lfp").key == "LFP35"
    with pytest.raises(ValueError, match="unknown battery type 'NCA'"):
        data.battery_type("NCA")


# ------------------------------------------------------------------ broken copies


@pytest.fixture()
def copy_dir(tmp_path: Path, data_dir: Path) -> Path:
    key = BATTERIES["NMC21"].files[5]
    (tmp_path / key).parent.mkdir(parents=True)
    shutil.copyfile(data_dir / key, tmp_path / key)
    return tmp_path


def _edit_sheet(path: Path, edit) -> None:
    wb = openpyxl.load_workbook(path)
    edit(wb["SOC ALL"])
    wb.save(path)


def _column(ws, name: str) -> int:
    return next(c.column for c in ws[1] if c.value == name)


def test_changed_byte_fails_the_hash_check(copy_dir: Path) -> None:
    key = BATTERIES["NMC21"].files[5]
    path = copy_dir / key
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataIntegrityError) as err:
        fetch(key, copy_dir)
    msg = str(err.value)
    assert str(path) in msg and data.REGISTRY[key].sha256 in msg and "got " in msg


def test_missing_file_names_the_url_and_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path / "cache")
    key = BATTERIES["LFP35"].files[5]
    with pytest.raises(FileNotFoundError) as err:
        fetch(key, tmp_path / "empty", download=False)
    assert "BATTGEN_DATA_DIR" in str(err.value) and "battgen fetch" in str(err.value)

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(FileNotFoundError) as err:
        fetch(key, tmp_path / "empty")
    assert data.REGISTRY[key].url in str(err.value) and "BATTGEN_DATA_DIR" in str(err.value)


def _load_copy(copy_dir: Path) -> pd.DataFrame:
    return load_pulsebat("NMC21", path=copy_dir / BATTERIES["NMC21"].files[5])


def test_removed_column_names_file_and_column(copy_dir: Path) -> None:
    path = copy_dir / BATTERIES["NMC21"].files[5]
    _edit_sheet(path, lambda ws: ws.delete_cols(_column(ws, "U7")))
    with pytest.raises(ValueError, match=r"NMC_21Ah_W_5000\.xlsx: column 'U7' is missing"):
        _load_copy(copy_dir)


def test_nan_names_file_column_and_row(copy_dir: Path) -> None:
    path = copy_dir / BATTERIES["NMC21"].files[5]
    _edit_sheet(path, lambda ws: setattr(ws.cell(row=9, column=_column(ws, "U3")), "value", None))
    with pytest.raises(ValueError, match=r"NMC_21Ah_W_5000\.xlsx: column 'U3', row 9: value is missing \(NaN\)"):
        _load_copy(copy_dir)


def test_text_in_a_numeric_column(copy_dir: Path) -> None:
    path = copy_dir / BATTERIES["NMC21"].files[5]
    _edit_sheet(path, lambda ws: ws.cell(row=4, column=_column(ws, "SOH"), value="n/a"))
    with pytest.raises(ValueError, match=r"column 'SOH', row 4: 'n/a' is not a number"):
        _load_copy(copy_dir)


@pytest.mark.parametrize(
    "column, value, pattern",
    [
        ("U12", 3456.0, r"column 'U12', row 5: 3456.0 is outside \[1.5, 5.0\]; expected volts between 1.5 and 5 \(millivolts"),
        ("SOH", 1.7, r"column 'SOH', row 5: 1.7 is outside \(0.0, 1.5\]"),
        ("SOC", -5, r"column 'SOC', row 5: -5.0 is outside \(0.0, 100.0\]"),
    ],
)
def test_values_outside_their_physical_range(copy_dir: Path, column: str, value: float, pattern: str) -> None:
    path = copy_dir / BATTERIES["NMC21"].files[5]
    _edit_sheet(path, lambda ws: ws.cell(row=5, column=_column(ws, column), value=value))
    with pytest.raises(ValueError, match=pattern):
        _load_copy(copy_dir)


def test_parsed_tables_are_kept_in_the_cache_never_in_the_data_folder(data_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A workbook is parsed once: later processes read the stored table (the same frame, dtypes included);
    a damaged stored table is parsed again, and an unwritable cache only costs the parse."""
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path / "cache")
    data._load_cached.cache_clear()
    parsed = load_pulsebat("LFP35", 5, data_dir=data_dir)
    stored = list((tmp_path / "cache" / "tables").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".npz"  # no temporary file left behind
    assert not [p for p in data_dir.rglob("*") if p.suffix in {".npz", ".tmp"}]
    real_parse = data._parse_table

    def no_parse(*args):
        raise AssertionError("the workbook was parsed again")

    monkeypatch.setattr(data, "_parse_table", no_parse)
    data._load_cached.cache_clear()
    again = load_pulsebat("LFP35", 5, data_dir=data_dir)
    pd.testing.assert_frame_equal(again, parsed, check_exact=True)
    assert list(again.dtypes) == list(parsed.dtypes)

    stored[0].write_bytes(b"not a table")
    monkeypatch.setattr(data, "_parse_table", real_parse)
    data._load_cached.cache_clear()
    pd.testing.assert_frame_equal(load_pulsebat("LFP35", 5, data_dir=data_dir), parsed, check_exact=True)
    assert np.load(stored[0], allow_pickle=False)["soh"].shape == (len(parsed),)  # rewritten

    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setattr(data, "cache_dir", lambda: blocker)  # tables/ cannot be made under a file
    data._load_cached.cache_clear()
    pd.testing.assert_frame_equal(load_pulsebat("LFP35", 5, data_dir=data_dir), parsed, check_exact=True)
    data._load_cached.cache_clear()


def test_a_failed_download_is_one_line(tmp_path) -> None:
    """No data folder, an empty cache and no network: one line naming the file and its URL, exit code 2
    (pooch's own "Downloading data from ..." log line used to come first)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "BATTGEN_DATA_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), HTTPS_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", NO_PROXY="", no_proxy="")
    run = subprocess.run([sys.executable, "-m", "battgen.cli", "train", "--battery", "LMO10", "--soc", "5", "25",
                          "--out", str(tmp_path / "m.pt")], capture_output=True, text=True, env=env, timeout=120)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith("battgen train: error: could not download features_5s/LMO_10Ah_W_5000.xlsx from https://")
    assert not (tmp_path / "m.pt").exists()
