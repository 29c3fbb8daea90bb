"""The battery tester's workstep layer: one row per executed program step, read into English columns.

The tester (NEBULA BAT-NEEFLCT-05300) exports, per battery, a workbook named after the PulseBat
convention ``mat_C_cap_B_no_SOC_lo-hi_Part_i-j_ID_id.xlsx`` whose *workstep layer* (sheet
``工步层`` of a raw export, or the single sheet of an extracted one) holds one row per step: the
program step number, the loop (0 = capacity calibration, k = k-th SOC level), the mode, start and
end voltage and current, charge and energy, duration and time stamps. This module is the one
place that knows that layout; :mod:`battgen.features` (pulse features) and
:mod:`battgen.economics.measured` (energy and tester time per SOC level) both read through
:func:`read_workstep`, so both see the same rows, names, units and checks. What the steps should
be is :mod:`battgen.protocol`'s business.

A broken file raises ``ValueError`` with one line that names the file and, where there is one,
the column (Chinese header and English name) and the spreadsheet row.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from battgen.data import BATTERIES
from battgen.protocol import CALIBRATION, CALIBRATION_DISCHARGE, LEVEL_STEPS, SOC_STEP_PCT, loop_soc, soc_loop

__all__ = [
    "COLUMNS",
    "COMPLETED",
    "CURRENT_RTOL",
    "HEADERS",
    "NAME_CONVENTION",
    "REQUIRED",
    "WORKSTEP_SHEET",
    "WorkstepName",
    "calibration",
    "describe_step",
    "loop_positions",
    "parse_name",
    "read_workstep",
]

# --------------------------------------------------------------------------- tester vocabulary

COLUMNS: dict[str, str] = {
    "工步序号": "step_no",  # running number of the executed step (1, 2, ... over the whole test)
    "步次": "program_step",  # step number in the test program (restarts with every SOC loop)
    "原始步次": "original_step",
    "循环": "cycle",
    "循环步骤号": "loop",  # loop counter: 0 = calibration, k = k-th SOC level
    "通道": "channel",
    "工步类型": "step_type",  # 充电 charge / 放电 discharge / 其它 other
    "状态": "mode",  # 静置 rest / 充电 CC / 充电 CC-CV / 放电 DC
    "绝对时间": "start_time",
    "结束时间": "end_time",
    "结果": "result",  # 完成 completed / 手动跳转 jumped to the next step (protection limit)
    "起始电压(V)": "u_start_v",
    "最大电压(V)": "u_max_v",
    "结束电压(V)": "u_end_v",
    "起始电流(A)": "i_start_a",
    "结束电流(A)": "i_end_a",
    "充电容量(Ah)": "q_charge_ah",
    "放电容量(Ah)": "q_discharge_ah",  # negative
    "净放电容量(Ah)": "q_net_discharge_ah",
    "总容量(Ah)": "q_total_ah",  # signed: charge > 0, discharge < 0
    "充电能量(Wh)": "e_charge_wh",
    "放电能量(Wh)": "e_discharge_wh",  # negative, like the capacity
    "净放电能量(Wh)": "e_net_discharge_wh",
    "总能量(Wh)": "e_total_wh",
    "持续时间(h:min:s:ms)": "duration",
}
"""Workstep-layer header (Chinese, as the tester writes it) -> battgen's English column name."""

HEADERS: dict[str, str] = {v: k for k, v in COLUMNS.items()}
"""English column name -> the tester's Chinese header (for error messages)."""

REQUIRED: tuple[str, ...] = ("step_no", "program_step", "loop", "mode", "result", "u_start_v", "u_end_v",
                             "i_start_a", "i_end_a", "q_discharge_ah", "q_total_ah", "duration")
"""Columns every workstep layer must have: step structure, voltages, currents, charge, duration."""

_INTEGER = ("step_no", "program_step", "loop")
_NUMERIC = _INTEGER + ("original_step", "cycle", "channel", "u_start_v", "u_max_v", "u_end_v", "i_start_a",
                       "i_end_a", "q_charge_ah", "q_discharge_ah", "q_net_discharge_ah", "q_total_ah",
                       "e_charge_wh", "e_discharge_wh", "e_net_discharge_wh", "e_total_wh")
_TIMESTAMPS = ("start_time", "end_time")
WORKSTEP_SHEET = "工步层"
COMPLETED = "完成"  # 结果 of a step that ran its full duration
CURRENT_RTOL = 0.05  # recorded vs. protocol current, relative


# --------------------------------------------------------------------------- file names

_NAME = re.compile(
    r"^(?P<mat>[A-Za-z]+)_C_(?P<cap>\d+(?:\.\d+)?)_B_(?P<no>\d+)_SOC_(?P<lo>\d+)-(?P<hi>\d+)"
    r"_Part_(?P<part>\d+)-(?P<parts>\d+)_ID_(?P<id>.+)\.xlsx$"
)
NAME_CONVENTION = "mat_C_cap_B_no_SOC_lo-hi_Part_i-j_ID_id.xlsx (e.g. LMO_C_10_B_1_SOC_5-55_Part_1-1_ID_PIP15828A00225770.xlsx)"
_MAT_FIX = {"NCM": "NMC", "NMO": "LMO"}


@dataclass(frozen=True)
class WorkstepName:
    """The fields of a PulseBat raw-data file name."""

    file: str
    cathode: str  # NMC / LMO / LFP
    qn_ah: float  # nominal capacity
    number: int  # battery number within its type (the dataset's "No.")
    soc_lo: int  # planned SOC range, %
    soc_hi: int
    part: int  # part i of j of a raw export
    parts: int
    battery_id: str

    @property
    def battery(self) -> str:
        """battgen's battery-type key (``"LMO10"``); ``cathode + capacity`` for types battgen lacks."""
        for b in BATTERIES.values():
            if b.cathode == self.cathode and abs(b.nominal_ah - self.qn_ah) < 1e-9:
                return b.key
        return f"{self.cathode}{self.qn_ah:g}"

    @property
    def cell(self) -> str:
        """The physical cell: as battgen.data, NMC 2.1 Ah ids ``D3-100`` name cell D3 after 100 cycles."""
        return self.battery_id.split("-")[0] if self.battery == "NMC2.1" else self.battery_id

    def soc_loop(self, soc_pct: int) -> int:
        """Loop counter (循环步骤号) of an SOC level (%) of this battery's test."""
        return soc_loop(soc_pct, self.soc_lo)

    def loop_soc(self, loop: int) -> int:
        """SOC level (%) of a loop counter (循环步骤号 1, 2, ...) of this battery's test."""
        return loop_soc(loop, self.soc_lo)


def parse_name(path: str | os.PathLike) -> WorkstepName:
    """Parse ``mat_C_cap_B_no_SOC_lo-hi_Part_i-j_ID_id.xlsx``; ``ValueError`` if it breaks the convention."""
    name = Path(path).name
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{name}: file name breaks the PulseBat convention; expected {NAME_CONVENTION}")
    lo, hi, part, parts = (int(m[k]) for k in ("lo", "hi", "part", "parts"))
    problems = []
    if not (0 < lo <= hi <= 100) or lo % SOC_STEP_PCT or hi % SOC_STEP_PCT:
        problems.append(f"SOC range {lo}-{hi} is not a range of multiples of {SOC_STEP_PCT} % within 5-100")
    if not (1 <= part <= parts):
        problems.append(f"Part_{part}-{parts} is not part i of j")
    if float(m["cap"]) <= 0:
        problems.append(f"capacity {m['cap']} Ah is not positive")
    if problems:
        raise ValueError(f"{name}: {'; '.join(problems)}; expected {NAME_CONVENTION}")
    mat = m["mat"].upper()
    return WorkstepName(name, _MAT_FIX.get(mat, mat), float(m["cap"]), int(m["no"]), lo, hi, part, parts, m["id"])


# --------------------------------------------------------------------------- cells


def _kind(mode: object) -> str:
    """Tester mode (状态) -> rest / charge / cccv_charge / discharge / other."""
    text = re.sub(r"\s+", "", str(mode))
    if text.startswith("静置"):
        return "rest"
    if text.startswith("充电"):
        return "cccv_charge" if "CV" in text.upper() else "charge"
    if text.startswith("放电"):
        return "discharge"
    return "other"


_DURATION = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})(?:[.:](\d+))?\s*$")


def _seconds(value: object) -> float:
    """``"h:min:s.ms"`` (or a time/timedelta cell) -> seconds; NaN if unreadable."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dt.time):
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    m = _DURATION.match(str(value)) if isinstance(value, str) else None
    if m is None:
        return float("nan")
    frac = float(f"0.{m[4]}") if m[4] else 0.0
    return int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) + frac


def _bad_cell(df: pd.DataFrame, col: str, bad: pd.Series, source: str, expected: str) -> ValueError:
    """The error for the first unreadable cell of ``col``: file, column (Chinese and English), row, value."""
    i = int(np.flatnonzero(bad.to_numpy())[0])
    return ValueError(f"{source}: column {HEADERS[col]!r} ({col}), row {df['sheet_row'].iat[i]}: "
                      f"{df[col].iat[i]!r} is not {expected}")


# --------------------------------------------------------------------------- reading


def _header(ws) -> list[str]:
    first = next(ws.iter_rows(min_row=1, max_row=1, values_only=True), ())
    return [str(c).strip() if c is not None else "" for c in first]


def _workstep_sheet(wb, source: str):
    """The workstep layer: sheet 工步层 if present, else the first sheet with the workstep header."""
    if WORKSTEP_SHEET in wb.sheetnames:
        return wb[WORKSTEP_SHEET]
    for ws in wb.worksheets:
        if HEADERS["step_no"] in _header(ws):
            return ws
    raise ValueError(
        f"{source}: not a workstep layer: no sheet {WORKSTEP_SHEET!r} and no sheet (of {wb.sheetnames}) whose "
        f"header starts like the tester's workstep layer ({HEADERS['step_no']}, {HEADERS['program_step']}, ...)"
    )


def _read_cells(path: Path, required: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """The known columns of the workstep sheet as raw cell values, and the sheet's title."""
    source = path.name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such workstep file")
    stat = path.stat()
    header, rows, title = _sheet_rows(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)  # the name as given
    index = {COLUMNS[h]: i for i, h in enumerate(header) if h in COLUMNS}
    missing = [c for c in required if c not in index]
    if len(missing) == len(required):
        raise ValueError(f"{source}: not a workstep layer: sheet {title!r} has none of the workstep columns "
                         f"({', '.join(HEADERS[c] for c in required[:4])}, ...); header row is {list(header[:6])}...")
    if missing:
        raise ValueError(f"{source}: sheet {title!r}: column {HEADERS[missing[0]]!r} ({missing[0]}) is missing"
                         f"{'' if len(missing) == 1 else f' (and {len(missing) - 1} more)'}; expected the tester's "
                         f"workstep-layer columns {[HEADERS[c] for c in required]}")
    cols = sorted(index.items(), key=lambda kv: kv[1])
    data = [tuple(r[i] if i < len(r) else None for _, i in cols) for r in rows]
    return pd.DataFrame(data, columns=[c for c, _ in cols]), title


@lru_cache(maxsize=4)
def _sheet_rows(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, ...], tuple[tuple, ...], str]:
    """``(header, rows, title)`` of a file's workstep sheet: cell values, read once per version of the
    file (its modification time and size are part of the key; a study reads one file several times,
    a parse takes ~0.4 s)."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    source = Path(path).name
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError, InvalidFileException) as exc:
        raise ValueError(f"{source}: not a workstep layer: cannot open it as an .xlsx workbook ({exc})") from exc
    try:
        ws = _workstep_sheet(wb, source)
        rows = ws.iter_rows(values_only=True)
        header = tuple(str(c).strip() if c is not None else "" for c in next(rows, ()))
        return header, tuple(rows), ws.title
    finally:
        wb.close()


def read_workstep(path: str | os.PathLike, extra: Iterable[str] = ()) -> pd.DataFrame:
    """Read one workstep layer into English columns (see :data:`COLUMNS`), one row per tester step.

    Parameters
    ----------
    path: the workstep file (sheet ``工步层``, or the first sheet with the tester's header).
    extra: English names of columns needed beyond :data:`REQUIRED` (e.g. ``"e_charge_wh"``,
        ``"end_time"``); they are checked like the required ones.

    Returns every known column the sheet has, in sheet order, plus ``sheet_row`` (1-based
    spreadsheet row), ``kind`` (rest / charge / cccv_charge / discharge / other, from the mode
    状态) and ``duration_s``. Step numbers and loops are integers; voltages (V), currents (A),
    capacities (Ah) and energies (Wh) floats with the tester's signs (discharge < 0); time stamps
    datetimes; ``result`` stripped text (:data:`COMPLETED` for a step that ran its course).
    Unreadable cells of columns that are neither required nor ``extra`` become NaN/NaT. Blank
    rows (every required cell empty or white space, as a tester export can leave where a step
    was lost) are skipped; those between steps are listed in ``attrs["blank_rows"]`` (sheet rows).

    Raises ``ValueError`` naming the file, column and row when the sheet is not a workstep layer,
    lacks a required column or holds an unreadable value there; ``FileNotFoundError`` if ``path``
    is not a file.
    """
    required = REQUIRED + tuple(c for c in extra if c not in REQUIRED)
    unknown = [c for c in required if c not in HEADERS]
    if unknown:
        raise ValueError(f"extra={list(extra)!r}: unknown workstep column(s) {unknown}; expected names from "
                         f"battgen.workstep.COLUMNS, e.g. {list(HEADERS)[:4]}")
    path = Path(path)
    source = path.name
    df, title = _read_cells(path, required)
    df["sheet_row"] = np.arange(2, len(df) + 2)
    cells = df[list(required)]
    blank = (cells.isna() | cells.map(lambda v: isinstance(v, str) and not v.strip())).all(axis=1).to_numpy()
    last = int(np.flatnonzero(~blank)[-1]) if (~blank).any() else -1
    blank_rows = df["sheet_row"].to_numpy()[:last][blank[:last]].tolist()  # blank rows between steps (not trailing)
    df = df[~blank].reset_index(drop=True)
    if df.empty:
        raise ValueError(f"{source}: sheet {title!r} has a workstep header but no steps")
    for col in (c for c in _NUMERIC if c in df):
        values = pd.to_numeric(df[col], errors="coerce")
        if col in required:
            bad = values.isna()
            if bad.any():
                raise _bad_cell(df, col, bad, source, "a number")
            df[col] = values.astype(int if col in _INTEGER else float)
        else:
            df[col] = values
    for col in (c for c in _TIMESTAMPS if c in df):
        values = pd.to_datetime(df[col], format="ISO8601", errors="coerce")
        if col in required and values.isna().any():
            raise _bad_cell(df, col, values.isna(), source, "a date and time; expected e.g. 2023-12-06 09:17:53.520")
        df[col] = values
    df["duration_s"] = [_seconds(v) for v in df["duration"]]
    if df["duration_s"].isna().any():
        raise _bad_cell(df, "duration", df["duration_s"].isna(), source, "a duration; expected h:min:s.ms")
    df["kind"] = [_kind(v) for v in df["mode"]]
    df["result"] = df["result"].astype(str).str.strip()
    df.attrs["blank_rows"] = blank_rows
    return df


# --------------------------------------------------------------------------- checks


def describe_step(row) -> str:
    """One workstep row in words, for error messages: mode, kind, current, duration, result."""
    return (f"{row['mode']} ({row['kind']}) at {row['i_end_a']:g} A for {row['duration_s']:g} s, "
            f"result {row['result']}")


def calibration(steps: pd.DataFrame, name: WorkstepName) -> tuple[float, int]:
    """Calibrated capacity (Ah) and the program step (步次) of the last calibration step.

    The calibration (loop 0) must be the first rows and have the step kinds of
    :data:`battgen.protocol.CALIBRATION`; its CC discharge must run at 1 C (within
    :data:`CURRENT_RTOL`) and discharge a negative capacity, whose magnitude is the calibrated
    capacity (``soh = q_ah / qn_ah``). ``ValueError`` naming the file and rows otherwise.
    """
    source = name.file
    calib = steps[steps["loop"] == 0]
    kinds = tuple(calib["kind"])
    if kinds != CALIBRATION or list(calib.index) != list(range(len(CALIBRATION))):
        rows = f"sheet rows {calib['sheet_row'].min()}-{calib['sheet_row'].max()}" if len(calib) else "no rows"
        raise ValueError(f"{source}: calibration ({HEADERS['loop']} 0, {rows}) has the steps {list(kinds)}; expected "
                         f"the first {len(CALIBRATION)} rows to be {list(CALIBRATION)} (rest, CCCV charge, rest, "
                         "CC discharge, rest)")
    dis = calib.iloc[CALIBRATION_DISCHARGE]
    want = -name.qn_ah
    if abs(dis["i_end_a"] - want) > CURRENT_RTOL * abs(want) or not dis["q_discharge_ah"] < 0:
        raise ValueError(f"{source}: row {dis['sheet_row']}: calibration discharge is {describe_step(dis)} with "
                         f"{dis['q_discharge_ah']:g} Ah; expected a 1 C CC discharge ({want:g} A) with a negative "
                         f"{HEADERS['q_discharge_ah']}")
    return float(-dis["q_discharge_ah"]), int(calib["program_step"].iloc[-1])


def loop_positions(steps: pd.DataFrame, first_program_step: int) -> tuple[dict[int, dict[int, int]], dict[int, list[str]]]:
    """Map each SOC loop's program steps (步次) to positions in :data:`battgen.protocol.LEVEL_PROGRAM`.

    ``first_program_step`` is the program step number of position 0 (the one after the last
    calibration step). Returns ``{loop: {position: row index into steps}}`` and ``{loop: [problem,
    ...]}``: steps outside the level's range, occurring twice or out of order are left out of the
    map and described (with their spreadsheet row) instead, so a consumer never shifts a step.
    """
    loops: dict[int, dict[int, int]] = {}
    problems: dict[int, list[str]] = {}
    body = steps[steps["loop"] > 0]
    for loop, group in body.groupby("loop", sort=True):
        pos_of = {}
        issues = []
        last = -1
        for i, prog, sheet_row in zip(group.index, group["program_step"], group["sheet_row"]):
            pos = int(prog) - first_program_step
            if not 0 <= pos < LEVEL_STEPS:
                issues.append(f"row {sheet_row}: program step {prog} is outside the SOC loop's steps "
                              f"{first_program_step}-{first_program_step + LEVEL_STEPS - 1}")
            elif pos in pos_of:
                issues.append(f"row {sheet_row}: program step {prog} occurs twice (also row {steps.at[pos_of[pos], 'sheet_row']})")
            elif pos < last:
                issues.append(f"row {sheet_row}: program step {prog} comes after step {last + first_program_step}")
            else:
                pos_of[pos] = int(i)
                last = pos
        loops[int(loop)] = pos_of
        problems[int(loop)] = issues
    return loops, problems
