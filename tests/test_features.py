"""battgen.features: golden values from the authors' extraction, and broken inputs.

The PulseBat files are found with battgen.data.fetch in $BATTGEN_DATA_DIR (default
/work/shared/pulsebat) or the fetch cache; a missing file fails the test with a message.
Broken workstep sheets are written to tmp_path from the LMO 10 Ah file.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from battgen.data import SCHEMA, DataIntegrityError, fetch, load_pulsebat
from battgen.features import ExtractionWarning, extract, extract_dir, pulse_points
from battgen.io import write_table
from battgen.protocol import CALIBRATION_STEPS, LEVEL_STEPS
from battgen.workstep import parse_name

DATA_DIR = os.environ.get("BATTGEN_DATA_DIR", "/work/shared/pulsebat")
LMO = "workstep/LMO_C_10_B_2_SOC_5-55_Part_1-1_ID_PIP15827A00221240.xlsx"
NMC = "workstep/NMC_C_21_B_6_SOC_5-90_Part_1-2_ID_02LCC02100101A87Y0052124.xlsx"
LMO_ID, NMC_ID = "PIP15827A00221240", "02LCC02100101A87Y0052124"
U21 = [f"U{i}" for i in range(1, 22)]
U41 = [f"U{i}" for i in range(1, 42)]


def data(key: str) -> Path:
    """A registered PulseBat file, or a test failure that says how to provide it."""
    try:
        return fetch(key, data_dir=DATA_DIR, download=False)
    except (FileNotFoundError, DataIntegrityError) as exc:
        pytest.fail(f"PulseBat file {key!r} is not available: {exc}\nSet BATTGEN_DATA_DIR to a folder holding "
                    f"the PulseBat files (e.g. /work/shared/pulsebat) or run `battgen fetch`.", pytrace=False)


def extract_quiet(*args, **kwargs) -> tuple[pd.DataFrame, list[str]]:
    """extract() and the texts of the ExtractionWarnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = extract(*args, **kwargs)
    return df, [str(w.message) for w in caught if issubclass(w.category, ExtractionWarning)]


@pytest.fixture(scope="module")
def lmo_path() -> Path:
    return data(LMO)


@pytest.fixture(scope="module")
def nmc_path() -> Path:
    return data(NMC)


@pytest.fixture(scope="module")
def lmo_5s(lmo_path):
    return extract_quiet(lmo_path)


@pytest.fixture(scope="module")
def nmc_5s(nmc_path):
    return extract_quiet(nmc_path)


@pytest.fixture(scope="module")
def lmo_golden() -> pd.DataFrame:
    return pd.read_excel(data(f"workstep_features/{Path(LMO).name}"))


@pytest.fixture(scope="module")
def lmo_rows(lmo_path) -> list[list]:
    """Header + rows of the LMO workstep sheet (first 25 columns: all the extractor reads)."""
    wb = openpyxl.load_workbook(lmo_path, read_only=True)
    rows = [list(r[:25]) for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    return rows


SHORT = 1 + CALIBRATION_STEPS + 5 * LEVEL_STEPS  # header, calibration, SOC loops 1-5 (5-25 %): small, fast copies
SHORT_SOCS = range(5, 30, 5)


def write_sheet(path: Path, rows: list[list]) -> Path:
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Sheet1")
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def find_row(rows: list[list], loop: int, program_step: int) -> int:
    """Index in ``rows`` of the step with 循环步骤号 ``loop`` and 步次 ``program_step``."""
    h = rows[0]
    i_loop, i_step = h.index("循环步骤号"), h.index("步次")
    (i,) = [i for i, r in enumerate(rows[1:], 1) if r[i_loop] == loop and r[i_step] == program_step]
    return i


# --------------------------------------------------------------------------- golden values


def test_lmo_equals_authors_extraction(lmo_5s, lmo_golden):
    df, _ = lmo_5s
    assert list(df.columns) == SCHEMA + ["soc_measured"]
    assert len(df) == 10
    np.testing.assert_array_equal(df[U21].to_numpy(), lmo_golden[U21].to_numpy())
    np.testing.assert_array_equal(df["q_ah"], lmo_golden["Q"])
    np.testing.assert_array_equal(df["soh"], lmo_golden["SOH"])
    np.testing.assert_array_equal(df["soc"] * 100, lmo_golden["SOC"])
    assert (df["battery"] == "LMO10").all() and (df["cathode"] == "LMO").all()
    assert (df["battery_id"] == lmo_golden["ID"]).all() and (df["cell"] == df["battery_id"]).all()
    assert (df["qn_ah"] == 10.0).all() and (df["pulse_width_s"] == 5.0).all()
    # the authors' SOCR is the same accumulated charge over the nominal capacity
    np.testing.assert_allclose(df["soc_measured"] * df["soh"], lmo_golden["SOCR"], rtol=0, atol=1e-12)


def test_lmo_reports_the_pulse_cut_by_voltage_protection(lmo_5s):
    df, warned = lmo_5s
    # SOC 50 %: the +1.5 C 5 s pulse (U18, U19) hit 4.3 V after 3.84 s; kept as in the dataset
    assert len(warned) == 1 and warned == df.attrs["report"]
    assert "SOC 50 % kept" in warned[0] and "voltage protection" in warned[0] and "3.84 s" in warned[0]
    assert df.loc[df["soc"] == 0.5, "U19"].item() == 4.3003


def test_lmo_drop_truncated(lmo_path):
    df, warned = extract_quiet(lmo_path, drop_truncated=True)
    assert 0.5 not in set(df["soc"]) and len(df) == 9
    assert "SOC 50 % dropped" in warned[0]


def test_nmc_equals_published_battery_b6(nmc_5s):
    df, warned = nmc_5s
    assert warned == [] and df.attrs["report"] == []
    pub = pd.read_excel(data("features_5s/NMC_21Ah_W_5000.xlsx"), sheet_name="SOC ALL")
    pub = pub[pub["No."] == 6].sort_values("SOC")
    assert len(df) == len(pub) == 10
    np.testing.assert_array_equal(df[U21].to_numpy(), pub[U21].to_numpy())
    np.testing.assert_array_equal(df["q_ah"], pub["Q"])
    np.testing.assert_array_equal(df["soh"], pub["SOH"])
    np.testing.assert_array_equal(df["soc"] * 100, pub["SOC"])
    np.testing.assert_allclose(df["soc_measured"] * df["soh"], pub["SOCR"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", ["lmo", "nmc"])
def test_same_tidy_rows_as_load_pulsebat(which, lmo_5s, nmc_5s):
    df = (lmo_5s if which == "lmo" else nmc_5s)[0]
    key, bid = ("LMO10", LMO_ID) if which == "lmo" else ("NMC21", NMC_ID)
    published = load_pulsebat(key, data_dir=DATA_DIR)
    published = published[published["battery_id"] == bid].reset_index(drop=True)
    pd.testing.assert_frame_equal(df[SCHEMA], published, check_exact=True)


def test_nmc_3s_all_41_features_all_18_levels(nmc_path):
    df, warned = extract_quiet(nmc_path, socs=range(5, 95, 5), pulse_width_s=3, features=range(1, 42))
    assert warned == []
    assert list(df.columns) == SCHEMA[:9] + U41 + ["soc_measured"]
    pub = pd.read_excel(data("features_3s/NMC_21Ah_W_3000.xlsx"), sheet_name="SOC ALL")
    pub = pub[pub["Idx"].str.contains(f"_B_6_SOC_5-90_Part_1-2_ID_{NMC_ID}")].sort_values("SOC")
    assert len(df) == len(pub) == 18
    np.testing.assert_array_equal(df[U41].to_numpy(), pub[U41].to_numpy())
    np.testing.assert_array_equal(df["q_ah"], pub["Q"])
    assert (df["pulse_width_s"] == 3.0).all()


def test_lmo_3s_and_the_shifted_published_soc55_row(lmo_path):
    df, warned = extract_quiet(lmo_path, socs=range(5, 60, 5), pulse_width_s=3, features=range(1, 42))
    pub = pd.read_excel(data("features_3s/LMO_10Ah_W_3000.xlsx"), sheet_name="SOC ALL")
    pub = pub[pub["ID"] == LMO_ID].sort_values("SOC")
    assert len(df) == len(pub) == 11
    np.testing.assert_array_equal(df[U41].to_numpy()[:10], pub[U41].to_numpy()[:10])
    # Data quirk: the published SOC 55 % row sits one step early (its U3..U41 are our U1..U39),
    # the shift the authors' row arithmetic makes when one step is missing from the sheet.
    ours, theirs = df[U41].to_numpy()[10], pub[U41].to_numpy()[10]
    assert not np.array_equal(ours, theirs)
    np.testing.assert_array_equal(ours[:-2], theirs[2:])
    assert all("kept" in w and "voltage protection" in w for w in warned) and len(warned) == 7


def test_feature_subset_order_and_unplanned_soc(lmo_path, lmo_golden):
    df, warned = extract_quiet(lmo_path, socs=(45, 5, 60), features=[21, 1, 3])
    assert list(df.columns) == SCHEMA[:9] + ["U21", "U1", "U3", "soc_measured"]
    assert list(df["soc"]) == [0.45, 0.05]
    golden = lmo_golden.set_index("SOC").loc[[45, 5], ["U21", "U1", "U3"]]
    np.testing.assert_array_equal(df[["U21", "U1", "U3"]].to_numpy(), golden.to_numpy())
    assert len(warned) == 1 and "SOC 60 % skipped: outside the planned range 5-55 %" in warned[0]


# --------------------------------------------------------------------------- pulse_points


def test_pulse_points_give_the_21_turning_points(lmo_path, lmo_5s):
    with pytest.warns(ExtractionWarning, match="voltage protection"):
        pts = pulse_points(lmo_path, 50, 5)
    assert list(pts.columns[:6]) == ["step", "program_step", "sheet_row", "kind", "amplitude_c", "current_a"]
    assert len(pts) == 11
    assert list(pts["kind"]) == ["rest"] + ["charge", "rest", "discharge", "rest"] * 2 + ["charge", "rest"]
    assert list(pts["amplitude_c"][1:5]) == [0.5, 0.0, -0.5, 0.0]
    labels = [x for x in pd.concat([pts["u_start_label"], pts["u_end_label"]]) if x]
    assert sorted(labels, key=lambda u: int(u[1:])) == U21
    row = lmo_5s[0].set_index("soc").loc[0.5]
    for col_v, col_l in (("u_start_v", "u_start_label"), ("u_end_v", "u_end_label")):
        for v, label in zip(pts[col_v], pts[col_l]):
            if label:
                assert v == row[label]
    assert pts.loc[pts["u_end_label"] == "U19", "truncated"].item()
    assert pts["truncated"].sum() == 1
    assert pts["t_start_s"].iloc[1] == 0.0 and pts["t_end_s"].iloc[0] == 0.0
    np.testing.assert_allclose(pts["t_end_s"].iloc[-1], 4 * 5 + 3.84 + 5 * 75)  # 5 pulses, 5 rests
    assert (np.diff(pts["step"]) == 1).all()


def test_pulse_points_all_41(lmo_path):
    pts = pulse_points(lmo_path, 5, 0.03, features=range(1, 42))
    assert len(pts) == 21 and pts["u_end_label"].iloc[-1] == "U41"
    assert pts["duration_s"].iloc[1] == pytest.approx(0.03)


# --------------------------------------------------------------------------- broken inputs


def _delete(rows, loop, step):
    out = list(rows)
    del out[find_row(rows, loop, step)]
    return out


def _renumber(rows, loop, step):
    """Delete a step and close the gap in 步次: only the step kinds/currents can tell."""
    i = find_row(rows, loop, step)
    out = [list(r) for r in rows[:i]] + [list(r) for r in rows[i + 1:]]
    i_loop, i_step = rows[0].index("循环步骤号"), rows[0].index("步次")
    for r in out[i:]:
        if r[i_loop] == loop:
            r[i_step] -= 1
    return out


def _wrong_current(rows, loop, step):
    out = [list(r) for r in rows]
    i = find_row(rows, loop, step)
    out[i][rows[0].index("结束电流(A)")] *= 2
    return out


@pytest.mark.parametrize("damage, expect", [
    (_delete, r"program step 190 \(-0.5 C pulse \(5 s\)\) is missing after row 594"),
    (_renumber, r"row 595 \(program step 190\) is 静置 \(rest\).*expected -0.5 C pulse \(5 s\) \(discharge\); .*; and 5 more unexpected steps$"),
    (_wrong_current, r"row 595 \(program step 190\): current -9.99\d* A; expected -5 A \(-0.5 C pulse \(5 s\)\)"),
])
def test_damaged_step_drops_its_soc_level(tmp_path, lmo_rows, lmo_golden, damage, expect):
    # SOC 15 % (loop 3), the -0.5 C pulse of the 5 s group: U6, U7
    path = write_sheet(tmp_path / Path(LMO).name, damage(lmo_rows[:SHORT], 3, 190))
    df, warned = extract_quiet(path, socs=SHORT_SOCS)
    assert list(df["soc"]) == [0.05, 0.1, 0.2, 0.25]
    assert any(w.startswith(f"{path.name}: SOC 15 % dropped: ") for w in warned), warned
    dropped = [w for w in warned if "SOC 15 % dropped" in w][0]
    assert re.search(expect, dropped), dropped
    kept = lmo_golden[lmo_golden["SOC"].isin([5, 10, 20, 25])]
    np.testing.assert_array_equal(df[U21].to_numpy(), kept[U21].to_numpy())
    if damage is _wrong_current:  # every step still there: the charge count is complete
        assert df["soc_measured"].notna().all()
    else:  # a step (and its charge) is lost: no soc_measured from SOC 15 % on
        assert df["soc_measured"].iloc[:2].notna().all() and df["soc_measured"].iloc[2:].isna().all()
        assert any("soc_measured is NaN" in w for w in warned)


def _blank(rows, loop, step, value=None):
    """Blank the step's row (every cell ``value``), as a tester export that lost the step leaves it."""
    out = [list(r) for r in rows]
    i = find_row(rows, loop, step)
    out[i] = [value] * len(rows[0])
    return out, i + 1  # the rows and the blanked sheet row


@pytest.mark.parametrize("value", [None, " "])
def test_blank_row_of_a_0_5s_pulse_loses_only_0_5s_features(tmp_path, lmo_rows, lmo_golden, value):
    # SOC 15 % (loop 3): program step 109 is the rest after the +0.5 C pulse of the 0.5 s group
    rows, sheet_row = _blank(lmo_rows[:SHORT], 3, 109, value)
    path = write_sheet(tmp_path / Path(LMO).name, rows)
    df, warned = extract_quiet(path, socs=SHORT_SOCS)  # 5 s: every pulse is complete
    np.testing.assert_array_equal(df[U21].to_numpy(), lmo_golden[U21].to_numpy()[:5])
    assert f"{path.name}: row {sheet_row} is blank and skipped" in warned
    assert not any("dropped" in w for w in warned)
    assert df["soc_measured"].iloc[:2].notna().all() and df["soc_measured"].iloc[2:].isna().all()  # its charge is lost
    df, warned = extract_quiet(path, socs=SHORT_SOCS, pulse_width_s=0.5)  # 0.5 s: SOC 15 % lacks a step
    assert list(df["soc"]) == [0.05, 0.1, 0.2, 0.25]
    assert (f"{path.name}: SOC 15 % dropped: program step 109 (rest after +0.5 C pulse (0.5 s)) is missing after row "
            f"{sheet_row - 1} (row {sheet_row} is blank)") in warned


def test_blank_row_of_a_5s_pulse_drops_that_level(tmp_path, lmo_rows, lmo_golden):
    rows, sheet_row = _blank(lmo_rows[:SHORT], 3, 190)
    df, warned = extract_quiet(write_sheet(tmp_path / Path(LMO).name, rows), socs=SHORT_SOCS)
    assert list(df["soc"]) == [0.05, 0.1, 0.2, 0.25]
    assert any(f"SOC 15 % dropped: program step 190 (-0.5 C pulse (5 s)) is missing after row {sheet_row - 1} "
               f"(row {sheet_row} is blank)" in w for w in warned)
    kept = lmo_golden[lmo_golden["SOC"].isin([5, 10, 20, 25])]
    np.testing.assert_array_equal(df[U21].to_numpy(), kept[U21].to_numpy())


def test_test_stopped_early(tmp_path, lmo_rows, lmo_golden):
    # the test ends in SOC loop 4 (20 %) right after the rest that gives U20, U21 of the 5 s group
    cut = find_row(lmo_rows, 4, 197)
    df, warned = extract_quiet(write_sheet(tmp_path / Path(LMO).name, lmo_rows[:cut + 1]))
    assert list(df["soc"]) == [0.05, 0.1, 0.15, 0.2]
    np.testing.assert_array_equal(df[U21].to_numpy(), lmo_golden[U21].to_numpy()[:4])
    assert df["soc_measured"].notna().all()
    assert len(warned) == 6 and all("not in the file (the test ends in SOC loop 4, 20 %)" in w for w in warned)
    # one step earlier, the rest behind U20, U21 is missing: SOC 20 % is dropped, not shifted
    df, warned = extract_quiet(write_sheet(tmp_path / Path(LMO).name, lmo_rows[:cut]))
    assert list(df["soc"]) == [0.05, 0.1, 0.15]
    assert "SOC 20 % dropped: program step 197 (rest after +1.5 C pulse (5 s)) is missing" in warned[0]


def test_raw_export_reads_the_workstep_sheet(tmp_path, lmo_rows, lmo_golden):
    # a raw tester export: several sheets, the workstep layer is the one called 工步层
    wb = openpyxl.Workbook(write_only=True)
    wb.create_sheet("概要").append(["channel", 2])
    ws = wb.create_sheet("工步层")
    for r in lmo_rows[:SHORT]:
        ws.append(r)
    wb.create_sheet("记录层").append(["数据序号", "电压(V)"])
    path = tmp_path / Path(LMO).name
    wb.save(path)
    df, warned = extract_quiet(path, socs=SHORT_SOCS)
    assert warned == []
    np.testing.assert_array_equal(df[U21].to_numpy(), lmo_golden[U21].to_numpy()[:5])


def test_broken_calibration_is_an_error(tmp_path, lmo_rows):
    path = write_sheet(tmp_path / Path(LMO).name, lmo_rows[:4] + lmo_rows[5:300])  # no CC discharge
    with pytest.raises(ValueError, match=rf"{path.name}: calibration .*expected the first 5 rows"):
        extract(path)


def test_missing_column(tmp_path, lmo_rows):
    i = lmo_rows[0].index("结束电压(V)")
    path = write_sheet(tmp_path / Path(LMO).name, [r[:i] + r[i + 1:] for r in lmo_rows[:300]])
    with pytest.raises(ValueError, match=rf"{path.name}: sheet 'Sheet1': column '结束电压\(V\)' \(u_end_v\) is missing"):
        extract(path)


def test_non_numeric_cell(tmp_path, lmo_rows):
    rows = [list(r) for r in lmo_rows[:300]]
    rows[100][rows[0].index("起始电压(V)")] = "n/a"
    with pytest.raises(ValueError, match=r"column '起始电压\(V\)' \(u_start_v\), row 101: 'n/a' is not a number"):
        extract(write_sheet(tmp_path / Path(LMO).name, rows))


def test_not_a_workstep_layer(tmp_path):
    features_file = tmp_path / Path(LMO).name
    features_file.symlink_to(data("features_5s/LMO_10Ah_W_5000.xlsx"))
    with pytest.raises(ValueError, match=rf"{features_file.name}: not a workstep layer"):
        extract(features_file)
    text_file = tmp_path / Path(NMC).name
    text_file.write_text("step,voltage\n1,3.7\n")
    with pytest.raises(ValueError, match=rf"{text_file.name}: not a workstep layer: cannot open it"):
        extract(text_file)


def test_name_convention(tmp_path, lmo_path):
    bad = tmp_path / "LMO_battery_2.xlsx"
    bad.symlink_to(lmo_path)
    with pytest.raises(ValueError, match=r"LMO_battery_2.xlsx: file name breaks the PulseBat convention; expected mat_C_cap"):
        extract(bad)
    with pytest.raises(ValueError, match="SOC range 5-57"):
        parse_name("LMO_C_10_B_1_SOC_5-57_Part_1-1_ID_X.xlsx")
    n = parse_name("LFP_C_35_B_56_SOC_5-90_Part_1-2_ID_56号.xlsx")
    assert (n.battery, n.cathode, n.qn_ah, n.number, n.soc_lo, n.soc_hi, n.part, n.parts, n.battery_id) == (
        "LFP35", "LFP", 35.0, 56, 5, 90, 1, 2, "56号")
    n = parse_name("NMC_C_2.1_B_3_SOC_5-50_Part_1-1_ID_D3-100.xlsx")
    assert (n.battery, n.cell, n.battery_id) == ("NMC2.1", "D3", "D3-100")
    assert parse_name("NCM_C_15_B_3_SOC_5-50_Part_1-1_ID_A.xlsx").battery == "NMC15"  # no battgen type: cathode+Ah
    part2 = tmp_path / Path(NMC).name.replace("Part_1-2", "Part_2-2")
    part2.symlink_to(lmo_path)
    with pytest.raises(ValueError, match=r"part 2 of a 2-part raw export holds record layers only"):
        extract(part2)


@pytest.mark.parametrize("kwargs, match", [
    ({"socs": (7,)}, "multiples of 5"),
    ({"socs": (0.05,)}, "SOC levels are percent"),
    ({"socs": (5, 5)}, "distinct"),
    ({"pulse_width_s": 4}, "not a PulseBat pulse width"),
    ({"features": [0, 1]}, r"1..41"),
    ({"features": range(1, 43)}, r"1..41"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract("never_read.xlsx", **kwargs)


# --------------------------------------------------------------------------- folders


def test_extract_dir(tmp_path, lmo_path, nmc_path, lmo_5s, nmc_5s, capsys):
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / nmc_path.name).symlink_to(nmc_path)
    (folder / lmo_path.name).symlink_to(lmo_path)
    part2 = nmc_path.name.replace("Part_1-2", "Part_2-2")
    (folder / part2).write_bytes(b"record layers only; never opened")
    (folder / f"~${lmo_path.name}").write_bytes(b"office lock file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtractionWarning)
        df = extract_dir(folder, progress=True)
    assert "extract features" in capsys.readouterr().err
    expected = pd.concat([lmo_5s[0], nmc_5s[0]], ignore_index=True)  # LMO before NMC
    pd.testing.assert_frame_equal(df, expected, check_exact=True)
    report = df.attrs["report"]
    assert any(r.startswith(f"{part2}: skipped: part 2 of 2") for r in report)
    assert any("SOC 50 % kept" in r for r in report)
    out = write_table(df, tmp_path / "out" / "features.csv")
    back = pd.read_csv(out)
    assert list(back.columns) == list(df.columns)
    np.testing.assert_allclose(back[U21].to_numpy(), df[U21].to_numpy(), rtol=1e-15)


def test_extract_dir_bad_file_nothing_written(tmp_path, lmo_path, capsys):
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / lmo_path.name).symlink_to(lmo_path)
    (folder / "notes.xlsx").write_bytes(b"not a workbook")
    out = tmp_path / "features.csv"
    with pytest.raises(ValueError, match="notes.xlsx: file name breaks the PulseBat convention"):
        write_table(extract_dir(folder, progress=False), out)
    assert not out.exists() and list(tmp_path.iterdir()) == [folder]
    assert capsys.readouterr().err == ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = extract_dir(folder, progress=False, on_error="warn")
    assert str(caught[0].message).startswith("notes.xlsx: skipped: file name breaks the PulseBat convention")
    assert len(df) == 10 and df.attrs["report"][0].startswith("notes.xlsx: skipped")


def test_extract_dir_only_part2(tmp_path):
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / Path(NMC).name.replace("Part_1-2", "Part_2-2")).write_bytes(b"")
    with pytest.warns(ExtractionWarning, match="Part_1-2 .*is not in the folder"):
        df = extract_dir(folder, progress=False, features=range(1, 4))
    assert df.empty and list(df.columns) == SCHEMA[:9] + ["U1", "U2", "U3", "soc_measured"]
    with pytest.raises(ValueError, match="no workstep files"):
        extract_dir(tmp_path, progress=False)
