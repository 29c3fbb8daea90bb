"""One look for every figure of the book: a shared style, one colour per battery type, small helpers.

Nothing here saves a file: the chapters display their figures inline (end a plot cell with
``;``) and Jupyter Book embeds them. Typical use in a notebook::

    from battgen import plotting
    plotting.use_style()
    sns.histplot(data=df, x="soh", **plotting.hue_battery());

The pulse helpers draw the 21 pulse-response voltages U1..U21 on the time axis of the PulseBat
protocol (:mod:`battgen.protocol`): per SOC level and pulse width, pulses of 0.5, 1, 1.5, 2 and
2.5 C, each applied as +pulse, rest, -pulse, rest, with rests 15 times the pulse width. U1 is the
voltage at the end of the rest before the first pulse; U2k and U2k+1 are the start and end
voltages of the k-th step after it, so U1..U21 span the 0.5 C and 1 C pulse pairs and the +1.5 C
pulse with its rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from battgen.data import BATTERIES, FEATURES, battery_type
from battgen.protocol import pulse_group

__all__ = [
    "PALETTE",
    "SOC_CMAP",
    "SOH_CMAP",
    "STYLE",
    "battery_colors",
    "STEP_COLUMNS",
    "feature_schedule",
    "feature_steps",
    "hue_battery",
    "label",
    "labels",
    "plot_architecture",
    "plot_pulse_sequence",
    "relabel_legend",
    "turning_points",
    "use_style",
]

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), one per type;
# the two NMC designs share a hue family (blue / sky blue).
PALETTE: dict[str, str] = {
    "NMC2.1": "#0072B2",
    "LMO10": "#E69F00",
    "NMC21": "#56B4E9",
    "LFP35": "#009E73",
}
SOC_CMAP = "viridis"  # sequential: state of charge
SOH_CMAP = "magma"  # sequential: state of health

STYLE: dict[str, Any] = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "figure.autolayout": True,  # tight layout, which seaborn's figure-level plots also use
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "image.cmap": SOC_CMAP,
    "axes.prop_cycle": mpl.cycler(color=list(PALETTE.values())),
}


def use_style() -> None:
    """Apply the book's matplotlib style (seaborn plots follow it too)."""
    mpl.rcParams.update(STYLE)


def _key(battery: str) -> str:
    return battery_type(battery).key


def label(battery: str) -> str:
    """Display label of a battery type: ``label("LMO10") == "LMO 10 Ah"`` (labels and aliases accepted)."""
    return battery_type(battery).label


def labels(batteries: Sequence[str] | None = None) -> dict[str, str]:
    """``{key: label}`` for the given battery types (default: all four, in registry order)."""
    return {_key(b): label(b) for b in (batteries if batteries is not None else BATTERIES)}


def battery_colors(batteries: Sequence[str] | None = None) -> dict[str, str]:
    """``{key: colour}`` for the given battery types (default: all four, in registry order)."""
    return {_key(b): PALETTE[_key(b)] for b in (batteries if batteries is not None else BATTERIES)}


def hue_battery(batteries: Sequence[str] | None = None) -> dict[str, Any]:
    """Keyword arguments that colour a seaborn plot by the ``battery`` column, in registry order."""
    colors = battery_colors(batteries)
    return {"hue": "battery", "hue_order": list(colors), "palette": colors}


def relabel_legend(ax: plt.Axes, title: str | None = "Battery type") -> None:
    """Replace battery keys by their labels in an axes' legend (seaborn writes the keys)."""
    legend = ax.get_legend()
    if legend is None:
        return
    for text in legend.get_texts():
        if text.get_text() in BATTERIES:
            text.set_text(label(text.get_text()))
    if title is not None:
        legend.set_title(title)


# --------------------------------------------------------------------------- pulse sequence

STEP_COLUMNS = ["kind", "amplitude_c", "duration_s", "t_start_s", "t_end_s",
                "u_start_v", "u_end_v", "u_start_label", "u_end_label"]
"""Columns of a pulse step table; :func:`battgen.features.pulse_points` returns (a superset of) them."""


def feature_schedule(pulse_width_s: float = 5.0) -> pd.DataFrame:
    """The ten tester steps whose start and end voltages are U2..U21, as the protocol prescribes them.

    The steps are the first ten of :func:`battgen.protocol.pulse_group` for ``pulse_width_s``.

    Columns: ``step`` (1..10), ``kind`` (``"charge"``, ``"rest"``, ``"discharge"``),
    ``amplitude_c`` (signed C-rate, positive = charge), ``duration_s``, ``t_start_s`` and
    ``t_end_s`` (seconds since the start of the first pulse), ``u_start_label`` and
    ``u_end_label`` (the features read at the step's start and end).
    """
    if pulse_width_s <= 0:
        raise ValueError(f"pulse_width_s must be positive, got {pulse_width_s!r}")
    steps = pulse_group(pulse_width_s)[: (len(FEATURES) - 1) // 2]  # U2..U21: the first 10 steps
    out = pd.DataFrame([(s.kind, s.c_rate, s.duration_s) for s in steps], columns=["kind", "amplitude_c", "duration_s"])
    out.insert(0, "step", np.arange(1, len(out) + 1))
    out["t_end_s"] = out["duration_s"].cumsum()
    out["t_start_s"] = out["t_end_s"] - out["duration_s"]
    out["u_start_label"] = [f"U{2 * k + 2}" for k in range(len(out))]
    out["u_end_label"] = [f"U{2 * k + 3}" for k in range(len(out))]
    return out[["step", "kind", "amplitude_c", "duration_s", "t_start_s", "t_end_s", "u_start_label", "u_end_label"]]


def feature_steps(features: Mapping[str, float] | pd.Series, pulse_width_s: float = 5.0) -> pd.DataFrame:
    """U1..U21 of one sample as a pulse step table (columns :data:`STEP_COLUMNS`).

    The first row is the rest before the first pulse, of which only the end voltage (U1) is
    known (its start time and voltage are NaN); then the ten steps of :func:`feature_schedule`
    with their start and end voltages. This is the same layout as the tester rows that
    :func:`battgen.features.pulse_points` reads from a raw workstep file, so both can be drawn
    with :func:`plot_pulse_sequence`.
    """
    missing = [f for f in FEATURES if f not in features]
    if missing:
        raise KeyError(f"feature_steps needs U1..U21; missing {missing}")
    steps = feature_schedule(pulse_width_s).drop(columns="step")
    steps["u_start_v"] = [float(features[k]) for k in steps["u_start_label"]]
    steps["u_end_v"] = [float(features[k]) for k in steps["u_end_label"]]
    before = pd.DataFrame([{"kind": "rest", "amplitude_c": 0.0, "duration_s": np.nan, "t_start_s": np.nan,
                            "t_end_s": 0.0, "u_start_v": np.nan, "u_end_v": float(features["U1"]),
                            "u_start_label": "", "u_end_label": "U1"}])
    return pd.concat([before, steps], ignore_index=True)[STEP_COLUMNS]


def turning_points(steps: pd.DataFrame) -> pd.DataFrame:
    """The labelled voltages of a step table, in time order: ``feature``, ``t_s``, ``voltage_v``, ``edge``."""
    rows = []
    for step in steps.itertuples():
        for edge in ("start", "end"):
            name = getattr(step, f"u_{edge}_label")
            if isinstance(name, str) and name:
                rows.append((name, getattr(step, f"t_{edge}_s"), getattr(step, f"u_{edge}_v"), edge))
    return pd.DataFrame(rows, columns=["feature", "t_s", "voltage_v", "edge"])


def _compressed_axis(steps: pd.DataFrame, rest_scale: float):
    """A piecewise-linear x-scale that draws rests ``rest_scale`` times as long (tick labels stay true)."""
    known = steps.dropna(subset=["t_start_s", "t_end_s"])
    real = np.concatenate([[known["t_start_s"].iloc[0]], known["t_end_s"].to_numpy(float)])
    widths = np.where(known["kind"].eq("rest"), rest_scale, 1.0) * (known["t_end_s"] - known["t_start_s"]).to_numpy(float)
    shown = np.concatenate([[0.0], np.cumsum(widths)]) + real[0]

    def _map(x, src, dst):
        x = np.asarray(x, float)
        inside = np.interp(x, src, dst)
        return np.where(x < src[0], x - src[0] + dst[0], np.where(x > src[-1], x - src[-1] + dst[-1], inside))

    return (lambda t: _map(t, real, shown)), (lambda d: _map(d, shown, real))


def plot_pulse_sequence(
    steps: pd.DataFrame | Mapping[str, float],
    *,
    pulse_width_s: float = 5.0,
    rest_scale: float = 0.2,
    color: str | None = None,
    title: str | None = None,
    annotate: bool = True,
    axes: Sequence[plt.Axes] | None = None,
) -> plt.Figure:
    """Draw a pulse sequence: voltage with its labelled turning points (U1..), current below.

    ``steps`` is a step table (:func:`feature_steps`, or the tester rows of
    :func:`battgen.features.pulse_points`), or one sample's U1..U21 (converted with
    :func:`feature_steps`). Voltages between a step's start and end are not recorded in the
    features; they are joined by straight lines. ``rest_scale`` < 1 draws rests shorter than they
    are (tick labels stay in true seconds) so that the pulses and their labels stay readable.
    Returns the figure; nothing is saved.
    """
    if not isinstance(steps, pd.DataFrame):
        steps = feature_steps(steps, pulse_width_s)
    missing = [c for c in STEP_COLUMNS if c not in steps.columns]
    if missing:
        raise KeyError(f"a pulse step table needs the columns {STEP_COLUMNS}; missing {missing}")
    steps = steps.reset_index(drop=True).copy()
    pulse_s = float(steps.loc[steps["kind"].ne("rest"), "duration_s"].min())
    lead = 2.0 * pulse_s
    first = steps.index[0]
    if pd.isna(steps.at[first, "t_start_s"]):  # only the end (U1) of the rest before is known: draw it flat
        steps.loc[first, ["t_start_s", "u_start_v"]] = [steps.at[first, "t_end_s"] - lead, steps.at[first, "u_end_v"]]
    if axes is None:
        fig, (ax_v, ax_i) = plt.subplots(2, 1, sharex=True, figsize=(9.0, 5.2), height_ratios=(3, 1))
    else:
        ax_v, ax_i = axes
        fig = ax_v.figure
    color = color or PALETTE["NMC21"]
    t = steps[["t_start_s", "t_end_s"]].to_numpy(float).ravel()
    v = steps[["u_start_v", "u_end_v"]].to_numpy(float).ravel()
    ax_v.plot(t, v, color=color, lw=1.4)
    points = turning_points(steps)
    ax_v.plot(points["t_s"], points["voltage_v"], "o", color=color, ms=4, zorder=3)
    if annotate:
        for row in points.itertuples():
            # a step's end and the next step's start share one instant: end to the left, start to the right
            dx, ha = (-4, "right") if row.edge == "end" else (4, "left")
            ax_v.annotate(row.feature, (row.t_s, row.voltage_v), xytext=(dx, 0), textcoords="offset points",
                          ha=ha, va="center", fontsize=7.5)
    t_i = np.r_[steps["t_start_s"].to_numpy(float), steps["t_end_s"].iloc[-1]]
    i_c = np.r_[steps["amplitude_c"].to_numpy(float), 0.0]
    ax_i.step(t_i, i_c, where="post", color="0.3", lw=1.2)
    ax_i.axhline(0, color="0.6", lw=0.6)
    forward, inverse = _compressed_axis(steps, rest_scale)
    for ax in (ax_v, ax_i):
        ax.set_xscale("function", functions=(forward, inverse))
    ticks = np.unique(np.r_[0.0, steps["t_end_s"].to_numpy(float)])
    ax_i.set_xticks(ticks, [f"{x:g}" for x in ticks], rotation=90, fontsize=8)
    ax_i.set_xlim(steps["t_start_s"].iloc[0], ticks[-1] + 0.2 * lead)
    ax_v.set_ylabel("Voltage (V)")
    ax_i.set_ylabel("Current (C)")
    scale_note = f"; rests drawn at {rest_scale:g}x" if rest_scale != 1 else ""
    ax_i.set_xlabel(f"Time since the first pulse (s{scale_note})")
    if title:
        ax_v.set_title(title)
    return fig


def _box(ax: plt.Axes, xy: tuple[float, float], title: str, shape: str, color: str, width: float = 2.0) -> None:
    from matplotlib.patches import FancyBboxPatch

    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.36), width, 0.72, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor="0.25", lw=1.0))
    ax.text(x, y + 0.12, title, ha="center", va="center", fontsize=10)
    ax.text(x, y - 0.17, shape, ha="center", va="center", fontsize=10, family="monospace", color="0.15")


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], text: str = "",
           offset: tuple[float, float] = (0.0, 0.12)) -> None:
    ax.annotate("", end, start, arrowprops={"arrowstyle": "-|>", "color": "0.3", "lw": 1.1, "shrinkA": 0, "shrinkB": 0})
    if text:
        mid = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        ax.text(*mid, text, ha="center", va="bottom", fontsize=9, color="0.3")


def plot_architecture(config: Any = None, ax: plt.Axes | None = None) -> plt.Figure:
    """Draw the CVAE of ``config`` (a :class:`battgen.model.CVAEConfig`; default: the paper's) with
    every tensor's shape, ``B`` being the batch.

    Top row the encoder, bottom row the decoder, between them the condition embedding that both
    attention layers (or, with ``conditioning="concat"``, both concatenations) read. The sizes are
    read from the configuration, so the figure cannot drift from the model. Returns the figure.
    """
    if config is None:
        from battgen.model import CVAEConfig

        config = CVAEConfig()
    F, K, E, H, L = (config.feature_dim, config.condition_dim, config.embedding_dim, config.intermediate_dim,
                     config.latent_dim)
    attention = config.conditioning == "attention"
    if ax is None:
        fig, ax = plt.subplots(figsize=(13.0, 4.8))
    else:
        fig = ax.figure
    cols, (top, mid, bottom) = (1.0, 3.55, 6.1, 8.65, 11.2), (2.4, 1.2, 0.0)
    enc, cond, dec, lat = "#DCEAF7", "#F9E3C4", "#D9F0E3", "#EDE3F5"
    mix_title = "cross-attention" if attention else "concatenate [h, C]"
    mix_shape = f"(B, {H})" if attention else f"(B, {H + E})"
    _box(ax, (cols[0], top), "x: U1..U21 (scaled)", f"(B, {F})", enc)
    _box(ax, (cols[1], top), "h_enc = ReLU(W x + b)", f"(B, {H})", enc)
    _box(ax, (cols[2], top), f"encoder {mix_title}", mix_shape, enc)
    _box(ax, (cols[3], top), r"$\mu$, $\log\sigma^2$", f"(B, {L}) each", lat)
    _box(ax, (cols[4], top), r"$z = \mu + \sigma \odot \varepsilon$", f"(B, {L})", lat)
    _box(ax, (cols[0], mid), "c = [SOC, SOH]", f"(B, {K})", cond)
    _box(ax, (cols[1], mid), "C = ReLU(W c + b)", f"(B, {E})", cond)
    _box(ax, (cols[4], bottom), "h_dec = ReLU(W z + b)", f"(B, {H})", dec)
    _box(ax, (cols[2], bottom), f"decoder {mix_title}", mix_shape, dec)
    _box(ax, (cols[0], bottom), r"$\hat{x}$ = sigmoid(W a + b)" if config.output == "sigmoid" else r"$\hat{x}$ = W a + b",
         f"(B, {F})", dec)
    half = 2.0 / 2
    _arrow(ax, (cols[0] + half, top), (cols[1] - half, top), "Dense")
    _arrow(ax, (cols[1] + half, top), (cols[2] - half, top), "query" if attention else "")
    _arrow(ax, (cols[2] + half, top), (cols[3] - half, top), "2 x Dense")
    _arrow(ax, (cols[3] + half, top), (cols[4] - half, top), "sample")
    _arrow(ax, (cols[4], top - 0.36), (cols[4], bottom + 0.36), "decode", offset=(0.35, -0.05))
    _arrow(ax, (cols[4] - half, bottom), (cols[2] + half, bottom), "query" if attention else "")
    _arrow(ax, (cols[2] - half, bottom), (cols[0] + half, bottom), "Dense")
    _arrow(ax, (cols[0] + half, mid), (cols[1] - half, mid), "Dense")
    tokens = f"key, value: {E} tokens of size 1" if attention else "concatenated"
    _arrow(ax, (cols[1] + half, mid + 0.15), (cols[2] - 0.3, top - 0.36))
    _arrow(ax, (cols[1] + half, mid - 0.15), (cols[2] - 0.3, bottom + 0.36))
    ax.text(cols[1] + half + 0.1, mid, tokens, ha="left", va="center", fontsize=9, color="0.3")
    ax.text(cols[3] + 0.15, mid, "to generate: draw\n" + r"$z \sim \mathcal{N}(0, I)$" + f", (B, {L}),\nat a new c",
            ha="center", va="center", fontsize=9, color="0.3", style="italic")
    ax.set_xlim(-0.1, 12.3)
    ax.set_ylim(-0.6, 3.0)
    ax.axis("off")
    ax.set_title(f"The CVAE ({'paper: cross-attention' if attention else 'ablation: concatenation'}); B = batch size",
                 fontsize=11)
    return fig
