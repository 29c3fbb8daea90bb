"""battgen.train: scaling, repeatable stacked fits (alone = in a stack), the loss it runs, save/load without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from battgen.train import FitJob, FittedCVAE, MinMaxScaler, TrainConfig, fit_generator, fit_generators

FAST = TrainConfig(epochs=3, batch_size=16)


def _toy(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    soc = rng.choice([0.05, 0.1, 0.2], n)
    soh = rng.uniform(0.7, 1.0, n)
    x = 3.3 + 0.5 * soc[:, None] + 0.1 * soh[:, None] + 0.01 * rng.standard_normal((n, 21))
    return x, np.column_stack([soc, soh])


def test_minmax_scaler_round_trips_and_handles_constant_columns() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    s = MinMaxScaler.fit(x)
    np.testing.assert_allclose(s.transform(x), [[0, 0], [1, 0]])
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)), x)
    assert MinMaxScaler.from_dict(json.loads(json.dumps(s.to_dict()))).to_dict() == s.to_dict()


def test_same_seed_same_generator_and_history() -> None:
    x, c = _toy()
    a = fit_generator(x, c, seed=7, train_config=FAST, progress=False)
    b = fit_generator(x, c, seed=7, train_config=FAST, progress=False)
    assert a.history == b.history
    assert all(torch.equal(a.model.state_dict()[k], b.model.state_dict()[k]) for k in a.model.state_dict())
    d = fit_generator(x, c, seed=8, train_config=FAST, progress=False)
    assert d.history != a.history


def test_a_fit_does_not_depend_on_its_stack_neighbours() -> None:
    x, c = _toy()
    x2, c2 = _toy(25, seed=1)
    alone = fit_generator(x, c, seed=3, train_config=FAST, progress=False)
    stacked = fit_generators([FitJob(x2, c2, 5), FitJob(x, c, 3)], train_config=FAST, progress=False)[1]
    for k, v in alone.model.state_dict().items():
        torch.testing.assert_close(stacked.model.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    assert len(stacked.history["loss"]) == FAST.epochs


def test_training_reduces_the_loss() -> None:
    x, c = _toy(64)
    fit = fit_generator(x, c, seed=0, train_config=TrainConfig(epochs=30), progress=False)
    assert fit.history["loss"][-1] < 0.7 * fit.history["loss"][0]
    assert set(fit.history) == {"loss", "recon", "kl"}


def test_condition_scaler_sees_extra_conditions() -> None:
    x, c = _toy()
    extra = np.array([[0.5, 0.6]])
    fit = fit_generator(x, c, seed=0, extra_conditions=extra, train_config=FAST, progress=False)
    np.testing.assert_allclose(fit.condition_scaler.data_max[0], 0.5)
    np.testing.assert_allclose(fit.condition_scaler.data_min[1], 0.6)
    np.testing.assert_allclose(fit.feature_scaler.data_max, x.max(0))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    x, c = _toy()
    fit = fit_generator(x, c, seed=0, train_config=FAST, progress=False, provenance={"battery": "toy"})
    path = fit.save(tmp_path / "gen.pt")
    meta = json.loads((tmp_path / "gen.pt.json").read_text())
    assert meta["provenance"]["battery"] == "toy" and meta["model_config"]["latent_dim"] == 2
    again = FittedCVAE.load(path)
    z = np.zeros((3, 2))
    np.testing.assert_array_equal(again.decode(z, c[:3]), fit.decode(z, c[:3]))
    assert again.history == fit.history
    assert not list(tmp_path.glob(".*tmp"))  # nothing half-written left behind


def test_load_refuses_pickled_objects(tmp_path: Path) -> None:
    x, c = _toy()
    path = fit_generator(x, c, seed=0, train_config=FAST, progress=False).save(tmp_path / "gen.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weights": Evil()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unpickl"):
        FittedCVAE.load(path)


def test_bad_input_is_named() -> None:
    x, c = _toy()
    with pytest.raises(ValueError, match=r"fit job 0: features must have shape \(n, 21\)"):
        fit_generator(x[:, :20], c, train_config=FAST)
    x[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_generator(x, c, train_config=FAST)


def test_public_views_of_a_fit() -> None:
    x, c = _toy()
    fit = fit_generator(x, c, seed=0, train_config=FAST, progress=False)
    X, C = fit.scaled_features(x), fit.scaled_conditions(c)
    assert X.dtype == C.dtype == torch.float32 and X.shape == (40, 21) and C.shape == (40, 2)
    np.testing.assert_array_equal(X.numpy(), fit.feature_scaler.transform(x).astype(np.float32))
    np.testing.assert_array_equal(C.numpy(), fit.condition_scaler.transform(c).astype(np.float32))
    hid = fit.hidden(x, c)
    assert set(hid) == {"C", "h_enc", "mu", "h_dec"}
    assert hid["C"].shape == hid["h_enc"].shape == hid["h_dec"].shape == (40, 64) and hid["mu"].shape == (40, 2)
    np.testing.assert_array_equal(hid["mu"].numpy().astype(float), fit.encode(x, c)[0])
    maps = fit.attention(x[:3], c[:3])
    assert maps["encoder"].shape == maps["decoder"].shape == (3, 64, 64)


# --------------------------------------------------------------------------- the loss training runs


def test_training_runs_loss_terms_itself(monkeypatch) -> None:
    """fit_generators optimises battgen.model.loss_terms, called by _LossTerms.forward, and nothing else."""
    import battgen.train as train_mod
    from battgen.model import CVAE, CVAEConfig, loss_terms

    calls = []

    def counting(cfg, x, x_hat, mu, logvar, w, free_bits=0.0, beta=None):
        calls.append((cfg, free_bits, beta is not None))
        return loss_terms(cfg, x, x_hat, mu, logvar, w, free_bits, beta)

    monkeypatch.setattr(train_mod, "loss_terms", counting)
    x, c = _toy(40)
    fit_generators([FitJob(x, c, 0)], train_config=TrainConfig(epochs=1, batch_size=16), progress=False)
    assert len(calls) == 3  # ceil(40 / 16) optimiser steps, one (vmapped) call each
    assert all(cfg == CVAEConfig() and fb == 0.0 and not has_beta for cfg, fb, has_beta in calls)
    calls.clear()
    fit_generators([FitJob(x, c, 0)], train_config=TrainConfig(epochs=2, batch_size=16, free_bits=0.5, kl_anneal_epochs=2),
                   progress=False)
    assert len(calls) == 6 and all(fb == 0.5 and has_beta for _, fb, has_beta in calls)

    # whatever loss_terms returns is what the history records
    def constant(cfg, x, x_hat, mu, logvar, w, free_bits=0.0, beta=None):
        zero = 0.0 * x_hat.sum()  # keeps the graph, so that the optimiser step runs
        return torch.stack([zero + 3.0, zero + 5.0, zero + 7.0])

    monkeypatch.setattr(train_mod, "loss_terms", constant)
    fit = fit_generators([FitJob(x, c, 0)], train_config=TrainConfig(epochs=2, batch_size=16), progress=False)[0]
    assert fit.history == {"loss": [3.0, 3.0], "recon": [5.0, 5.0], "kl": [7.0, 7.0]}

    # one step by hand: the fit's first (and only) history entry is loss_terms on its first batch
    monkeypatch.setattr(train_mod, "loss_terms", counting)
    calls.clear()
    x, c = _toy(16, seed=2)
    fit = fit_generators([FitJob(x, c, 5)], train_config=TrainConfig(epochs=1, batch_size=16), progress=False)[0]
    torch.manual_seed(5)  # the fit's initialisation, shuffling and noise all derive from its seed
    model = CVAE()
    perm = np.random.default_rng(5).permutation(16)
    eps = torch.randn(1, 16, 2, generator=torch.Generator().manual_seed(5))[0]
    xb, cb = fit.scaled_features(x)[perm], fit.scaled_conditions(c)[perm]
    calls.clear()
    with torch.no_grad():
        out = train_mod._LossTerms(model)(xb, cb, eps, torch.ones(16))
        mu, logvar, _ = model.encode(xb, cb)
        expected = loss_terms(model.config, xb, model.decode(mu + torch.exp(0.5 * logvar) * eps, cb), mu, logvar, torch.ones(16))
    assert len(calls) == 1 and torch.equal(out, expected)  # _LossTerms.forward is loss_terms, to the last bit
    # the trainer's value went through vmap (a stack of one); batched kernels may round the last bit
    # differently from the plain call, so allow 1 ulp of float32 (on the reference machine it is exact)
    history = np.array([fit.history[k][0] for k in ("loss", "recon", "kl")], dtype=np.float32)
    np.testing.assert_array_max_ulp(history, expected.numpy(), maxulp=1)


# --------------------------------------------------------------------------- the improved generators' options


def test_improved_training_options(tmp_path: Path) -> None:
    from battgen.model import CVAEConfig

    rng = np.random.default_rng(0)
    cond = np.column_stack([rng.choice([0.05, 0.25, 0.5], 96), rng.uniform(0.7, 1.0, 96)])
    feats = 3.2 + 0.8 * cond[:, :1] + 0.1 * cond[:, 1:] + 0.01 * rng.standard_normal((96, 21))
    job = FitJob(feats, cond, seed=0, feature_bounds=(1.5, 5.0))
    cfg = CVAEConfig(conditioning="concat", output="linear")
    plain = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4))[0]
    fixed, floored, annealed = fit_generators(
        [job, FitJob(feats, cond, seed=0), FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4), progress=False)
    np.testing.assert_array_equal(fixed.feature_scaler.data_min, np.full(21, 1.5))
    np.testing.assert_array_equal(fixed.feature_scaler.data_max, np.full(21, 5.0))
    # a fit does not depend on its neighbours in the stack
    assert floored.history == plain.history
    fb = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4, free_bits=0.5), progress=False)[0]
    an = fit_generators([FitJob(feats, cond, seed=0)], cfg, TrainConfig(epochs=4, kl_anneal_epochs=3), progress=False)[0]
    assert fb.history != plain.history and an.history != plain.history
    assert all(np.isfinite(v).all() for v in fb.history.values())
    path = fb.save(tmp_path / "g.pt")
    back = FittedCVAE.load(path)
    assert back.train_config.free_bits == 0.5
    with pytest.raises(ValueError, match="feature_bounds"):
        fit_generators([FitJob(feats, cond, seed=0, feature_bounds=(5.0, 1.5))], cfg, TrainConfig(epochs=1))
