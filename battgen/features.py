"""Pulse features U1..U41 extracted from PulseBat workstep-layer files.

The battery tester exports, per battery, a workbook whose *workstep layer* (sheet ``工步层``)
holds one row per executed program step: its kind, start/end voltage, current, capacity and
duration. The PulseBat test program is (README of the PulseBat dataset):

1. **Calibration** (循环步骤号 0, program steps 1-5): rest, 1 C CCCV charge, rest,
   1 C CC discharge to the lower cut-off, rest. The discharged capacity is the calibrated
   capacity ``q_ah``; ``soh = q_ah / qn_ah``.
2. **Per SOC level** (循环步骤号 1, 2, ...; 5 % of nominal capacity apart): a 1 C charge for
   3 min and a 10 min rest (*conditioning*), then for each of 10 pulse widths
   (:data:`PULSE_WIDTHS_S`) and 5 amplitudes (:data:`AMPLITUDES_C`) four steps:
   +pulse, rest, -pulse, rest (rest = 15 x pulse width). 202 program steps per level.

For one SOC level and pulse width, ``U1`` is the end voltage of the rest before the pulse
group; ``U(2m)`` and ``U(2m+1)`` are the start and end voltage of the m-th step of the group
(m = 1..20), so U2-U9 belong to the 0.5 C pulse pair, U10-U17 to 1 C, ..., U34-U41 to 2.5 C.

Steps are located by the tester's own program step number (``步次``) within each SOC loop and
every step a feature depends on is checked against the protocol (kind, current, duration): a
missing or unexpected step drops that SOC level with a report instead of shifting voltages.
Pulses cut short by the tester's voltage protection (result ``手动跳转``) are kept, as in the
published features, and reported (``drop_truncated=True`` drops those levels instead).

Problems are reported twice: as :class:`ExtractionWarning` and in ``df.attrs["report"]``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from battgen.data import BATTERIES, SCHEMA, VOLTAGE_RANGE_V
from battgen.io import progress_enabled

__all__ = [
    "AMPLITUDES_C",
    "COLUMNS",
    "DEFAULT_SOCS",
    "ExtractionWarning",
    "PULSE_WIDTHS_S",
    "WorkstepName",
    "extract",
    "extract_dir",
    "parse_name",
    "pulse_points",
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
    "持续时间(h:min:s:ms)": "duration",
}
"""Workstep-layer header (Chinese, as the tester writes it) -> battgen's English column name."""

_REQUIRED = ("step_no", "program_step", "loop", "mode", "result", "u_start_v", "u_end_v",
             "i_start_a", "i_end_a", "q_discharge_ah", "q_total_ah", "duration")
_NUMERIC = ("step_no", "program_step", "loop", "u_start_v", "u_end_v", "i_start_a", "i_end_a",
            "q_discharge_ah", "q_total_ah")
_CHINESE = {v: k for k, v in COLUMNS.items()}
WORKSTEP_SHEET = "工步层"
COMPLETED = "完成"

# --------------------------------------------------------------------------- test protocol

PULSE_WIDTHS_S: tuple[float, ...] = (0.03, 0.05, 0.07, 0.1, 0.3, 0.5, 0.7, 1.0, 3.0, 5.0)
AMPLITUDES_C: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5)
DEFAULT_SOCS: tuple[int, ...] = tuple(range(5, 51, 5))
"""SOC levels (%) of the paper's features."""
REST_FACTOR = 15  # pulse rest = 15 x pulse width
CONDITIONING = (("charge", 1.0, 180.0, "1 C conditioning charge"), ("rest", 0.0, 600.0, "conditioning rest"))
CALIBRATION = ("rest", "cccv_charge", "rest", "discharge", "rest")
SOC_GRAIN_PCT = 5
GROUP_STEPS = 4 * len(AMPLITUDES_C)  # steps per pulse width
LEVEL_STEPS = len(CONDITIONING) + GROUP_STEPS * len(PULSE_WIDTHS_S)  # 202
MAX_FEATURE = 1 + 2 * GROUP_STEPS  # U41
CURRENT_RTOL = 0.05  # set current vs. protocol
REST_ATOL_C = 0.01  # |current| in a rest, in C
DURATION_RTOL, DURATION_ATOL_S = 0.01, 0.005
MAX_LISTED = 3  # problems listed per dropped SOC level


class ExtractionWarning(UserWarning):
    """An SOC level was dropped or holds a pulse cut short by the tester's voltage protection."""


@dataclass(frozen=True)
class Expected:
    """One program step as the protocol prescribes it."""

    pos: int  # 0-based position within an SOC loop
    kind: str  # rest / charge / discharge
    c_rate: float  # signed current in C (multiples of the nominal capacity per hour)
    duration_s: float
    what: str  # human-readable, e.g. "+1.5 C pulse (5 s)"


def level_protocol() -> list[Expected]:
    """The 202 program steps of one SOC level, in order."""
    steps = [Expected(i, kind, c, d, what) for i, (kind, c, d, what) in enumerate(CONDITIONING)]
    for w in PULSE_WIDTHS_S:
        for a in AMPLITUDES_C:
            rest = w * REST_FACTOR
            for kind, c, d, what in (("charge", a, w, f"+{a:g} C pulse ({w:g} s)"),
                                     ("rest", 0.0, rest, f"rest after +{a:g} C pulse ({w:g} s)"),
                                     ("discharge", -a, w, f"-{a:g} C pulse ({w:g} s)"),
                                     ("rest", 0.0, rest, f"rest after -{a:g} C pulse ({w:g} s)")):
                steps.append(Expected(len(steps), kind, c, d, what))
    return steps


_PROTOCOL = level_protocol()


def feature_position(n: int, width_index: int) -> tuple[int, str]:
    """Position within an SOC loop and voltage (``"u_start_v"``/``"u_end_v"``) behind ``U{n}``."""
    u1 = len(CONDITIONING) - 1 + GROUP_STEPS * width_index  # the rest before the pulse group
    if n == 1:
        return u1, "u_end_v"
    return u1 + n // 2, ("u_start_v" if n % 2 == 0 else "u_end_v")


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
        """Loop counter (循环步骤号) of an SOC level."""
        return (soc_pct - self.soc_lo) // SOC_GRAIN_PCT + 1


def parse_name(path: str | os.PathLike) -> WorkstepName:
    """Parse ``mat_C_cap_B_no_SOC_lo-hi_Part_i-j_ID_id.xlsx``; ``ValueError`` if it breaks the convention."""
    name = Path(path).name
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"{name}: file name breaks the PulseBat convention; expected {NAME_CONVENTION}")
    lo, hi, part, parts = (int(m[k]) for k in ("lo", "hi", "part", "parts"))
    problems = []
    if not (0 < lo <= hi <= 100) or lo % SOC_GRAIN_PCT or hi % SOC_GRAIN_PCT:
        problems.append(f"SOC range {lo}-{hi} is not a range of multiples of {SOC_GRAIN_PCT} % within 5-100")
    if not (1 <= part <= parts):
        problems.append(f"Part_{part}-{parts} is not part i of j")
    if float(m["cap"]) <= 0:
        problems.append(f"capacity {m['cap']} Ah is not positive")
    if problems:
        raise ValueError(f"{name}: {'; '.join(problems)}; expected {NAME_CONVENTION}")
    mat = m["mat"].upper()
    return WorkstepName(name, _MAT_FIX.get(mat, mat), float(m["cap"]), int(m["no"]), lo, hi, part, parts, m["id"])


# --------------------------------------------------------------------------- reading


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


def _header(ws) -> list[str]:
    first = next(ws.iter_rows(min_row=1, max_row=1, values_only=True), ())
    return [str(c).strip() if c is not None else "" for c in first]


def _workstep_sheet(wb, source: str):
    """The workstep layer: sheet 工步层 if present, else the first sheet with the workstep header."""
    if WORKSTEP_SHEET in wb.sheetnames:
        return wb[WORKSTEP_SHEET]
    for ws in wb.worksheets:
        if _CHINESE["step_no"] in _header(ws):
            return ws
    raise ValueError(
        f"{source}: not a workstep layer: no sheet {WORKSTEP_SHEET!r} and no sheet (of {wb.sheetnames}) whose "
        f"header starts like the tester's workstep layer ({_CHINESE['step_no']}, {_CHINESE['program_step']}, ...)"
    )


def read_workstep(path: str | os.PathLike) -> pd.DataFrame:
    """Read one workstep layer into English columns (see :data:`COLUMNS`).

    Adds ``sheet_row`` (1-based spreadsheet row), ``kind`` (rest / charge / cccv_charge /
    discharge / other) and ``duration_s``. Raises ``ValueError`` naming the file, column and
    row when the sheet is not a workstep layer, lacks a column or holds an unreadable value.
    """
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    path = Path(path)
    source = path.name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such workstep file")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError, InvalidFileException) as exc:
        raise ValueError(f"{source}: not a workstep layer: cannot open it as an .xlsx workbook ({exc})") from exc
    try:
        ws = _workstep_sheet(wb, source)
        rows = ws.iter_rows(values_only=True)
        header = [str(c).strip() if c is not None else "" for c in next(rows, ())]
        index = {COLUMNS[h]: i for i, h in enumerate(header) if h in COLUMNS}
        missing = [c for c in _REQUIRED if c not in index]
        if len(missing) == len(_REQUIRED):
            raise ValueError(f"{source}: not a workstep layer: sheet {ws.title!r} has none of the workstep columns "
                             f"({', '.join(_CHINESE[c] for c in _REQUIRED[:4])}, ...); header row is {header[:6]}...")
        if missing:
            raise ValueError(f"{source}: sheet {ws.title!r}: column {_CHINESE[missing[0]]!r} ({missing[0]}) is missing"
                             f"{'' if len(missing) == 1 else f' (and {len(missing) - 1} more)'}; expected the tester's "
                             f"workstep-layer columns {[_CHINESE[c] for c in _REQUIRED]}")
        cols = sorted(index.items(), key=lambda kv: kv[1])
        data = [tuple(r[i] if i < len(r) else None for _, i in cols) for r in rows]
        title = ws.title
    finally:
        wb.close()
    df = pd.DataFrame(data, columns=[c for c, _ in cols])
    df["sheet_row"] = np.arange(2, len(df) + 2)
    df = df[df[list(_REQUIRED)].notna().any(axis=1)].reset_index(drop=True)  # trailing empty rows
    if df.empty:
        raise ValueError(f"{source}: sheet {title!r} has a workstep header but no steps")
    for col in _NUMERIC:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{source}: column {_CHINESE[col]!r} ({col}), row {df['sheet_row'].iat[i]}: "
                             f"{df[col].iat[i]!r} is not a number")
        df[col] = values.astype(int if col in ("step_no", "program_step", "loop") else float)
    df["duration_s"] = [_seconds(v) for v in df["duration"]]
    bad = df["duration_s"].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{source}: column {_CHINESE['duration']!r} (duration), row {df['sheet_row'].iat[i]}: "
                         f"{df['duration'].iat[i]!r} is not a duration; expected h:min:s.ms")
    df["kind"] = [_kind(v) for v in df["mode"]]
    df["result"] = df["result"].astype(str).str.strip()
    return df


# --------------------------------------------------------------------------- structure


@dataclass
class _Workstep:
    """One parsed workstep layer: calibration, SOC loops and the accumulated charge."""

    name: WorkstepName
    steps: pd.DataFrame
    q_ah: float
    loops: dict[int, dict[int, int]]  # loop -> position -> row index into steps
    loop_problems: dict[int, list[str]]
    charge_ah: np.ndarray  # net charge since the calibration, after each row
    charge_known_until: int  # loops below this have every step, so the charge is complete
    first_program_step: int  # program step number (步次) of position 0 of every SOC loop
    charge_gap: str  # why soc_measured is unknown after some loop ("" if it is not)
    notes: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # steps as dicts, for fast row access

    def __post_init__(self) -> None:
        self.records = self.steps.to_dict("records")

    @property
    def source(self) -> str:
        return self.name.file


def _row_desc(row: dict) -> str:
    return (f"{row['mode']} ({row['kind']}) at {row['i_end_a']:g} A for {row['duration_s']:g} s, "
            f"result {row['result']}")


def _calibration(steps: pd.DataFrame, name: WorkstepName) -> tuple[float, int]:
    """Calibrated capacity (Ah) and the last calibration program step; ``ValueError`` if malformed."""
    source = name.file
    calib = steps[steps["loop"] == 0]
    kinds = tuple(calib["kind"])
    if kinds != CALIBRATION or list(calib.index) != list(range(len(CALIBRATION))):
        rows = f"sheet rows {calib['sheet_row'].min()}-{calib['sheet_row'].max()}" if len(calib) else "no rows"
        raise ValueError(f"{source}: calibration ({_CHINESE['loop']} 0, {rows}) has the steps {list(kinds)}; expected "
                         f"the first {len(CALIBRATION)} rows to be {list(CALIBRATION)} (rest, CCCV charge, rest, "
                         "CC discharge, rest)")
    dis = calib.iloc[3]
    want = -name.qn_ah
    if abs(dis["i_end_a"] - want) > CURRENT_RTOL * abs(want) or not dis["q_discharge_ah"] < 0:
        raise ValueError(f"{source}: row {dis['sheet_row']}: calibration discharge is {_row_desc(dis)} with "
                         f"{dis['q_discharge_ah']:g} Ah; expected a 1 C CC discharge ({want:g} A) with a negative "
                         f"{_CHINESE['q_discharge_ah']}")
    return float(-dis["q_discharge_ah"]), int(calib["program_step"].iloc[-1])


def _loops(steps: pd.DataFrame, first_program_step: int) -> tuple[dict[int, dict[int, int]], dict[int, list[str]]]:
    """Map each SOC loop's program steps to protocol positions; note duplicates and strangers."""
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


def _parse(path: str | os.PathLike) -> _Workstep:
    name = parse_name(path)
    if name.part != 1:
        raise ValueError(f"{name.file}: part {name.part} of a {name.parts}-part raw export holds record layers only; "
                         f"the workstep layer is in Part_1-{name.parts}")
    steps = read_workstep(path)
    q_ah, last_calib = _calibration(steps, name)
    loops, problems = _loops(steps, last_calib + 1)
    after = (steps["loop"] > 0).to_numpy()
    charge = np.cumsum(np.where(after, steps["q_total_ah"].to_numpy(), 0.0))
    known = 1
    while known in loops and not problems[known] and len(loops[known]) == LEVEL_STEPS:
        known += 1
    gap = ""
    if loops and known < max(loops):
        lacking = "is missing" if known not in loops else (
            f"lacks {LEVEL_STEPS - len(loops[known])} of its {LEVEL_STEPS} steps" if not problems[known]
            else "has unexpected steps")
        gap = (f"SOC loop {known} ({name.soc_lo + SOC_GRAIN_PCT * (known - 1)} %) {lacking}, so the charge "
               "accumulated after it is unknown: soc_measured is NaN from there on")
    planned = name.soc_loop(name.soc_hi)
    notes = []
    if loops and max(loops) > planned:
        notes.append(f"the file has {max(loops)} SOC loops, more than the {planned} its name plans "
                     f"({name.soc_lo}-{name.soc_hi} %); loops above {planned} are ignored")
    return _Workstep(name, steps, q_ah, loops, problems, charge, known, last_calib + 1, gap, notes)


def _check(row: dict, exp: Expected, qn_ah: float) -> tuple[str, str]:
    """Compare one step with the protocol: ("ok"|"truncated"|"bad", message)."""
    where = f"row {row['sheet_row']} (program step {row['program_step']})"
    if row["kind"] != exp.kind:
        return "bad", f"{where} is {_row_desc(row)}; expected {exp.what} ({exp.kind})"
    want_i = exp.c_rate * qn_ah
    if exp.kind == "rest":
        if max(abs(row["i_start_a"]), abs(row["i_end_a"])) > REST_ATOL_C * qn_ah:
            return "bad", f"{where}: rest carries {row['i_end_a']:g} A; expected 0 A ({exp.what})"
    elif abs(row["i_end_a"] - want_i) > CURRENT_RTOL * abs(want_i):
        return "bad", f"{where}: current {row['i_end_a']:g} A; expected {want_i:g} A ({exp.what})"
    d = row["duration_s"]
    on_time = abs(d - exp.duration_s) <= DURATION_RTOL * exp.duration_s + DURATION_ATOL_S
    if exp.kind != "rest" and (row["result"] != COMPLETED or d < exp.duration_s and not on_time):
        # the tester jumps to the next step when the protection voltage is reached
        return "truncated", (f"{where}: {exp.what} ended by the voltage protection at {row['u_end_v']:g} V "
                             f"after {d:g} s (result {row['result']})")
    if on_time:
        return "ok", ""
    return "bad", f"{where} lasted {d:g} s; expected {exp.duration_s:g} s ({exp.what})"


@dataclass
class _Level:
    values: dict[int, float]  # feature n -> volts
    rows: list[int]  # row indices used, U1 step first
    problems: list[str]
    truncated: list[str]
    soc_measured: float


def _level(ws: _Workstep, loop: int, width_index: int, features: Sequence[int]) -> _Level:
    """Read the features of one SOC loop and pulse width, checking every step they depend on."""
    pos_of = ws.loops.get(loop, {})
    first, _ = feature_position(1, width_index)
    last = max(feature_position(n, width_index)[0] for n in features)
    problems = list(ws.loop_problems.get(loop, []))
    truncated = []
    for pos in range(last + 1):
        exp = _PROTOCOL[pos]
        if pos not in pos_of:
            rows = [ws.records[i]["sheet_row"] for p, i in pos_of.items() if p < pos][-1:]
            after = f" after row {rows[0]}" if rows else ""
            problems.append(f"program step {pos + ws.first_program_step} ({exp.what}) is missing{after}")
            continue
        status, msg = _check(ws.records[pos_of[pos]], exp, ws.name.qn_ah)
        if status == "bad":
            problems.append(msg)
        elif status == "truncated" and pos >= first:
            truncated.append(msg)
    if len(problems) > MAX_LISTED:
        problems = problems[:MAX_LISTED] + [f"and {len(problems) - MAX_LISTED} more unexpected steps"]
    if problems:
        return _Level({}, [], problems, truncated, float("nan"))
    values = {}
    lo, hi = VOLTAGE_RANGE_V
    for n in features:
        pos, col = feature_position(n, width_index)
        v = float(ws.records[pos_of[pos]][col])
        if not lo <= v <= hi:
            problems.append(f"U{n} = {v!r} V (row {ws.records[pos_of[pos]]['sheet_row']}, {_CHINESE[col]}) is "
                            f"outside {lo}-{hi} V")
        values[n] = v
    u1_row = pos_of[first]
    soc = ws.charge_ah[u1_row] / ws.q_ah if loop < ws.charge_known_until or (
        loop == ws.charge_known_until and all(p in pos_of for p in range(first + 1))) else float("nan")
    return _Level(values, [pos_of[p] for p in range(first, last + 1)], problems, truncated, soc)


# --------------------------------------------------------------------------- arguments


def _width_index(pulse_width_s: float) -> int:
    for i, w in enumerate(PULSE_WIDTHS_S):
        if abs(float(pulse_width_s) - w) < 1e-9:
            return i
    raise ValueError(f"pulse_width_s={pulse_width_s!r} is not a PulseBat pulse width; expected one of {list(PULSE_WIDTHS_S)} s")


def _features(features: Iterable[int]) -> list[int]:
    out = [int(n) for n in features]
    if not out or any(not 1 <= n <= MAX_FEATURE for n in out) or len(set(out)) != len(out):
        raise ValueError(f"features={list(features)!r}: expected distinct integers within 1..{MAX_FEATURE} (U1..U{MAX_FEATURE})")
    return out


def _socs(socs: Iterable[float]) -> list[int]:
    values = list(socs)
    out = []
    for s in values:
        if not (isinstance(s, (int, float, np.integer, np.floating)) and float(s) == round(float(s))
                and 0 < round(float(s)) <= 100 and round(float(s)) % SOC_GRAIN_PCT == 0):
            raise ValueError(f"socs={values!r}: SOC levels are percent, multiples of {SOC_GRAIN_PCT} within 5-100 "
                             f"(e.g. 5, 10, ..., 50); got {s!r}")
        out.append(int(round(float(s))))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"socs={values!r}: expected distinct SOC levels")
    return out


# --------------------------------------------------------------------------- public API


def _report(messages: list[str], source: str, text: str) -> None:
    text = text.replace(f"skipped: {source}: ", "skipped: ")  # an error message that names the file already
    messages.append(f"{source}: {text}")
    warnings.warn(f"{source}: {text}", ExtractionWarning, stacklevel=3)


def _columns(features: Sequence[int]) -> list[str]:
    return [c for c in SCHEMA if not re.fullmatch(r"U\d+", c)] + [f"U{n}" for n in features] + ["soc_measured"]


def extract(
    path: str | os.PathLike,
    socs: Iterable[float] = DEFAULT_SOCS,
    pulse_width_s: float = 5,
    features: Iterable[int] = range(1, 22),
    *,
    drop_truncated: bool = False,
) -> pd.DataFrame:
    """Extract pulse features from one workstep-layer file.

    Parameters
    ----------
    path: a ``mat_C_cap_B_no_SOC_lo-hi_Part_1-j_ID_id.xlsx`` file holding the workstep layer
        (sheet ``工步层`` of a raw export, or the single sheet of an extracted one).
    socs: SOC levels in percent (multiples of 5); levels outside the file's plan are reported.
    pulse_width_s: one of :data:`PULSE_WIDTHS_S` (the paper: 5 s).
    features: feature numbers n of U1..U41 (the paper: 1..21).
    drop_truncated: drop SOC levels whose features come from a pulse cut short by the voltage
        protection (default: keep them, as the published PulseBat features do).

    Returns the columns of :data:`battgen.data.SCHEMA` (with ``U{n}`` for the requested
    features) plus ``soc_measured`` (net charge since the calibration discharge at U1 divided
    by the calibrated capacity; NaN when a step before it is missing), one row per SOC level,
    in the order requested. ``attrs["report"]`` lists dropped levels and truncated pulses (each
    also issued as :class:`ExtractionWarning`). Raises ``ValueError`` for a file that breaks the
    name convention, is not a workstep layer, lacks a column or has a malformed calibration.
    """
    socs_pct, width_index, feats = _socs(socs), _width_index(pulse_width_s), _features(features)
    ws = _parse(path)
    name, source = ws.name, ws.source
    report: list[str] = []
    for note in ws.notes:
        _report(report, source, note)
    records = []
    for soc in socs_pct:
        loop = name.soc_loop(soc)
        if not name.soc_lo <= soc <= name.soc_hi:
            _report(report, source, f"SOC {soc} % skipped: outside the planned range {name.soc_lo}-{name.soc_hi} % of this battery")
            continue
        if loop not in ws.loops:
            done = max(ws.loops, default=0)
            why = (f"the test ends in SOC loop {done}, {name.soc_lo + SOC_GRAIN_PCT * (done - 1)} %" if loop > done
                   else f"SOC loop {loop} is absent")
            _report(report, source, f"SOC {soc} % skipped: not in the file ({why})")
            continue
        level = _level(ws, loop, width_index, feats)
        if level.problems:
            _report(report, source, f"SOC {soc} % dropped: {'; '.join(level.problems)}")
            continue
        for msg in level.truncated:
            _report(report, source, f"SOC {soc} % {'dropped' if drop_truncated else 'kept'}, "
                                    f"{PULSE_WIDTHS_S[width_index]:g} s features include a shortened pulse: {msg}")
        if level.truncated and drop_truncated:
            continue
        records.append(_record(ws, soc, PULSE_WIDTHS_S[width_index], level, feats))
    if ws.charge_gap and any(np.isnan(r["soc_measured"]) for r in records):
        _report(report, source, ws.charge_gap)
    out = pd.DataFrame(records, columns=_columns(feats))
    out = out.astype({c: float for c in out.columns if c not in ("battery", "cathode", "cell", "battery_id")})
    out.attrs["report"] = report
    return out


def _record(ws: _Workstep, soc: int, width: float, level: _Level, feats: Sequence[int]) -> dict:
    name = ws.name
    rec = {
        "battery": name.battery,
        "cathode": name.cathode,
        "cell": name.cell,
        "battery_id": name.battery_id,
        "qn_ah": name.qn_ah,
        "q_ah": ws.q_ah,
        "soh": ws.q_ah / name.qn_ah,
        "pulse_width_s": float(width),
        "soc": round(soc / 100.0, 4),
    }
    rec.update({f"U{n}": level.values[n] for n in feats})
    rec["soc_measured"] = level.soc_measured
    return rec


def pulse_points(
    path: str | os.PathLike,
    soc: float,
    pulse_width_s: float = 5,
    features: Iterable[int] = range(1, 22),
) -> pd.DataFrame:
    """The workstep rows behind the features of one SOC level and pulse width, for plotting.

    One row per step, from the rest before the pulse group (its end voltage is U1) to the last
    step a requested feature needs (for U1..U21: 11 steps). Columns: ``step`` (the tester's
    running step number 工步序号), ``program_step`` (步次), ``sheet_row``, ``kind``
    (rest/charge/discharge), ``amplitude_c`` (signed), ``current_a`` (end current),
    ``duration_s``, ``t_start_s``/``t_end_s`` (seconds from the start of the first pulse),
    ``u_start_v``/``u_end_v``, ``u_start_label``/``u_end_label`` (``"U2"``... or ``""``) and
    ``truncated`` (pulse cut short by the voltage protection). Raises ``ValueError`` if a step
    is missing or unexpected.
    """
    (soc_pct,), width_index, feats = _socs([soc]), _width_index(pulse_width_s), _features(features)
    ws = _parse(path)
    name = ws.name
    loop = name.soc_loop(soc_pct)
    if not name.soc_lo <= soc_pct <= name.soc_hi or loop not in ws.loops:
        raise ValueError(f"{ws.source}: SOC {soc_pct} % is not in the file (planned {name.soc_lo}-{name.soc_hi} %, "
                         f"{len(ws.loops)} SOC loops recorded)")
    level = _level(ws, loop, width_index, feats)
    if level.problems:
        raise ValueError(f"{ws.source}: SOC {soc_pct} %: {'; '.join(level.problems)}")
    for msg in level.truncated:
        warnings.warn(f"{ws.source}: SOC {soc_pct} %: {msg}", ExtractionWarning, stacklevel=2)
    first, _ = feature_position(1, width_index)
    labels: dict[tuple[int, str], str] = {}
    for n in feats:
        labels[feature_position(n, width_index)] = f"U{n}"
    rows = ws.steps.loc[level.rows].reset_index(drop=True)
    positions = range(first, first + len(rows))
    durations = rows["duration_s"].to_numpy()
    t_end = np.cumsum(durations) - durations[0]
    out = pd.DataFrame({
        "step": rows["step_no"].to_numpy(),
        "program_step": rows["program_step"].to_numpy(),
        "sheet_row": rows["sheet_row"].to_numpy(),
        "kind": rows["kind"].to_numpy(),
        "amplitude_c": [_PROTOCOL[p].c_rate for p in positions],
        "current_a": rows["i_end_a"].to_numpy(),
        "duration_s": durations,
        "t_start_s": t_end - durations,
        "t_end_s": t_end,
        "u_start_v": rows["u_start_v"].to_numpy(),
        "u_end_v": rows["u_end_v"].to_numpy(),
        "u_start_label": [labels.get((p, "u_start_v"), "") for p in positions],
        "u_end_label": [labels.get((p, "u_end_v"), "") for p in positions],
        "truncated": [_check(ws.records[i], _PROTOCOL[p], name.qn_ah)[0] == "truncated"
                      for p, i in zip(positions, level.rows)],
    })
    out.attrs.update(source=ws.source, soc=soc_pct / 100.0, pulse_width_s=float(PULSE_WIDTHS_S[width_index]))
    return out


def _sort_key(path: Path) -> tuple:
    try:
        n = parse_name(path)
        return (0, n.cathode, n.qn_ah, n.number, n.battery_id, n.part, path.name)
    except ValueError:
        return (1, "", 0.0, 0, "", 0, path.name)


def extract_dir(
    folder: str | os.PathLike,
    socs: Iterable[float] = DEFAULT_SOCS,
    pulse_width_s: float = 5,
    features: Iterable[int] = range(1, 22),
    progress: bool | None = None,
    *,
    drop_truncated: bool = False,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Extract the features of every workstep file (``*.xlsx``) in ``folder`` into one table.

    Files are taken in (cathode, capacity, number) order; Office lock files (``~$...``) are
    ignored. Of a two-part raw export only ``Part_1-2`` is read: the PulseBat README puts the
    workstep layer in part 1 and only record layers in part 2, which is skipped (and reported
    if its part 1 is absent). ``on_error="raise"`` (default) stops at the first file that breaks
    the name convention or cannot be read, before anything is returned; ``"warn"`` reports and
    skips such files. ``progress`` switches the tqdm bar (default: :func:`battgen.io.progress_enabled`).
    Returns the rows of :func:`extract` concatenated; ``attrs["report"]`` collects every report.
    """
    if on_error not in ("raise", "warn"):
        raise ValueError(f"on_error={on_error!r}: expected 'raise' or 'warn'")
    socs_pct, _, feats = _socs(socs), _width_index(pulse_width_s), _features(features)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; expected a folder of workstep .xlsx files")
    files = sorted((p for p in folder.glob("*.xlsx") if not p.name.startswith("~$")), key=_sort_key)
    if not files:
        raise ValueError(f"{folder}: no workstep files (*.xlsx)")
    report: list[str] = []
    todo = _plan(files, report, on_error)
    frames = []
    from tqdm.auto import tqdm

    for path in tqdm(todo, desc="extract features", unit="file", disable=not progress_enabled(progress)):
        try:
            df = extract(path, socs_pct, pulse_width_s, feats, drop_truncated=drop_truncated)
        except ValueError as exc:
            if on_error == "raise":
                raise
            _report(report, path.name, f"skipped: {exc}")
            continue
        report.extend(df.attrs.get("report", []))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else extract_empty(feats)
    out.attrs["report"] = report
    return out


def extract_empty(features: Iterable[int] = range(1, 22)) -> pd.DataFrame:
    """An empty table with the columns :func:`extract` returns."""
    return pd.DataFrame(columns=_columns(_features(features)))


def _plan(files: list[Path], report: list[str], on_error: str) -> list[Path]:
    """Check every name up front; keep part 1 of each export."""
    names = {}
    for path in files:
        try:
            names[path] = parse_name(path)
        except ValueError as exc:
            if on_error == "raise":
                raise
            _report(report, path.name, f"skipped: {exc}")
    firsts = {(n.cathode, n.qn_ah, n.number, n.battery_id) for n in names.values() if n.part == 1}
    todo = []
    for path, n in names.items():
        if n.part == 1:
            todo.append(path)
        elif (n.cathode, n.qn_ah, n.number, n.battery_id) in firsts:
            report.append(f"{path.name}: skipped: part {n.part} of {n.parts} holds record layers only; "
                          f"the workstep layer is read from Part_1-{n.parts}")
        else:
            _report(report, path.name, f"skipped: part {n.part} of {n.parts} holds record layers only and its "
                                       f"Part_1-{n.parts} (with the workstep layer) is not in the folder")
    return todo
