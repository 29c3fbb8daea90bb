"""battgen.plotting: one palette per battery type, the shared style, the pulse-sequence helpers."""

from __future__ import annotations

import inspect

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import is_color_like, to_hex  # noqa: E402

from battgen import plotting  # noqa: E402
from battgen.data import BATTERIES, FEATURES, load_pulsebat  # noqa: E402


def test_one_distinct_colour_per_battery_type_in_registry_order():
    colors = plotting.battery_colors()
    assert list(colors) == list(BATTERIES) == ["NMC2.1", "LMO10", "NMC21", "LFP35"]
    assert all(is_color_like(c) for c in colors.values())
    assert len({to_hex(c) for c in colors.values()}) == len(colors)
    assert plotting.battery_colors(["LFP 35 Ah", "lmo"]) == {"LFP35": colors["LFP35"], "LMO10": colors["LMO10"]}


def test_labels_come_from_the_registry_and_accept_aliases():
    assert plotting.label("LMO10") == "LMO 10 Ah" == BATTERIES["LMO10"].label
    assert plotting.label("NMC 2.1 Ah") == "NMC 2.1 Ah"
    assert plotting.labels() == {k: b.label for k, b in BATTERIES.items()}
    with pytest.raises(ValueError, match="unknown battery type"):
        plotting.label("NCA5")


def test_hue_battery_kwargs_for_seaborn():
    kw = plotting.hue_battery()
    assert kw["hue"] == "battery"
    assert kw["hue_order"] == list(BATTERIES)
    assert kw["palette"] == plotting.battery_colors()


def test_use_style_sets_the_palette_cycle():
    with matplotlib.rc_context():
        plotting.use_style()
        cycle = [to_hex(c) for c in matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]]
        assert cycle == [to_hex(c) for c in plotting.PALETTE.values()]
        assert matplotlib.rcParams["axes.spines.top"] is False


def test_the_module_never_saves_figures():
    assert "savefig(" not in inspect.getsource(plotting)


def test_feature_schedule_is_the_pulsebat_protocol():
    s = plotting.feature_schedule(5)
    assert list(s["u_start_label"]) == [f"U{k}" for k in range(2, 22, 2)]
    assert list(s["u_end_label"]) == [f"U{k}" for k in range(3, 22, 2)]
    assert list(s["amplitude_c"]) == [0.5, 0, -0.5, 0, 1, 0, -1, 0, 1.5, 0]
    assert list(s["duration_s"]) == [5, 75] * 5
    assert s["t_end_s"].iloc[-1] == 400
    with pytest.raises(ValueError):
        plotting.feature_schedule(0)


def _sample() -> pd.Series:
    return pd.Series({f: 3.5 + 0.01 * i for i, f in enumerate(FEATURES)})


def test_feature_steps_place_every_feature_once_in_time_order():
    steps = plotting.feature_steps(_sample())
    assert list(steps.columns) == plotting.STEP_COLUMNS
    points = plotting.turning_points(steps)
    assert list(points["feature"]) == FEATURES
    assert np.all(np.diff(points["t_s"]) >= 0)
    assert np.allclose(points["voltage_v"], _sample()[FEATURES])
    with pytest.raises(KeyError, match="U21"):
        plotting.feature_steps(_sample().drop("U21"))


def test_plot_pulse_sequence_annotates_the_21_points():
    fig = plotting.plot_pulse_sequence(_sample(), title="t")
    try:
        ax_v, ax_i = fig.axes
        labels = [t.get_text() for t in ax_v.texts]
        assert labels == FEATURES
        assert ax_i.get_ylabel() == "Current (C)"
    finally:
        plt.close(fig)


def test_plot_pulse_sequence_on_a_real_battery(data_dir):
    df = load_pulsebat("NMC21", data_dir=data_dir)
    row = df[(df.battery_id == "02LCC02100101A87Y0052124") & (df.soc == 0.25)].iloc[0]
    fig = plotting.plot_pulse_sequence(plotting.feature_steps(row))
    try:
        (line, *_), values = fig.axes[0].get_lines(), row[FEATURES].to_numpy(float)
        assert np.isclose(np.nanmax(line.get_ydata()), values.max())
    finally:
        plt.close(fig)


def test_architecture_figure_reads_every_shape_from_the_config():
    from battgen.model import CVAEConfig

    # h_enc, C, h_dec and the two attention outputs are (B, 64); concatenation makes (B, 64 + 64) twice
    for config, mixed, n in ((CVAEConfig(), "(B, 64)", 5), (CVAEConfig(conditioning="concat", latent_dim=3), "(B, 128)", 2)):
        fig = plotting.plot_architecture(config)
        try:
            texts = [t.get_text() for t in fig.axes[0].texts]
            assert texts.count(f"(B, {config.feature_dim})") == 2  # x and x_hat
            assert f"(B, {config.latent_dim})" in texts and f"(B, {config.condition_dim})" in texts
            assert texts.count(mixed) == n
            assert not fig.axes[0].axison
        finally:
            plt.close(fig)
    assert "concatenation" in plotting.plot_architecture(CVAEConfig(conditioning="concat")).axes[0].get_title()
    plt.close("all")
