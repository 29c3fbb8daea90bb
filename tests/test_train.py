"""battgen.train: scaling, repeatable stacked fits, save/load without pickle."""

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
