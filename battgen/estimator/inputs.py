"""What an estimator reads: pulse tables, and the battery design and pulse width they declare."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from battgen.data import FEATURES, battery_type, validate_features
from battgen.io import read_table

__all__ = ["DECLARED", "CUSTOM", "check_pulses", "read_pulses", "design_of", "declared_mismatches", "refuse_declared",
           "training_rows", "declared_design"]

DECLARED = ("battery", "pulse_width_s")
"""Columns by which rows declare their battery design and pulse width; a model records both."""
CUSTOM = "custom"
"""The recorded design or pulse width of training rows that declare none, or several."""


def check_pulses(df: pd.DataFrame, source: str = "input") -> None:
    """Raise ``ValueError`` naming the problem for pulses that cannot be read as U1..U21 in volts.

    Missing columns are all listed at once; a non-number, a missing value (NaN) or a voltage
    outside 1.5-5 V (millivolts?) is reported with its column and row (row 2 is the first data
    row of a CSV file, after the header).
    """
    missing = [c for c in FEATURES if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}; expected the 21 pulse voltages U1..U21 in volts")
    validate_features(df.reset_index(drop=True), source)


def read_pulses(path: str | os.PathLike, id_column: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a CSV (or records JSON) of pulses; return ``(ids, features)``.

    The file may be in the :mod:`battgen.data` schema or hold just U1..U21 (plus any id
    columns). ``ids`` holds ``id_column`` if given, else whichever of ``id``, ``battery_id``,
    ``cell`` exist, else the row number. ``features`` holds U1..U21 (floats) and, when the file
    has them, the declaring columns :data:`DECLARED` that :meth:`battgen.estimator.SOHEstimator.predict` checks.
    An empty, header-only, semicolon-separated or binary file (e.g. a workbook) is refused in
    one line by :func:`battgen.io.read_table`; the voltages are checked with :func:`check_pulses`.
    """
    path = Path(path)
    df = read_table(path, "the pulse voltages U1..U21 in volts, one row per pulse")
    check_pulses(df, str(path))
    if id_column is not None:
        if id_column not in df.columns:
            raise ValueError(f"{path}: id column {id_column!r} not found; columns are {list(df.columns)}")
        ids = df[[id_column]]
    else:
        cols = [c for c in ("id", "battery_id", "cell") if c in df.columns]
        ids = df[cols] if cols else pd.DataFrame({"row": np.arange(2, len(df) + 2)})
    X = df[FEATURES].astype(float).join(df[[c for c in DECLARED if c in df.columns]])
    return ids.reset_index(drop=True), X.reset_index(drop=True)


def _declared_value(col: str, value: Any) -> Any:
    """A declared battery as its design key (labels like "LMO 10 Ah" too), a pulse width as float seconds."""
    if col == "pulse_width_s":
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        return str(value).strip() if pd.isna(number) else float(number)
    try:
        return battery_type(str(value)).key
    except ValueError:
        return str(value).strip()


def design_of(df: pd.DataFrame) -> dict[str, Any]:
    """What training rows declare: one battery design key and one pulse width, else :data:`CUSTOM`."""
    design = {}
    for col in DECLARED:
        values = {_declared_value(col, v) for v in df[col].dropna()} if col in df.columns else set()
        design[col] = values.pop() if len(values) == 1 else CUSTOM
    return design


def declared_mismatches(df: pd.DataFrame, design: dict[str, Any]) -> pd.Series:
    """Per row (by position): ``""``, or why the row's declared battery / pulse width is not the model's.

    Rows that declare nothing (no such column, or an empty cell) and models whose design is
    :data:`CUSTOM` are not checked: only a declaration that contradicts the model counts.
    """
    why = pd.Series("", index=range(len(df)), dtype=object)
    for col in DECLARED:
        want = design.get(col, CUSTOM)
        if want == CUSTOM or col not in df.columns:
            continue
        for i, value in enumerate(df[col]):
            if pd.isna(value) or str(value).strip() == "":
                continue
            got = _declared_value(col, value)
            same = abs(got - want) < 1e-9 if isinstance(got, float) and isinstance(want, float) else got == want
            if not same:
                unit = " s" if col == "pulse_width_s" else ""
                text = f"column {col!r} declares {got:g}{unit}" if isinstance(got, float) else f"column {col!r} declares {got}"
                want_text = f"{want:g}{unit}" if isinstance(want, float) else want
                why.iat[i] = (why.iat[i] + "; " if why.iat[i] else "") + f"{text}, the model was trained on {want_text}"
    return why


def refuse_declared(df: pd.DataFrame, design: dict[str, Any], source: str = "input", hint: str = "") -> None:
    """``ValueError`` in one line (first row, count) if any row declares another battery design or pulse width."""
    why = declared_mismatches(df, design)
    bad = np.flatnonzero(why.to_numpy() != "")
    if len(bad):
        more = f" (and {len(bad) - 1} more row{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise ValueError(f"{source}: row {bad[0] + 2}: {why.iat[bad[0]]}{more}; refusing to estimate SOH of "
                         f"pulses from another battery design or pulse width{hint}")


def training_rows(data: str | os.PathLike | None, battery: str, pulse_width: int, data_dir: str | None = None,
                  soc: list[int] | None = None) -> tuple[pd.DataFrame, str]:
    """The measured rows to train on and where they come from (``battgen train``).

    ``data``: a CSV in the :mod:`battgen.data` schema (U1..U21 in volts, ``soc`` and ``soh`` as
    fractions, ``battery_id``; optionally ``cell`` and ``battery``), else PulseBat's ``battery`` file.
    ``soc``: the levels (%) to keep, each of which must have rows (default: every level the rows hold);
    the levels must be PulseBat's (5-50 % in steps of 5), the ones the estimator models.
    """
    from battgen.data import load_pulsebat
    from battgen.protocol import ALL_SOC, levels_text

    if data:
        df = read_table(data, "training rows in the battgen.data schema (U1..U21, soc, soh, battery_id)")
        source = str(data)
    else:
        df = load_pulsebat(battery, pulse_width, data_dir=data_dir)
        source = f"PulseBat {battery} ({pulse_width} s pulses)"
    for col, what in (("soc", "the state of charge as a fraction"), ("soh", "the state of health as a fraction")):
        if col not in df.columns:
            raise ValueError(f"{source}: column {col!r} is missing; expected {what}")
    fraction = pd.to_numeric(df["soc"], errors="coerce")
    if fraction.isna().any():
        raise ValueError(f"{source}: column 'soc', row {int(np.flatnonzero(fraction.isna())[0]) + 2}: not a number "
                         f"(expected a fraction)")
    socs = np.rint(fraction.to_numpy(float) * 100).astype(int)
    levels = sorted(set(soc or socs.tolist()))
    absent = [s for s in levels if s not in set(socs.tolist())]
    if absent:
        raise ValueError(f"{source}: no rows at SOC {levels_text(absent)} %; it has rows at {levels_text(sorted(set(socs.tolist())))} %")
    odd = [s for s in levels if s not in ALL_SOC]
    if odd:
        row = int(np.flatnonzero(np.isin(socs, odd))[0]) + 2
        raise ValueError(f"{source}: column 'soc', row {row}: level(s) {levels_text(odd)} %; battgen's estimator models the "
                         f"PulseBat levels {levels_text(ALL_SOC)} % (SOC as a fraction: 0.05, 0.10, ... 0.50)")
    return df[np.isin(socs, levels)], source


def declared_design(df: pd.DataFrame, source: str, name: str | None) -> str | None:
    """The design a model records from ``--design NAME`` (None: whatever the rows' ``battery`` column
    declares, else :data:`CUSTOM`); a name contradicting the rows' own ``battery`` column is refused."""
    if name is None:
        return None
    declared = design_of(df)["battery"]
    if "battery" in df.columns and declared != CUSTOM and declared != name:
        raise ValueError(f"--design {name}: {source} declares battery {declared} in its 'battery' column; the model "
                         f"records that (drop --design, or fix the column)")
    if "battery" in df.columns and declared == CUSTOM and df["battery"].notna().any():
        raise ValueError(f"--design {name}: {source} declares several batteries in its 'battery' column; one model is "
                         f"trained per design (split the file by design)")
    return name
