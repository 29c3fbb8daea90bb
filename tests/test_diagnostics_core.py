"""battgen.diagnostics (the part that was in battgen.analysis): the CVAE's loss weights and latent
use, unit-token attention against the textbook, feature errors and data spreads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from battgen import diagnostics
from battgen.data import FEATURES, load_pulsebat
from battgen.evaluation.paper import ExperimentConfig, run_grid_with_models
from battgen.model import CVAEConfig, UnitCrossAttention, set_seed
from battgen.train import TrainConfig

# --------------------------------------------------------------------------- the loss weights


def test_decoder_variance_is_the_weight_ratio():
    assert diagnostics.decoder_variance() == 0.5
    assert diagnostics.decoder_variance(CVAEConfig(w_recon=1.0, w_kl=0.5)) == 0.25


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize("heads", [1, 2])
def test_factorised_attention_agrees_with_the_textbook_one(heads):
    set_seed(0)
    layer = UnitCrossAttention(16, heads)
    for lin in (layer.query, layer.key, layer.value, layer.out):
        torch.nn.init.normal_(lin.bias)
    check = diagnostics.attention_agreement(layer, torch.rand(8, 12), torch.rand(8, 10))
    assert check["output"] < 1e-5 and check["attention"] < 1e-6 and check["logits"] < 1e-5
    assert check["output_scale"] > 0
    scalars = diagnostics.attention_scalars(layer)
    assert list(scalars.columns) == ["head", "a", "c", "alpha", "beta"] and len(scalars) == heads
    a, c, alpha, beta = layer.scalars()  # the table is the layer's own algebra
    np.testing.assert_array_equal(scalars["a"].to_numpy(), a.detach().numpy())
    np.testing.assert_array_equal(scalars["alpha"].to_numpy(), alpha.detach().numpy())


def test_four_scalars_reproduce_the_layer():
    set_seed(1)
    layer = UnitCrossAttention(64, 1)
    torch.nn.init.normal_(layer.query.bias)
    torch.nn.init.normal_(layer.value.bias)
    h, C = torch.rand(5, 64), torch.rand(5, 64)
    s = diagnostics.attention_scalars(layer).iloc[0]
    att = torch.softmax(C[:, None, :] * (s["a"] * h[:, :, None] + s["c"]), dim=-1)
    y = s["alpha"] * (att * C[:, None, :]).sum(-1) + s["beta"]
    with torch.no_grad():
        expected, _ = layer.forward_naive(h, C)
    assert torch.allclose(y.float(), expected, atol=1e-5)


def test_attention_stats_of_uniform_and_rank_one_maps():
    uniform = np.full((3, 64, 64), 1 / 64)
    stats = diagnostics.attention_stats(uniform)
    assert stats["entropy_ratio"] == pytest.approx(1.0)
    assert stats["max_weight_x_tk"] == pytest.approx(1.0)
    assert stats["deviation"] == pytest.approx(0.0)
    assert stats["rank1_share"] == 1.0
    rng = np.random.default_rng(0)
    s, C = rng.normal(size=(64, 1)), rng.uniform(size=(1, 64))
    tilted = np.exp(0.01 * s * C)
    tilted /= tilted.sum(-1, keepdims=True)
    stats = diagnostics.attention_stats(tilted[None])
    assert stats["rank1_share"] > 0.999 and stats["entropy_ratio"] > 0.999
    peaked = np.eye(64)[None]
    assert diagnostics.attention_stats(peaked)["entropy_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert diagnostics.attention_stats(peaked)["max_weight_x_tk"] == pytest.approx(64.0)


# --------------------------------------------------------------------------- errors and data spreads


def _frame(n_batteries=3, levels=(5, 10)):
    rows = []
    for b in range(n_batteries):
        for level in levels:
            rows.append({"battery": "NMC21", "battery_id": f"b{b}", "soh": 0.8 + 0.05 * b, "soc": level / 100,
                         **{f: 3.0 + 0.1 * b + 0.01 * level + 0.001 * k for k, f in enumerate(FEATURES)}})
    return pd.DataFrame(rows)


def test_feature_errors_in_percent_and_millivolts():
    df = _frame()
    truth = df[FEATURES].to_numpy(float)
    err = diagnostics.feature_errors(df, truth + 0.01, by=("soc_pct",))
    assert list(err.columns) == ["soc_pct", "feature", "mape", "mae_mv", "k", "n"]
    assert len(err) == 2 * 21 and (err["n"] == 3).all()
    assert np.allclose(err["mae_mv"], 10.0)
    u1 = df[df.soc == 0.05]["U1"]
    assert err.loc[(err.soc_pct == 5) & (err.feature == "U1"), "mape"].item() == pytest.approx(np.mean(1.0 / u1))
    assert (diagnostics.feature_errors(df, truth)["mape"] == 0).all()
    with pytest.raises(ValueError, match="shape"):
        diagnostics.feature_errors(df, truth[:, :20])


def test_between_battery_spread():
    df = _frame(n_batteries=3)
    assert diagnostics.between_battery_spread_mv([df]) == pytest.approx(100.0)  # std of 3.0, 3.1, 3.2 is 0.1 V
    with pytest.raises(ValueError):
        diagnostics.between_battery_spread_mv([])


def test_paired_difference():
    a = _frame()
    b = a.copy()
    b.loc[b.battery_id == "b1", FEATURES] += 0.003
    diff = diagnostics.paired_difference_mv(a, b.iloc[::-1])
    assert diff["n"] == len(a) and diff["max_mv"] == pytest.approx(3.0) and diff["mean_mv"] == pytest.approx(1.0)
    assert diff["soh_max"] == 0 and diff["soh_n_differ"] == 0
    same = diagnostics.paired_difference_mv(a, a)
    assert same["max_mv"] == 0 and same["soh_n_differ"] == 0
    relabelled = a.copy()
    relabelled.loc[relabelled.index[:3], "soh"] += 4e-16  # a last-bit difference counts
    labels = diagnostics.paired_difference_mv(a, relabelled)
    assert labels["max_mv"] == 0 and labels["soh_n_differ"] == 3 and 0 < labels["soh_max"] < 1e-15
    with pytest.raises(ValueError, match="share no"):
        diagnostics.paired_difference_mv(a, b.assign(battery_id="other"))


def test_outside_training_range_of_a_monotone_table():
    # every feature rises with SOC, the batteries differ by far less than one SOC step
    df = pd.DataFrame([{"battery_id": f"b{b}", "soc": level / 100, **{f: 3.0 + 0.01 * level + 1e-4 * b for f in FEATURES}}
                       for b in range(3) for level in range(5, 55, 5)])
    assert diagnostics.outside_training_range(df, 0) == {"share": 0.0, "rows_with_any": 0.0}  # 5 and 50 % measured
    assert diagnostics.outside_training_range(df, 7) == {"share": 1.0, "rows_with_any": 1.0}  # all above 10 %
    # case 4 (35-50 % measured): the six lower levels all lie below
    assert diagnostics.outside_training_range(df, 4)["share"] == pytest.approx(1.0)
    # case 5 (20-30 %): 5, 10, 15 below and 35..50 above; every unseen row is outside
    assert diagnostics.outside_training_range(df, 5)["rows_with_any"] == 1.0


# --------------------------------------------------------------------------- a fit of the paper's grid, on the real data


@pytest.fixture(scope="module")
def fitted(data_dir: Path):
    df = load_pulsebat("NMC21", data_dir=data_dir)
    run = run_grid_with_models(ExperimentConfig(batteries=["NMC21"], cases=[3], seeds=[0], train=TrainConfig(epochs=2),
                                                progress=False), frames={"NMC21": df})
    return run.models[0], df


def test_cvae_diagnostics_on_a_fit(fitted):
    fit, df = fitted
    X, C = df[FEATURES].to_numpy(float), df[["soc", "soh"]].to_numpy(float)
    assert diagnostics.reconstruct(fit, X, C).shape == X.shape
    usage = diagnostics.latent_usage(fit, X, C)
    assert set(usage) == {"kl", "mu_std_max", "sigma_mean", "active_units", "decoder_range_mv"}
    assert usage["kl"] >= 0 and usage["decoder_range_mv"] >= 0 and 0 <= usage["active_units"] <= 2
    collapse = diagnostics.collapse_diagnostics(fit, X, C)
    assert collapse["kl_last_epoch"] == fit.history["kl"][-1] and collapse["decoder_uses_z_mv"] >= 0
    ev = diagnostics.residual_spectrum(fit, X, C)
    assert ev.shape == (21,) and (np.diff(ev) <= 1e-12).all() and ev[-1] > -1e-9
    spread = diagnostics.attention_logit_range(fit, X, C)
    assert set(spread) == {"encoder", "decoder"} and all(v >= 0 for v in spread.values())
    sweep = diagnostics.attention_sweep(fit, df)
    assert [e["sweep"] for e in sweep] == ["SOC"] * 3 + ["SOH"] * 2
    assert [e["soc_pct"] for e in sweep] == [5, 25, 50, 25, 25]
    assert sweep[3]["soh"] == df["soh"].min() and sweep[4]["soh"] == df["soh"].max()
    for e in sweep:
        assert e["encoder"].shape == e["decoder"].shape == (64, 64)
        assert np.allclose(e["decoder"].sum(-1), 1.0, atol=1e-5)
