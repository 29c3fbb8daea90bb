"""SOC-invariant, physics-informed features computed from the pulse voltages U1..U21 alone.

What U1..U21 are (:func:`battgen.features.feature_position`, :data:`battgen.protocol.LEVEL_PROGRAM`):
for one SOC level and pulse width, ``U1`` is the voltage at the end of the rest before the pulse
group (close to the open-circuit voltage, OCV) and ``U(2m)`` / ``U(2m+1)`` are the start and end
voltages of the m-th step of the group (:func:`battgen.protocol.pulse_group`: per amplitude of
:data:`~battgen.protocol.AMPLITUDES_C` a +pulse, a rest, a -pulse and a rest). The voltage just
before step m is the end of step m - 1, ``U(2m-1)`` (``U1`` for m = 1). With U1..U21, steps 1..10:

====  ==================  ===============  ============  =====================
step  what                before (V)       start, end    rest after: start, end
====  ==================  ===============  ============  =====================
1     +0.5 C pulse        U1               U2, U3        U4, U5
3     -0.5 C pulse        U5               U6, U7        U8, U9
5     +1 C pulse          U9               U10, U11      U12, U13
7     -1 C pulse          U13              U14, U15      U16, U17
9     +1.5 C pulse        U17              U18, U19      U20, U21
====  ==================  ===============  ============  =====================

Per pulse of current ``I = c_rate x Q_nominal`` (A) and sign ``s`` (+1 charge, -1 discharge),
with ``V_before``, ``V_start``, ``V_end`` and ``V_rest`` (start of the following rest):

- ``r_ohm``   = s (V_start - V_before) / I: the instantaneous (ohmic) step at current onset;
- ``r_pulse`` = s (V_end - V_before) / I: the total resistance over the pulse width;
- ``r_polar`` = s (V_end - V_start) / I: the polarisation (charge transfer, diffusion) built up
  during the pulse, ``r_pulse - r_ohm``;
- ``r_off``   = s (V_end - V_rest) / I: the instantaneous step back at current interruption.

The OCV, which carries the SOC, cancels in every difference; what is left is the battery's
impedance, which grows with ageing and changes much less with SOC in the middle of the range.
``relaxation_differences`` keeps every ``U_k - U1`` (V): the pulse relative to its own rest
voltage. At a fixed C-rate the current scales with the capacity, so ``r x Q_nominal`` (ohm Ah,
i.e. volts per C) is comparable between battery designs of different size (``specific=True``).
:func:`variance_shares` splits each feature's variance into the shares explained by SOC and by
SOH (the decomposition of chapter 01).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from battgen.data import BATTERIES, FEATURES, battery_type
from battgen.protocol import PULSE_WIDTHS_S, pulse_group

__all__ = [
    "RESISTANCE_KINDS",
    "Pulse",
    "pulses",
    "pulse_resistances",
    "relaxation_differences",
    "invariant_features",
    "nominal_capacity",
    "synthetic_pulses",
    "variance_shares",
]

RESISTANCE_KINDS = ("ohm", "pulse", "polar", "off")
"""The four resistances of every pulse (see the module docstring)."""


@dataclass(frozen=True)
class Pulse:
    """One current pulse of the group behind U1..Un, and which voltages bound it."""

    step: int  # m: position within the pulse group (1-based)
    c_rate: float  # signed: > 0 charge, < 0 discharge
    before: str  # "U(2m-1)": voltage just before the pulse
    start: str  # "U(2m)"
    end: str  # "U(2m+1)"
    rest: str | None  # "U(2m+2)": start of the rest after it, None beyond the last feature

    @property
    def direction(self) -> str:
        return "charge" if self.c_rate > 0 else "discharge"

    def name(self, kind: str) -> str:
        """Column name, e.g. ``r_ohm_charge_0.5C``."""
        return f"r_{kind}_{self.direction}_{abs(self.c_rate):g}C"


def pulses(n_features: int = len(FEATURES)) -> tuple[Pulse, ...]:
    """The pulses whose start and end voltages lie within U1..U``n_features``, from the protocol."""
    out = []
    for m, step in enumerate(pulse_group(PULSE_WIDTHS_S[-1]), start=1):  # the step pattern is the same for every width
        if step.kind == "rest" or 2 * m + 1 > n_features:
            continue
        rest = f"U{2 * m + 2}" if 2 * m + 2 <= n_features else None
        out.append(Pulse(m, step.c_rate, f"U{2 * m - 1}", f"U{2 * m}", f"U{2 * m + 1}", rest))
    return tuple(out)


def nominal_capacity(df: pd.DataFrame, qn_ah: float | None = None) -> np.ndarray:
    """Nominal capacity (Ah) of every row: ``qn_ah`` if given, else the ``qn_ah`` column, else the
    registry's value for the ``battery`` column (:data:`battgen.data.BATTERIES`)."""
    if qn_ah is not None:
        if not np.isfinite(qn_ah) or qn_ah <= 0:
            raise ValueError(f"qn_ah must be a positive number of Ah, got {qn_ah!r}")
        return np.full(len(df), float(qn_ah))
    if "qn_ah" in df.columns:
        return df["qn_ah"].to_numpy(float)
    if "battery" in df.columns:
        return np.array([battery_type(b).nominal_ah for b in df["battery"]], dtype=float)
    raise ValueError(f"the nominal capacity is unknown: pass qn_ah= or a 'qn_ah' or 'battery' column "
                     f"(one of {sorted(BATTERIES)})")


def pulse_resistances(df: pd.DataFrame, qn_ah: float | None = None, *, specific: bool = False) -> pd.DataFrame:
    """The four resistances of every pulse within U1..U21, one column each (see the module docstring).

    Units: milliohm (``dU / I`` with ``I = |C-rate| x Q_nominal`` in A; ``Q_nominal`` from
    :func:`nominal_capacity`), or with ``specific=True`` ohm x Ah (``dU / |C-rate|``, volts per C),
    which does not depend on the battery's size. ``r_off`` is left out for a pulse whose following
    rest lies beyond U21. Rows and index as ``df``.
    """
    U = {c: df[c].to_numpy(float) for c in FEATURES}
    scale = 1.0 if specific else 1e3 / nominal_capacity(df, qn_ah)  # (n,) or scalar
    cols: dict[str, np.ndarray] = {}
    for p in pulses():
        s, per_c = np.sign(p.c_rate), scale / abs(p.c_rate)
        cols[p.name("ohm")] = s * (U[p.start] - U[p.before]) * per_c
        cols[p.name("pulse")] = s * (U[p.end] - U[p.before]) * per_c
        cols[p.name("polar")] = s * (U[p.end] - U[p.start]) * per_c
        if p.rest is not None:
            cols[p.name("off")] = s * (U[p.end] - U[p.rest]) * per_c
    return pd.DataFrame(cols, index=df.index)


def relaxation_differences(df: pd.DataFrame) -> pd.DataFrame:
    """``dU{k} = U{k} - U1`` for k = 2..21, in volts: the pulse relative to its own rest voltage."""
    u1 = df["U1"].to_numpy(float)
    return pd.DataFrame({f"d{c}": df[c].to_numpy(float) - u1 for c in FEATURES[1:]}, index=df.index)


def invariant_features(df: pd.DataFrame, qn_ah: float | None = None, *, specific: bool = False) -> pd.DataFrame:
    """:func:`pulse_resistances` (mohm, or ohm Ah with ``specific``) beside :func:`relaxation_differences` (V)."""
    return pd.concat([pulse_resistances(df, qn_ah, specific=specific), relaxation_differences(df)], axis=1)


def synthetic_pulses(ocv_v: Sequence[float], r_ohm_mohm: Sequence[float], r_polar_mohm: Sequence[float],
                     qn_ah: float) -> pd.DataFrame:
    """U1..U21 (V) of an ideal cell: a series resistance ``r_ohm`` plus a polarisation ``r_polar``
    that builds up fully during each pulse and relaxes fully during each rest, around a constant OCV.

    For testing and illustration: :func:`pulse_resistances` of these rows returns ``r_ohm``,
    ``r_ohm + r_polar``, ``r_polar`` and ``r_ohm`` exactly (up to rounding). One row per value.
    """
    ocv = np.asarray(ocv_v, dtype=float)
    r0 = np.broadcast_to(np.asarray(r_ohm_mohm, dtype=float) * 1e-3, ocv.shape)
    r1 = np.broadcast_to(np.asarray(r_polar_mohm, dtype=float) * 1e-3, ocv.shape)
    cols = {"U1": ocv.copy()}
    v = ocv.copy()
    for m, step in enumerate(pulse_group(PULSE_WIDTHS_S[-1]), start=1):
        if 2 * m > len(FEATURES):
            break
        i = step.c_rate * qn_ah  # signed current, A
        if step.kind == "rest":  # starts after the ohmic step is gone, ends relaxed at the OCV
            start, v = ocv + (v - ocv) * r1 / np.where(r0 + r1 > 0, r0 + r1, 1.0), ocv
        else:
            start, v = ocv + i * r0, ocv + i * (r0 + r1)
        cols[f"U{2 * m}"] = start
        if 2 * m + 1 <= len(FEATURES):
            cols[f"U{2 * m + 1}"] = v.copy()
    return pd.DataFrame(cols)[FEATURES]


def variance_shares(df: pd.DataFrame, features: Sequence[str], *, by: str = "battery", soc: str = "soc",
                    soh: str = "soh") -> pd.DataFrame:
    """Per ``by`` group and feature: the share of its variance explained by SOC and by SOH.

    ``share_soc`` is eta^2 of the SOC level (between-level sum of squares over the total, within
    the group); ``share_soh`` is the squared Pearson correlation with SOH (variance explained
    linearly), as chapter 01 computes them for U1..U21. A SOC-invariant feature has a small
    ``share_soc``; a useful one a large ``share_soh``. Columns: ``by``, ``feature``,
    ``share_soc``, ``share_soh``; NaN for a feature that is constant in a group.
    """
    features = list(features)
    rows = []
    for key, g in df.groupby(by, sort=False):
        X = g[features].to_numpy(float)  # (n, f)
        centred = X - X.mean(axis=0)
        total = (centred ** 2).sum(axis=0)
        level_means = g.groupby(soc, sort=False)[features].transform("mean").to_numpy(float) - X.mean(axis=0)
        y = g[soh].to_numpy(float) - g[soh].mean()
        with np.errstate(invalid="ignore", divide="ignore"):
            eta2 = (level_means ** 2).sum(axis=0) / total
            r2 = (centred.T @ y) ** 2 / (total * (y ** 2).sum())
        rows += [{by: key, "feature": f, "share_soc": e, "share_soh": r} for f, e, r in zip(features, eta2, r2)]
    return pd.DataFrame(rows, columns=[by, "feature", "share_soc", "share_soh"])
