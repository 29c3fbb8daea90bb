"""battgen.workstep: the one reader of the tester's workstep layer, used by features and economics.

Broken sheets are written to tmp_path from the LMO 10 Ah file; every error must name the file,
the column (Chinese header and English name) and the spreadsheet row.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from battgen import economics as ec
from battgen.data import fetch
from battgen.features import ExtractionWarning, extract
from battgen.protocol import CALIBRATION_STEPS, LEVEL_STEPS
from battgen.workstep import COLUMNS, COMPLETED, REQUIRED, parse_name, read_workstep

LMO = "workstep/LMO_C_10_B_2_SOC_5-55_Part_1-1_ID_PIP15827A00221240.xlsx"
SHORT = 1 + CALIBRATION_STEPS + 2 * LEVEL_STEPS  # header, calibration, SOC loops 1-2
ENERGY = ("q_charge_ah", "e_charge_wh", "e_discharge_wh", "start_time", "end_time")


@pytest.fixture(scope="module")
def lmo_path(data_dir: Path) -> Path:
    return fetch(LMO, data_dir, download=False)


@pytest.fixture(scope="module")
def lmo_steps(lmo_path) -> pd.DataFrame:
    return read_workstep(lmo_path, extra=ENERGY)


@pytest.fixture(scope="module")
def lmo_rows(lmo_path) -> list[list]:
    wb = openpyxl.load_workbook(lmo_path, read_only=True)
    rows = [list(r) for _, r in zip(range(SHORT), wb.worksheets[0].iter_rows(values_only=True))]
    wb.close()
    return rows


def write_sheet(path: Path, rows: list[list]) -> Path:
    """A one-sheet workbook ``Sheet1`` holding ``rows`` (header first), as an extracted workstep file."""
    pd.DataFrame(rows[1:], columns=rows[0]).to_excel(path, sheet_name="Sheet1", index=False)
    return path


def test_english_columns_types_and_rows(lmo_path, lmo_steps):
    raw = pd.read_excel(lmo_path)
    df = lmo_steps
    assert len(df) == len(raw) and list(df["sheet_row"]) == list(range(2, len(raw) + 2))
    assert set(REQUIRED) <= set(df.columns) and set(df.columns) >= {"sheet_row", "kind", "duration_s"}
    assert set(COLUMNS.values()) - set(df.columns) == set()  # the PulseBat export has every known column
    for col in ("step_no", "program_step", "loop"):
        assert df[col].dtype == np.int64, col
    np.testing.assert_array_equal(df["u_end_v"], raw["结束电压(V)"])
    np.testing.assert_array_equal(df["e_discharge_wh"], raw["放电能量(Wh)"])  # the tester's sign: <= 0
    assert (df["e_discharge_wh"] <= 0).all() and (df["q_discharge_ah"] <= 0).all()
    assert (df["end_time"] == pd.to_datetime(raw["结束时间"])).all()
    np.testing.assert_allclose(df["duration_s"], pd.to_timedelta(raw["持续时间(h:min:s:ms)"]).dt.total_seconds(),
                               rtol=0, atol=1e-9)
    assert df["kind"].iloc[:CALIBRATION_STEPS].tolist() == ["rest", "cccv_charge", "rest", "discharge", "rest"]
    assert set(df["kind"]) == {"rest", "charge", "cccv_charge", "discharge"}
    assert set(df["result"]) == {COMPLETED, "手动跳转"}


def test_features_and_economics_read_the_same_calibration(lmo_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtractionWarning)
        features = extract(lmo_path, socs=(5,))
    assert ec.calibrated_capacity(lmo_path).to("Ah").magnitude == features["q_ah"].item() == 6.0513


def test_name_gives_loops_and_soc(lmo_path):
    name = parse_name(lmo_path)
    assert (name.battery, name.soc_lo, name.soc_hi) == ("LMO10", 5, 55)
    assert [name.soc_loop(s) for s in (5, 10, 55)] == [1, 2, 11]
    assert [name.loop_soc(k) for k in (1, 2, 11)] == [5, 10, 55]


def test_missing_energy_column_names_file_and_column(tmp_path, lmo_rows):
    i = lmo_rows[0].index("充电能量(Wh)")
    path = write_sheet(tmp_path / Path(LMO).name, [r[:i] + r[i + 1:] for r in lmo_rows])
    with pytest.raises(ValueError, match=rf"^{path.name}: sheet 'Sheet1': column '充电能量\(Wh\)' \(e_charge_wh\) is missing"):
        ec.measure_level_cost(path)
    assert len(read_workstep(path)) == SHORT - 1  # the features need no energy: that reading still works


@pytest.mark.parametrize("header, value, expected", [
    ("结束时间", "yesterday", r"column '结束时间' \(end_time\), row 40: 'yesterday' is not a date and time"),
    ("持续时间(h:min:s:ms)", "5 s", r"column '持续时间\(h:min:s:ms\)' \(duration\), row 40: '5 s' is not a duration"),
    ("放电能量(Wh)", "n/a", r"column '放电能量\(Wh\)' \(e_discharge_wh\), row 40: 'n/a' is not a number"),
])
def test_unreadable_cell_names_file_column_and_row(tmp_path, lmo_rows, header, value, expected):
    rows = [list(r) for r in lmo_rows]
    rows[39][rows[0].index(header)] = value  # spreadsheet row 40
    path = write_sheet(tmp_path / Path(LMO).name, rows)
    with pytest.raises(ValueError, match=rf"^{path.name}: {expected}"):
        ec.measure_level_cost(path)


def test_unrequired_unreadable_cells_become_missing(tmp_path, lmo_rows):
    rows = [list(r) for r in lmo_rows]
    rows[39][rows[0].index("结束时间")] = "yesterday"
    rows[39][rows[0].index("放电能量(Wh)")] = "n/a"
    df = read_workstep(write_sheet(tmp_path / Path(LMO).name, rows))
    assert pd.isna(df.loc[38, "end_time"]) and np.isnan(df.loc[38, "e_discharge_wh"])


def test_level_with_a_missing_step_is_an_economics_error(tmp_path, lmo_rows):
    path = write_sheet(tmp_path / Path(LMO).name, lmo_rows[:100] + lmo_rows[101:])
    with pytest.raises(ValueError, match=rf"^{path.name}: SOC level 1 \(rows 7-207\) has 201 steps, expected 202"):
        ec.measure_level_cost(path)


def test_repeated_step_is_an_economics_error(tmp_path, lmo_rows):
    rows = [list(r) for r in lmo_rows]
    i_step = rows[0].index("步次")
    rows[40][i_step] = rows[39][i_step]  # spreadsheet row 41 repeats the program step of row 40
    path = write_sheet(tmp_path / Path(LMO).name, rows)
    with pytest.raises(ValueError, match=rf"^{path.name}: SOC level 1: row 41: program step \d+ occurs twice \(also row 40\)"):
        ec.measure_level_cost(path)


def test_a_file_is_parsed_once_per_version(tmp_path, lmo_rows, monkeypatch):
    path = write_sheet(tmp_path / Path(LMO).name, lmo_rows)
    opened = []
    real = openpyxl.load_workbook
    monkeypatch.setattr(openpyxl, "load_workbook", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    first = read_workstep(path)
    again = read_workstep(path, extra=ENERGY)  # other columns checked, the same cells
    assert len(opened) == 1 and first.equals(again[first.columns])
    first["soc"] = 0.0  # a caller's changes stay its own
    assert "soc" not in read_workstep(path).columns
    stamp = path.stat().st_mtime_ns
    write_sheet(path, lmo_rows[:50])  # a new version of the file: read again
    os.utime(path, ns=(stamp, stamp))  # even with the old version's time stamp: the size differs
    assert len(read_workstep(path)) < len(first) and len(opened) == 2


def test_unknown_extra_column_is_refused(lmo_path):
    with pytest.raises(ValueError, match=r"unknown workstep column\(s\) \['energy'\]"):
        read_workstep(lmo_path, extra=("energy",))


@pytest.mark.parametrize("value", [None, "", "  "])
def test_blank_rows_are_skipped_and_listed(tmp_path, lmo_rows, value):
    rows = [list(r) for r in lmo_rows]
    rows[100] = [value] * len(rows[0])  # sheet row 101, between steps
    rows.append([value] * len(rows[0]))  # a trailing blank row: not worth a mention
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Sheet1")
    for r in rows:
        ws.append(r)
    wb.save(tmp_path / Path(LMO).name)
    df = read_workstep(tmp_path / Path(LMO).name)
    assert len(df) == SHORT - 2 and 101 not in set(df["sheet_row"])
    assert df.attrs["blank_rows"] == [101]
