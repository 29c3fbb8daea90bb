"""battgen.generate: the three ways of generating at unseen SOC."""

from __future__ import annotations

import numpy as np
import pytest

from battgen.generate import AUTHORS_SHIFT_GAIN, authors_shift, latent_scale_factors, latent_scaling, sample
from battgen.train import TrainConfig, fit_generator


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    soc = rng.choice([0.05, 0.1, 0.15], 60)
    soh = rng.uniform(0.7, 1.0, 60)
    x = 3.3 + 0.5 * soc[:, None] + 0.1 * soh[:, None] + 0.01 * rng.standard_normal((60, 21))
    c = np.column_stack([soc, soh])
    return fit_generator(x, c, seed=0, train_config=TrainConfig(epochs=5), progress=False), x, c


def test_sample_shapes_units_and_seed(fitted) -> None:
    gen, x, _ = fitted
    cond = np.array([[0.3, 0.9], [0.4, 0.8]])
    feats, rep = sample(gen, cond, n_per_condition=3, seed=1)
    assert feats.shape == (6, 21) and rep.shape == (6, 2)
    np.testing.assert_array_equal(rep[:3], np.repeat(cond[:1], 3, axis=0))
    # sigmoid output mapped back through the training scaler: inside the training range
    assert (feats >= x.min(0) - 1e-9).all() and (feats <= x.max(0) + 1e-9).all()
    np.testing.assert_array_equal(feats, sample(gen, cond, 3, seed=1)[0])
    assert not np.array_equal(feats, sample(gen, cond, 3, seed=2)[0])


def test_latent_scale_factors_reading() -> None:
    t_mean, t_logvar = latent_scale_factors(np.array([0.05, 0.10]), np.array([0.2, 0.3, 0.4]))
    assert t_mean == pytest.approx(0.3 / 0.075)
    assert t_logvar == pytest.approx(np.var([0.2, 0.3, 0.4]) / np.var([0.05, 0.10]))
    with pytest.raises(ValueError, match="two training SOC levels"):
        latent_scale_factors(np.array([0.1, 0.1]), np.array([0.2]))


def test_latent_scaling_uses_same_battery_posteriors(fitted) -> None:
    gen, x, c = fitted
    groups = np.arange(len(x)) % 5
    target = np.array([[0.3, 0.8], [0.35, 0.9]])
    feats, cond = latent_scaling(gen, x, c, target, train_groups=groups, target_groups=np.array([1, 2]), seed=0)
    assert feats.shape == (2, 21)
    np.testing.assert_array_equal(cond, target)
    again, _ = latent_scaling(gen, x, c, target, train_groups=groups, target_groups=np.array([1, 2]), seed=0)
    np.testing.assert_array_equal(feats, again)


def test_authors_shift_is_anchor_sample_plus_constant(fitted) -> None:
    gen, _, _ = fitted
    target = np.array([[0.30, 0.8], [0.45, 0.9]])
    shifted, _ = authors_shift(gen, target, anchor_soc=0.10, battery="LMO10", seed=4)
    anchor = target.copy()
    anchor[:, 0] = 0.10
    base, _ = sample(gen, anchor, 1, seed=4)
    expected = (target[:, 0] - 0.10) * 0.095 * AUTHORS_SHIFT_GAIN  # LMO physic_weight
    np.testing.assert_allclose(shifted - base, np.repeat(expected[:, None], 21, axis=1), atol=1e-12)
    with pytest.raises(ValueError, match="physic_weight"):
        authors_shift(gen, target, anchor_soc=0.1)
