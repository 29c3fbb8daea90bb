"""battgen.diagnostics: the attention helpers the chapters use (layers, inputs, departure, shifts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from battgen import diagnostics
from battgen.data import FEATURES
from battgen.model import CVAE, CVAEConfig, set_seed
from battgen.train import TrainConfig, fit_generator


def _frame(n_batteries: int = 6, levels=(5, 25, 50)) -> pd.DataFrame:
    """A synthetic PulseBat-like table: voltages rising with SOC and falling with SOH."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_batteries):
        soh = 0.7 + 0.05 * i
        for level in levels:
            base = 3.4 + 0.01 * level - 0.2 * soh
            rows.append({"battery": "NMC2.1", "battery_id": f"b{i}", "soc": level / 100, "soh": soh,
                         **{f: base + 0.01 * k + 0.002 * rng.normal() for k, f in enumerate(FEATURES)}})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fitted():
    df = _frame()
    fit = fit_generator(df[FEATURES].to_numpy(float), df[["soc", "soh"]].to_numpy(float), seed=0,
                        train_config=TrainConfig(epochs=2, threads=1), progress=False)
    return fit, df


def test_attention_layers_of_both_conditionings():
    layers = diagnostics.attention_layers(CVAE(CVAEConfig()))
    assert list(layers) == ["encoder", "decoder"]
    assert diagnostics.attention_layers(CVAE(CVAEConfig(conditioning="concat"))) == {}


def test_attention_inputs_are_what_the_layers_read(fitted):
    fit, df = fitted
    X, C = df[FEATURES].to_numpy(float), df[["soc", "soh"]].to_numpy(float)
    inputs = diagnostics.attention_inputs(fit, X, C)
    assert list(inputs) == ["encoder", "decoder"]
    mu, _ = fit.encode(X, C)
    with torch.no_grad():
        attn, h, context = inputs["encoder"]
        y, _ = attn(h, context)
        assert np.allclose(fit.model.z_mean(y).numpy(), mu, atol=1e-6)  # the encoder's read-out gives mu
        attn, h, context = inputs["decoder"]
        y, _ = attn(h, context)
        decoded = fit.feature_scaler.inverse_transform(torch.sigmoid(fit.model.dec_out(y)).numpy())
    assert np.allclose(decoded, fit.decode(mu, C), atol=1e-5)  # the decoder reads at the posterior mean
    for attn, h, context in inputs.values():
        check = diagnostics.attention_agreement(attn, h, context)
        assert check["output"] < 1e-5 and check["attention"] < 1e-6 and check["logits"] < 1e-4


def test_attention_logit_range_is_the_largest_logit_spread(fitted):
    fit, df = fitted
    X, C = df[FEATURES].to_numpy(float), df[["soc", "soh"]].to_numpy(float)
    spread = diagnostics.attention_logit_range(fit, X, C)
    for half, (attn, h, context) in diagnostics.attention_inputs(fit, X, C).items():
        with torch.no_grad():
            logits = attn.logits(h, context)[:, 0]  # (n, Tq, Tk), one head
        assert spread[half] == pytest.approx(float((logits.amax(-1) - logits.amin(-1)).max()), rel=1e-4, abs=1e-6)
        # each logit row is s_i C_j up to a constant along j, with the slopes of attention_slopes
        s = torch.from_numpy(diagnostics.attention_slopes(fit, X, C)[half])[..., None]  # (n, Tq, 1)
        centred = logits - logits.mean(-1, keepdim=True)
        assert torch.allclose(centred, s * (context - context.mean(-1, keepdim=True))[:, None, :], atol=1e-4)


def test_attention_departure_and_shift():
    uniform = np.full((2, 4, 8), 1 / 8)
    assert np.allclose(diagnostics.attention_departure(uniform), 0.0)
    peaked = np.zeros((4, 8))
    peaked[:, 0] = 1.0
    dep = diagnostics.attention_departure(peaked)
    assert dep.shape == (4, 8) and dep[0, 0] == pytest.approx(7.0) and dep[0, 1] == pytest.approx(-1.0)
    assert diagnostics.attention_shift(uniform[0], uniform[0]) == 0.0
    # the change is 8 * |1 - 1/8| = 7 at one entry and 8 * 1/8 = 1 at the seven others of each row
    assert diagnostics.attention_shift(uniform[0], peaked) == pytest.approx((7 + 7 * 1) / 8)
    with pytest.raises(ValueError, match="different shapes"):
        diagnostics.attention_shift(uniform[0], uniform)


def test_attention_sweep_shifts_compare_the_ends_of_each_sweep(fitted):
    fit, df = fitted
    sweep = diagnostics.attention_sweep(fit, df)
    shifts = diagnostics.attention_sweep_shifts(sweep)
    assert list(shifts) == ["encoder", "decoder"]
    for half in ("encoder", "decoder"):
        assert shifts[half]["change_soc"] == diagnostics.attention_shift(sweep[0][half], sweep[2][half])
        assert shifts[half]["change_soh"] == diagnostics.attention_shift(sweep[3][half], sweep[4][half])
    assert diagnostics.attention_sweep_shifts(sweep[::-1]) == shifts  # the order of the entries does not matter
    with pytest.raises(ValueError, match="two SOH entries"):
        diagnostics.attention_sweep_shifts(sweep[:4])


def test_attention_stats_unchanged_by_the_departure_helper():
    set_seed(0)
    maps = torch.softmax(torch.randn(3, 16, 16) * 0.1, dim=-1).numpy()
    stats = diagnostics.attention_stats(maps)
    dev = 16 * maps - 1
    assert stats["deviation"] == pytest.approx(np.abs(dev).mean())
