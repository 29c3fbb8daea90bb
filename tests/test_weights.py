"""battgen.weights: the NumPy weights, initialisation and inference passes are battgen.model.CVAE's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from battgen.model import CVAE, CVAEConfig
from battgen.weights import check, decode, encode, initial, shapes

CONFIGS = [
    {},  # the paper's network
    {"conditioning": "concat", "output": "linear"},  # the improved generators'
    {"num_heads": 2, "embedding_dim": 8, "intermediate_dim": 6, "latent_dim": 3},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_names_shapes_and_order_are_the_torch_modules(config) -> None:
    cfg = CVAEConfig(**config)
    want = [(k, tuple(v.shape)) for k, v in CVAE(cfg).state_dict().items()]
    assert list(shapes(cfg).items()) == want
    assert sum(math.prod(s) for s in shapes(CVAEConfig()).values()) == 4315  # the paper's parameter count


def test_initialisation_is_keras_and_seeded() -> None:
    cfg = CVAEConfig()
    a, b, c = initial(cfg, 3), initial(cfg, 3), initial(cfg, 4)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["enc_hidden.weight"], c["enc_hidden.weight"])
    for name, value in a.items():
        assert value.dtype == np.float32
        if name.endswith("bias"):
            assert not value.any(), name  # zero biases
        else:
            limit = math.sqrt(6 / sum(value.shape))  # Glorot-uniform
            assert np.abs(value).max() <= limit and np.abs(value).max() > 0.8 * limit, name
    big = initial(cfg, 0)["enc_hidden.weight"]  # (64, 21): a uniform has variance limit^2 / 3
    assert abs(big.var() - (6 / 85) / 3) < 0.15 * (6 / 85) / 3


@pytest.mark.parametrize("config", CONFIGS)
def test_encode_and_decode_are_the_torch_modules(config) -> None:
    """The NumPy passes the generators run equal the torch module's to float32 rounding, on trained-looking weights."""
    cfg = CVAEConfig(**config)
    rng = np.random.default_rng(0)
    w = {k: (0.4 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes(cfg).items()}  # biases non-zero too
    model = CVAE(cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    x = rng.uniform(0, 1, (300, cfg.feature_dim)).astype(np.float32)  # more rows than one block of the NumPy passes
    c = rng.uniform(0, 1, (300, cfg.condition_dim)).astype(np.float32)
    z = rng.standard_normal((300, cfg.latent_dim)).astype(np.float32)
    with torch.no_grad():
        mu, logvar, _ = model.encode(torch.from_numpy(x), torch.from_numpy(c))
        out = model.decode(torch.from_numpy(z), torch.from_numpy(c))
    got_mu, got_logvar = encode(w, cfg, x, c)
    np.testing.assert_allclose(got_mu, mu.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_logvar, logvar.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(decode(w, cfg, z, c), out.numpy(), rtol=1e-5, atol=1e-5)
    assert encode(w, cfg, x[:0], c[:0])[0].shape == (0, cfg.latent_dim) and decode(w, cfg, z[:0], c[:0]).shape == (0, cfg.feature_dim)


def test_the_sigmoid_does_not_overflow() -> None:
    cfg = CVAEConfig()
    w = initial(cfg, 0)
    w["dec_out.bias"] = np.full(21, -200.0, np.float32)  # exp(200) overflows float32
    with np.errstate(all="raise"):
        out = decode(w, cfg, np.zeros((2, 2)), np.zeros((2, 2)))
    assert (out >= 0).all() and (out < 1e-30).all()


def test_check_names_the_bad_weight() -> None:
    cfg = CVAEConfig()
    w = initial(cfg, 0)
    assert check(w, cfg).keys() == w.keys()
    with pytest.raises(ValueError, match="missing weight 'dec_out.bias'"):
        check({k: v for k, v in w.items() if k != "dec_out.bias"}, cfg)
    with pytest.raises(ValueError, match=r"weight 'z_mean.weight' has shape \(3, 64\), expected \(2, 64\)"):
        check({**w, "z_mean.weight": np.zeros((3, 64))}, cfg)
    with pytest.raises(ValueError, match="unexpected weight 'extra'"):
        check({**w, "extra": np.zeros(1)}, cfg)
