"""battgen.analysis: profiles, CVAE and attention diagnostics, grid runs and the authors' reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from battgen import analysis
from battgen.data import FEATURES
from battgen.experiments import ExperimentConfig, run_grid
from battgen.model import CVAE, CVAEConfig, UnitCrossAttention, set_seed
from battgen.train import TrainConfig


# --------------------------------------------------------------------------- profiles and helpers


def test_train_config_follows_the_profile():
    assert analysis.train_config("full").epochs == 50 == TrainConfig().epochs
    assert analysis.train_config("smoke").epochs == analysis.PROFILE_EPOCHS["smoke"] < 50
    assert analysis.train_config("smoke").threads == 1
    assert analysis.train_config("full", threads=None, lr=5e-4).lr == 5e-4
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        analysis.train_config("huge")


def test_glue_keys_are_safe_names():
    assert [analysis.glue_key(b) for b in ("NMC2.1", "LMO10", "NMC 21 Ah", "lfp")] == ["nmc2_1", "lmo10", "nmc21", "lfp35"]


def test_source_block_shows_the_real_code():
    block = analysis.source_block(CVAE.reparameterize)
    assert block.startswith("```python\n# battgen.model.CVAE.reparameterize, line ")
    assert "def reparameterize(mu" in block and block.endswith("\n```")
    assert "\n    @staticmethod" not in block  # dedented


def test_decoder_variance_is_the_weight_ratio():
    assert analysis.decoder_variance() == 0.5
    assert analysis.decoder_variance(CVAEConfig(w_recon=1.0, w_kl=0.5)) == 0.25


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize("heads", [1, 2])
def test_factorised_attention_agrees_with_the_textbook_one(heads):
    set_seed(0)
    layer = UnitCrossAttention(16, heads)
    for lin in (layer.query, layer.key, layer.value, layer.out):
        torch.nn.init.normal_(lin.bias)
    check = analysis.attention_agreement(layer, torch.rand(8, 12), torch.rand(8, 10))
    assert check["output"] < 1e-5 and check["attention"] < 1e-6 and check["logits"] < 1e-5
    assert check["output_scale"] > 0
    scalars = analysis.attention_scalars(layer)
    assert list(scalars.columns) == ["head", "a", "c", "alpha", "beta"] and len(scalars) == heads


def test_four_scalars_reproduce_the_layer():
    set_seed(1)
    layer = UnitCrossAttention(64, 1)
    torch.nn.init.normal_(layer.query.bias)
    torch.nn.init.normal_(layer.value.bias)
    h, C = torch.rand(5, 64), torch.rand(5, 64)
    s = analysis.attention_scalars(layer).iloc[0]
    att = torch.softmax(C[:, None, :] * (s["a"] * h[:, :, None] + s["c"]), dim=-1)
    y = s["alpha"] * (att * C[:, None, :]).sum(-1) + s["beta"]
    with torch.no_grad():
        expected, _ = layer.forward_naive(h, C)
    assert torch.allclose(y.float(), expected, atol=1e-5)


def test_attention_stats_of_uniform_and_rank_one_maps():
    uniform = np.full((3, 64, 64), 1 / 64)
    stats = analysis.attention_stats(uniform)
    assert stats["entropy_ratio"] == pytest.approx(1.0)
    assert stats["max_weight_x_tk"] == pytest.approx(1.0)
    assert stats["deviation"] == pytest.approx(0.0)
    assert stats["rank1_share"] == 1.0
    rng = np.random.default_rng(0)
    s, C = rng.normal(size=(64, 1)), rng.uniform(size=(1, 64))
    tilted = np.exp(0.01 * s * C)
    tilted /= tilted.sum(-1, keepdims=True)
    stats = analysis.attention_stats(tilted[None])
    assert stats["rank1_share"] > 0.999 and stats["entropy_ratio"] > 0.999
    peaked = np.eye(64)[None]
    assert analysis.attention_stats(peaked)["entropy_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert analysis.attention_stats(peaked)["max_weight_x_tk"] == pytest.approx(64.0)


# --------------------------------------------------------------------------- errors and aggregation


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
    err = analysis.feature_errors(df, truth + 0.01, by=("soc_pct",))
    assert list(err.columns) == ["soc_pct", "feature", "mape", "mae_mv", "k", "n"]
    assert len(err) == 2 * 21 and (err["n"] == 3).all()
    assert np.allclose(err["mae_mv"], 10.0)
    u1 = df[df.soc == 0.05]["U1"]
    assert err.loc[(err.soc_pct == 5) & (err.feature == "U1"), "mape"].item() == pytest.approx(np.mean(1.0 / u1))
    assert (analysis.feature_errors(df, truth)["mape"] == 0).all()
    with pytest.raises(ValueError, match="shape"):
        analysis.feature_errors(df, truth[:, :20])


def test_between_battery_spread():
    df = _frame(n_batteries=3)
    assert analysis.between_battery_spread_mv([df]) == pytest.approx(100.0)  # std of 3.0, 3.1, 3.2 is 0.1 V
    with pytest.raises(ValueError):
        analysis.between_battery_spread_mv([])


def test_paired_difference():
    a = _frame()
    b = a.copy()
    b.loc[b.battery_id == "b1", FEATURES] += 0.003
    diff = analysis.paired_difference_mv(a, b.iloc[::-1])
    assert diff["n"] == len(a) and diff["max_mv"] == pytest.approx(3.0) and diff["mean_mv"] == pytest.approx(1.0)
    assert analysis.paired_difference_mv(a, a)["max_mv"] == 0
    with pytest.raises(ValueError, match="share no"):
        analysis.paired_difference_mv(a, b.assign(battery_id="other"))


def _results():
    """Two seeds, one battery, case 0 (2 test levels) and case 4 (1 test level), all methods."""
    rows = []
    for seed in (0, 1):
        for case, kind, levels in ((0, "interpolation", (10, 20)), (4, "extrapolation", (5,))):
            for level in levels:
                methods = {"phase1": 10.0 + seed, "phase2_sample": 4.0 + level / 10}
                if kind == "extrapolation":
                    methods |= {"phase2_latent_scaling": 7.0 + seed, "phase2_authors_shift": 3.0}
                for method, value in methods.items():
                    rows.append(dict(battery="NMC21", pulse_width_s=3.0, case=case, kind=kind, seed=seed,
                                     test_soc=level, method=method, mape=value, ape_std=1.0, n_train=1, n_test=1))
    return pd.DataFrame(rows)


def test_phase2_rule_and_case_and_kind_means():
    res = _results()
    p2 = analysis.phase2_rule(res)
    assert set(p2["method"]) == {"phase2"}
    assert set(zip(p2["case"], res.loc[p2.index, "method"])) == {(0, "phase2_sample"), (4, "phase2_latent_scaling")}
    cells = analysis.case_means(p2)
    c0 = cells.set_index("case").loc[0]
    assert c0["mape"] == pytest.approx(5.5) and c0["mape_seed_std"] == 0 and c0["n_seeds"] == 2
    c4 = cells.set_index("case").loc[4]
    assert c4["mape"] == pytest.approx(7.5) and c4["mape_seed_std"] == pytest.approx(math.sqrt(0.5))
    assert (c4["mape_seed_min"], c4["mape_seed_max"]) == (7.0, 8.0)
    kinds = analysis.kind_means(res[res.method == "phase1"]).set_index("kind")
    assert kinds.loc["interpolation", "mape"] == pytest.approx(10.5)


def test_claim_cells():
    cells = analysis.claim_cells(_results()).set_index("case")
    assert bool(cells.loc[0, "below"]) and bool(cells.loc[0, "all_seeds_below"])
    assert not cells.loc[4, "below"]
    shift = analysis.claim_cells(_results(), analysis.AUTHORS_PHASE2).set_index("case")
    assert bool(shift.loc[4, "below"])


def _reference_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reference" / "official_code_mape.csv"
    path.parent.mkdir()
    pd.DataFrame({
        "battery": ["NMC21", "NMC21", "NMC21"], "case": [0, 0, 4], "train_soc": ["x", "x", "y"],
        "test_soc": [10, 20, 5], "phase1_mape": [10.0, 12.0, 20.0], "phase2_mape": [4.0, 6.0, 9.0],
    }).to_csv(path, index=False)
    return path


def test_load_reference_and_compare(tmp_path):
    ref = analysis.load_reference(_reference_csv(tmp_path))
    assert list(ref.columns) == ["battery", "case", "kind", "seed", "test_soc", "method", "mape"]
    assert len(ref) == 6 and set(ref["method"]) == {"phase1", "phase2"}
    table = analysis.compare_with_reference(_results(), ref).set_index("kind")
    assert list(table.index) == ["interpolation", "extrapolation"]
    assert table.loc["interpolation", "ref_phase1"] == pytest.approx(11.0)
    assert table.loc["extrapolation", "ref_phase2"] == pytest.approx(9.0)
    assert table.loc["extrapolation", "phase2_authors"] == pytest.approx(3.0)
    assert table.loc["extrapolation", "phase2_paper"] == pytest.approx(7.5)
    assert table.loc["interpolation", "phase2_paper"] == table.loc["interpolation", "phase2_authors"]


def test_reference_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="released-code numbers"):
        analysis.load_reference(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"battery": ["NMC21"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="expected columns"):
        analysis.load_reference(bad)


def test_reference_path_sits_beside_the_data(tmp_path, monkeypatch):
    data = tmp_path / "shared" / "pulsebat"
    assert analysis.reference_path(data) == (tmp_path / "shared" / "reference" / "official_code_mape.csv").resolve()
    monkeypatch.setenv("BATTGEN_DATA_DIR", str(data))
    assert analysis.reference_path() == analysis.reference_path(data)
    monkeypatch.delenv("BATTGEN_DATA_DIR")
    with pytest.raises(FileNotFoundError, match="BATTGEN_DATA_DIR"):
        analysis.reference_path()


# --------------------------------------------------------------------------- on the real data


@pytest.fixture(scope="module")
def tiny_run(data_dir: Path) -> analysis.GridRun:
    return analysis.run_grids((5,), (0,), batteries=["NMC21"], cases=[3, 7], train=TrainConfig(epochs=2),
                              data_dir=str(data_dir), progress=False)


def test_run_grids_equals_run_grid(tiny_run, data_dir):
    expected = run_grid(ExperimentConfig(batteries=["NMC21"], cases=[3, 7], seeds=[0], train=TrainConfig(epochs=2),
                                         data_dir=str(data_dir), progress=False))
    pd.testing.assert_frame_equal(tiny_run.results.reset_index(drop=True), expected, check_exact=True)
    assert set(tiny_run.fitted) == {(5, "NMC21", 3, 0), (5, "NMC21", 7, 0)}


def test_generation_errors_cover_every_unseen_level(tiny_run):
    err = analysis.generation_errors(tiny_run)
    case3 = err[err.case == 3]
    assert set(case3["method"]) == {"phase2_sample"}
    assert sorted(case3["test_soc"].unique()) == [10, 15, 20, 30, 35, 40, 45]
    assert set(err.loc[err.case == 7, "method"]) == {"phase2_sample", "phase2_latent_scaling", "phase2_authors_shift"}
    assert (err["mape"] >= 0).all() and (err["n"] == 52).all()
    assert len(analysis.generation_errors(tiny_run, methods=["phase2_sample"])) == 21 * (7 + 8)


def test_cvae_diagnostics_on_a_fit(tiny_run):
    fit = tiny_run.fitted[(5, "NMC21", 3, 0)]
    df = tiny_run.frames[(5, "NMC21")]
    X, C = df[FEATURES].to_numpy(float), df[["soc", "soh"]].to_numpy(float)
    assert analysis.reconstruct(fit, X, C).shape == X.shape
    usage = analysis.latent_usage(fit, X, C)
    assert set(usage) == {"kl", "mu_std_max", "sigma_mean", "active_units", "decoder_range_mv"}
    assert usage["kl"] >= 0 and usage["decoder_range_mv"] >= 0 and 0 <= usage["active_units"] <= 2
    ev = analysis.residual_spectrum(fit, X, C)
    assert ev.shape == (21,) and (np.diff(ev) <= 1e-12).all() and ev[-1] > -1e-9
    spread = analysis.attention_logit_range(fit, X, C)
    assert set(spread) == {"encoder", "decoder"} and all(v >= 0 for v in spread.values())
    sweep = analysis.attention_sweep(fit, df)
    assert [e["sweep"] for e in sweep] == ["SOC"] * 3 + ["SOH"] * 2
    assert [e["soc_pct"] for e in sweep] == [5, 25, 50, 25, 25]
    assert sweep[3]["soh"] == df["soh"].min() and sweep[4]["soh"] == df["soh"].max()
    for e in sweep:
        assert e["encoder"].shape == e["decoder"].shape == (64, 64)
        assert np.allclose(e["decoder"].sum(-1), 1.0, atol=1e-5)
