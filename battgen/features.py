"""Pulse features U1..U41 extracted from PulseBat workstep-layer files.

The battery tester exports, per battery, a workbook whose *workstep layer* holds one row per
executed program step (read by :func:`battgen.workstep.read_workstep`). The PulseBat test
program (:mod:`battgen.protocol`, from the README of the PulseBat dataset) is:

1. **Calibration** (循环步骤号 0, program steps 1-5, :data:`~battgen.protocol.CALIBRATION`):
   rest, 1 C CCCV charge, rest, 1 C CC discharge to the lower cut-off, rest. The discharged
   capacity is the calibrated capacity ``q_ah``; ``soh = q_ah / qn_ah``.
2. **Per SOC level** (循环步骤号 1, 2, ...; 5 % of nominal capacity apart): a 1 C charge for
   3 min and a 10 min rest (*conditioning*), then for each of 10 pulse widths
   (:data:`~battgen.protocol.PULSE_WIDTHS_S`) and 5 amplitudes
   (:data:`~battgen.protocol.AMPLITUDES_C`) four steps: +pulse, rest, -pulse, rest (rest = 15 x
   pulse width). 202 program steps per level (:data:`~battgen.protocol.LEVEL_PROGRAM`).

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

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from battgen.data import SCHEMA, VOLTAGE_RANGE_V
from battgen.io import progress_bar
from battgen.protocol import (
    ALL_SOC,
    CONDITIONING_STEPS,
    LEVEL_PROGRAM,
    LEVEL_STEPS,
    PULSE_WIDTHS_S,
    SOC_STEP_PCT,
    WIDTH_STEPS,
    ProgramStep,
)
from battgen.workstep import (
    COMPLETED,
    CURRENT_RTOL,
    HEADERS,
    WorkstepName,
    calibration,
    describe_step,
    loop_positions,
    parse_name,
    read_workstep,
)

__all__ = [
    "ExtractionWarning",
    "extract",
    "extract_dir",
    "extract_empty",
    "feature_position",
    "pulse_points",
]

# --------------------------------------------------------------------------- tolerances

MAX_FEATURE = 1 + 2 * WIDTH_STEPS  # U41: the rest before a pulse group, then start and end of its 20 steps
REST_ATOL_C = 0.01  # |current| in a rest, in C
DURATION_RTOL, DURATION_ATOL_S = 0.01, 0.005
MAX_LISTED = 3  # problems listed per dropped SOC level
_RECORD_COLUMNS = ("sheet_row", "program_step", "mode", "kind", "result", "u_start_v", "u_end_v", "i_start_a",
                   "i_end_a", "duration_s")  # what the step checks and feature values read from a row


class ExtractionWarning(UserWarning):
    """An SOC level was dropped or holds a pulse cut short by the tester's voltage protection."""


def feature_position(n: int, width_index: int) -> tuple[int, str]:
    """Position within an SOC loop and voltage (``"u_start_v"``/``"u_end_v"``) behind ``U{n}``."""
    u1 = CONDITIONING_STEPS - 1 + WIDTH_STEPS * width_index  # the rest before the pulse group
    if n == 1:
        return u1, "u_end_v"
    return u1 + n // 2, ("u_start_v" if n % 2 == 0 else "u_end_v")


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
    blank_rows: frozenset[int] = frozenset()  # sheet rows left blank between steps (skipped)

    def __post_init__(self) -> None:
        self.records = self.steps[list(_RECORD_COLUMNS)].to_dict("records")

    @property
    def source(self) -> str:
        return self.name.file


def _parse(path: str | os.PathLike) -> _Workstep:
    name = parse_name(path)
    if name.part != 1:
        raise ValueError(f"{name.file}: part {name.part} of a {name.parts}-part raw export holds record layers only; "
                         f"the workstep layer is in Part_1-{name.parts}")
    steps = read_workstep(path)
    q_ah, last_calib = calibration(steps, name)
    loops, problems = loop_positions(steps, last_calib + 1)
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
        gap = (f"SOC loop {known} ({name.loop_soc(known)} %) {lacking}, so the charge "
               "accumulated after it is unknown: soc_measured is NaN from there on")
    planned = name.soc_loop(name.soc_hi)
    blank = steps.attrs.get("blank_rows", [])
    notes = [f"row{'s' if len(blank) > 1 else ''} {', '.join(map(str, blank))} {'are' if len(blank) > 1 else 'is'} "
             "blank and skipped"] if blank else []
    if loops and max(loops) > planned:
        notes.append(f"the file has {max(loops)} SOC loops, more than the {planned} its name plans "
                     f"({name.soc_lo}-{name.soc_hi} %); loops above {planned} are ignored")
    return _Workstep(name, steps, q_ah, loops, problems, charge, known, last_calib + 1, gap, notes,
                     blank_rows=frozenset(blank))


def _check(row: dict, exp: ProgramStep, qn_ah: float) -> tuple[str, str]:
    """Compare one step with the protocol: ("ok"|"truncated"|"bad", message)."""
    where = f"row {row['sheet_row']} (program step {row['program_step']})"
    if row["kind"] != exp.kind:
        return "bad", f"{where} is {describe_step(row)}; expected {exp.what} ({exp.kind})"
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
    """Read the features of one SOC loop and pulse width, checking every step they depend on.

    Those are the steps of the pulse width's own group, from the rest before it (U1) to the last
    requested feature: a step lost from another pulse width's group does not drop this one.
    """
    pos_of = ws.loops.get(loop, {})
    first, _ = feature_position(1, width_index)
    last = max(feature_position(n, width_index)[0] for n in features)
    problems = list(ws.loop_problems.get(loop, []))
    truncated = []
    for pos in range(first, last + 1):
        exp = LEVEL_PROGRAM[pos]
        if pos not in pos_of:
            rows = [ws.records[i]["sheet_row"] for p, i in pos_of.items() if p < pos][-1:]
            after = f" after row {rows[0]}" if rows else ""
            if rows and rows[0] + 1 in ws.blank_rows:
                after += f" (row {rows[0] + 1} is blank)"
            problems.append(f"program step {pos + ws.first_program_step} ({exp.what}) is missing{after}")
            continue
        status, msg = _check(ws.records[pos_of[pos]], exp, ws.name.qn_ah)
        if status == "bad":
            problems.append(msg)
        elif status == "truncated":
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
            problems.append(f"U{n} = {v!r} V (row {ws.records[pos_of[pos]]['sheet_row']}, {HEADERS[col]}) is "
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
                and 0 < round(float(s)) <= 100 and round(float(s)) % SOC_STEP_PCT == 0):
            raise ValueError(f"socs={values!r}: SOC levels are percent, multiples of {SOC_STEP_PCT} within 5-100 "
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
    socs: Iterable[float] = ALL_SOC,
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
    pulse_width_s: one of :data:`battgen.protocol.PULSE_WIDTHS_S` (the paper: 5 s).
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
            why = (f"the test ends in SOC loop {done}, {name.loop_soc(done)} %" if loop > done
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
        "amplitude_c": [LEVEL_PROGRAM[p].c_rate for p in positions],
        "current_a": rows["i_end_a"].to_numpy(),
        "duration_s": durations,
        "t_start_s": t_end - durations,
        "t_end_s": t_end,
        "u_start_v": rows["u_start_v"].to_numpy(),
        "u_end_v": rows["u_end_v"].to_numpy(),
        "u_start_label": [labels.get((p, "u_start_v"), "") for p in positions],
        "u_end_label": [labels.get((p, "u_end_v"), "") for p in positions],
        "truncated": [_check(ws.records[i], LEVEL_PROGRAM[p], name.qn_ah)[0] == "truncated"
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
    socs: Iterable[float] = ALL_SOC,
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
    for path in progress_bar(todo, progress=progress, desc="extract features", unit="file"):
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
